"""Helpers for the reference service's own tests."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import pytest
from cryptography import x509

from tests.servicectl import (
    ProvisioningService,
    cert_pem,
    fingerprint,
    make_key,
    make_self_signed,
    write_identity,
)


@dataclasses.dataclass
class Identity:
    """A device identity on disk: ``cert``/``key`` objects and their file paths."""

    agent_id: str
    key: Any
    cert: x509.Certificate
    crt_path: pathlib.Path
    key_path: pathlib.Path

    @property
    def pem(self) -> bytes:
        return cert_pem(self.cert)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert)


class IdentityFactory:
    def __init__(self, base: pathlib.Path) -> None:
        self.base = base
        self.n = 0

    def __call__(self, agent_id: str, key: Any = None, **cert_options: Any) -> Identity:
        """Make (not upload) a self-signed identity for ``agent_id`` with a fresh 2048-bit key."""
        self.n += 1
        key = key or make_key(2048)
        cert = make_self_signed(agent_id, key, **cert_options)
        crt_path, key_path = write_identity(self.base / f"id{self.n}", cert, key)
        return Identity(agent_id, key, cert, crt_path, key_path)


@pytest.fixture
def make_identity(tmp_path: pathlib.Path) -> IdentityFactory:
    return IdentityFactory(tmp_path / "identities")


@pytest.fixture
def registered(service: ProvisioningService, make_identity: IdentityFactory):
    """``registered()`` reserves an ID, uploads a fresh identity for it and returns it."""

    def register(**cert_options: Any) -> Identity:
        ident = make_identity(service.reserve_id(), **cert_options)
        response = service.upload(ident.agent_id, ident.pem)
        assert response.status_code == 200, response.text
        return ident

    return register
