"""Shared pytest setup: make the bundle's module_utils importable as Ansible ships them, and the
fixtures more than one directory uses (the reference service, throw-away accounts, real keys and
identity directories)."""

from __future__ import annotations

import os
import pathlib
import secrets
import sys

import pytest

from tests.fixtures.servicectl import ProvisioningService

REPO = pathlib.Path(__file__).resolve().parent.parent

# Modules import `ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.*`; AnsiballZ
# bundles them on the device. collections/ is the tree in the collection layout (symlinks): on
# sys.path, as plain namespace packages, it gives the tests the very same import names. Appended,
# so that a mutant's collections/ put first (tests/faults/mutate.py) wins.
if str(REPO / "collections") not in sys.path:
    sys.path.append(str(REPO / "collections"))


# ---- the reference provisioning service (tests/fixtures/provisioning_service, driven by servicectl) ----
@pytest.fixture
def service_factory(tmp_path_factory):
    """Start services with custom settings: ``service_factory(reservation_ttl=2, ...)``.

    Keyword arguments are those of ``ProvisioningService``; every service started here is
    stopped at the end of the test."""
    started = []

    def start(**settings):
        settings.setdefault("token", secrets.token_urlsafe(24))
        state_dir = settings.pop("state_dir", None) or tmp_path_factory.mktemp("service")
        svc = ProvisioningService(state_dir, **settings)
        started.append(svc)
        return svc.start()

    yield start
    for svc in started:
        svc.stop()


@pytest.fixture
def service(service_factory):
    """A fresh reference service (own state dir, random token) for one test."""
    return service_factory()


@pytest.fixture(scope="session")
def shared_service(tmp_path_factory):
    """One reference service for the whole session: tests must not assume an empty registry
    and should clear the faults they inject."""
    state_dir = tmp_path_factory.mktemp("shared-service")
    with ProvisioningService(state_dir, token=secrets.token_urlsafe(24)) as svc:
        yield svc


@pytest.fixture
def svc(shared_service):
    """The session's reference service with no pending fault and zeroed counters."""
    shared_service.clear_faults()
    yield shared_service
    shared_service.clear_faults()


@pytest.fixture
def umask():
    """Sets the process umask to 022 for the test (``umask(value)`` changes it), restored after."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.fixture
def role_names():
    """Messages name role variables (as through the role) during the test."""
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import names

    names.use_role_names(True)
    yield
    names.use_role_names(False)


# ---- throw-away accounts (tests about who may write a directory) ----
@pytest.fixture
def accounts():
    """Create real users and groups for one test (``accounts.user()``, ``accounts.group()``),
    removed at teardown; skips the test when not root."""
    from tests.fixtures.accounts import Accounts

    if os.geteuid() != 0:
        pytest.skip("creating users needs root")
    made = Accounts()
    try:
        yield made
    finally:
        made.remove()


# ---- real keys and identity directories (module_utils against real crypto) ----
@pytest.fixture(scope="session")
def keys():
    """Session pool of real RSA keys (generated on first use): ``keys.get(index, size)``."""
    from tests.fixtures.identities import KeyPool

    return KeyPool()


@pytest.fixture
def ident_dir(tmp_path) -> pathlib.Path:
    return tmp_path / "mtls"


@pytest.fixture
def settings_for(ident_dir):
    """Settings for ``ident_dir`` (2048-bit keys unless told: size rarely matters here)."""
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import Settings

    def make(**kw):
        kw.setdefault("key_size", 2048)
        return Settings(path=str(ident_dir), **kw)

    return make
