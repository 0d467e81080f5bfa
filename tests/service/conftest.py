"""Helpers for the reference service's own tests."""

from __future__ import annotations

import dataclasses
import pathlib
import threading
from typing import Any

import pytest
from cryptography import x509

from tests.fixtures.servicectl import (
    ProvisioningService,
    StandInAgent,
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


class KeyPool:
    """RSA-2048 keys made once per session (about 50 ms each) and handed out round robin:
    consecutive draws are distinct keys, which is all the service tests need."""

    SIZE = 64

    def __init__(self) -> None:
        self._keys: list[Any] = []
        self._next = 0
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            if len(self._keys) < self.SIZE:
                self._keys.append(make_key(2048))
                return self._keys[-1]
            key = self._keys[self._next % self.SIZE]
            self._next += 1
            return key


@pytest.fixture(scope="session")
def key_pool() -> KeyPool:
    return KeyPool()


class IdentityFactory:
    def __init__(self, base: pathlib.Path, keys: KeyPool) -> None:
        self.base = base
        self.keys = keys
        self.n = 0

    def __call__(self, agent_id: str, key: Any = None, **cert_options: Any) -> Identity:
        """Make (not upload) a self-signed identity for ``agent_id`` with a pool key."""
        self.n += 1
        key = key or self.keys()
        cert = make_self_signed(agent_id, key, **cert_options)
        crt_path, key_path = write_identity(self.base / f"id{self.n}", cert, key)
        return Identity(agent_id, key, cert, crt_path, key_path)


@pytest.fixture
def make_identity(tmp_path: pathlib.Path, key_pool: KeyPool) -> IdentityFactory:
    return IdentityFactory(tmp_path / "identities", key_pool)


@pytest.fixture
def registered(svc: ProvisioningService, make_identity: IdentityFactory):
    """``registered()`` reserves an ID on ``svc``, uploads a fresh identity and returns it."""

    def register(**cert_options: Any) -> Identity:
        ident = make_identity(svc.reserve_id(), **cert_options)
        response = svc.upload(ident.agent_id, ident.pem)
        assert response.status_code == 200, response.text
        return ident

    return register


@pytest.fixture
def start_agent():
    """``start_agent(service, home, **options)``: the long-lived stand-in agent
    (``servicectl.StandInAgent``) for ``home`` on ``service``'s gate; stopped at teardown."""
    started: list[StandInAgent] = []

    def start(service: ProvisioningService, home: pathlib.Path, **options: Any) -> StandInAgent:
        agent = service.start_agent(home, **options)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()
