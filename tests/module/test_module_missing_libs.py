"""Each module on a device Python without its libraries fails with ansible-core's
"Failed to import the required Python library" message naming the library (not a traceback)."""

from __future__ import annotations

import pathlib
import re
import subprocess

import pytest

from tests.fixtures.ansible_runner import run_task

BARE = pathlib.Path("/root/.pyenv/versions/3.13.0/bin/python3")


def _bare_python() -> str:
    if not BARE.exists():
        pytest.skip(f"{BARE} (a Python without cryptography and requests) is not installed")
    probe = subprocess.run([str(BARE), "-c", "import cryptography"], capture_output=True, check=False)
    if probe.returncode == 0:
        pytest.skip(f"{BARE} has cryptography")
    return str(BARE)


@pytest.mark.parametrize(("module", "args", "library"), [
    ("mtls_identity", {"api_url": "https://127.0.0.1:9", "path": "/nonexistent/.mtls"}, "cryptography"),
    ("mtls_identity_info", {"path": "/nonexistent/.mtls"}, "cryptography"),
    ("mtls_deregister", {"api_url": "https://127.0.0.1:9", "endpoint": "/o/{id}", "confirm": "0000ABCD",
                         "path": "/nonexistent/.mtls"}, "cryptography"),
])
def test_missing_library_is_named(tmp_path, module, args, library):
    run = run_task(tmp_path, module, args, python=_bare_python())
    assert run.result.get("failed"), run.result
    # ansible-core names every missing library in one message: "(cryptography and requests)".
    named = re.search(r"Failed to import the required Python library \(([^)]*)\)", run.result["msg"])
    assert named, run.result
    assert library in named.group(1).split(" and "), run.result
    assert "Traceback" not in run.result["msg"], run.result
