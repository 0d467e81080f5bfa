"""Fixtures for the fleet_mtls module_utils tests."""

from __future__ import annotations

import pathlib

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import Settings
from tests.unit.helpers import KeyPool


@pytest.fixture(scope="session")
def keys() -> KeyPool:
    """Session pool of real RSA keys (generated on first use)."""
    return KeyPool()


@pytest.fixture
def ident_dir(tmp_path) -> pathlib.Path:
    return tmp_path / "mtls"


@pytest.fixture
def settings_for(ident_dir):
    """Settings for ``ident_dir`` (2048-bit keys unless told: size rarely matters here)."""

    def make(**kw) -> Settings:
        kw.setdefault("key_size", 2048)
        return Settings(path=str(ident_dir), **kw)

    return make
