"""Shared pytest setup: the collection importable and installed as Ansible ships it, and the
fixtures more than one directory uses (the reference service, throw-away accounts, real keys and
identity directories)."""

from __future__ import annotations

import os
import pathlib
import secrets
import shutil
import signal
import tempfile

import pytest

from tests.fixtures.collection import build_and_install, import_source
from tests.fixtures.servicectl import ProvisioningService

REPO = pathlib.Path(__file__).resolve().parent.parent

# In-process tests import the source under the collection's own name; every Ansible run of the
# session uses the collection built from it and installed, as an operator's project does.
import_source()

# A suite started as a background job of a shell (nohup, `&`) inherits SIGINT ignored, and so
# would every process it starts: the cases that interrupt a run with Ctrl-C's signal would see it
# ignored. A handler of our own is reset to the default in every program started from here.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_configure(config):
    dest = pathlib.Path(tempfile.mkdtemp(prefix="fleet-mtls-collections-"))
    dest.chmod(0o755)  # tests run code as other users (the agent's, nobody) from here too
    config._fleet_mtls_collections = dest
    build_and_install(dest)
    os.environ["FLEET_MTLS_TEST_COLLECTIONS"] = str(dest)
    os.environ["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join(
        [str(dest), "~/.ansible/collections", "/usr/share/ansible/collections"])


def pytest_unconfigure(config):
    dest = getattr(config, "_fleet_mtls_collections", None)
    if dest is not None:
        shutil.rmtree(dest, ignore_errors=True)


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
    from tests.fixtures.product import settings

    def make(**kw):
        kw.setdefault("key_size", 2048)
        return settings(ident_dir, **kw)

    return make


# ---- the running agent (tests/fixtures/agent_daemon.py) as the cloud sees it ----
@pytest.fixture
def service_agent(tmp_path_factory):
    """``service_agent(service, home)``: the stand-in agent for ``home`` on ``service``'s gate as
    a service manager runs it (``servicectl.ServiceAgent``: its ``restart_script`` is the
    ``command`` restart method), not started yet; stopped at teardown."""
    from tests.fixtures.servicectl import ServiceAgent

    made = []

    def make(service, home, **options):
        options.setdefault("env", {"SSL_CERT_FILE": str(service.ca_path)})
        agent = ServiceAgent(service.gate_url, home, tmp_path_factory.mktemp("agent"), **options)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.stop()
