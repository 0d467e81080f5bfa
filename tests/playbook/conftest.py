"""Fixtures shared by the integration tests."""

from __future__ import annotations

import subprocess

import pytest

from tests.fixtures.ansible_runner import REPO


@pytest.fixture(scope="session")
def collection_tarball(tmp_path_factory):
    """The collection built once per session by tests/build_collection.sh: the tarball's path."""
    out = tmp_path_factory.mktemp("collection-build")
    proc = subprocess.run([str(REPO / "tests" / "build_collection.sh"), str(out)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]
