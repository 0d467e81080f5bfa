"""The consumer suite's fixtures: the tarball the session built (tests/conftest.py), installed
once into an empty collections path; per module, one reference service, the SSH devices and an
operator's project (tests/fixtures/consumer.py)."""

from __future__ import annotations

import os
import pathlib
import secrets

import pytest

from tests.fixtures import consumer
from tests.fixtures.servicectl import ProvisioningService

SSH_UNAVAILABLE = consumer.sshfleet.unavailable()


@pytest.fixture(scope="session")
def tarball() -> str:
    """The collection tarball this session built (tests/build_collection.sh)."""
    (found,) = (pathlib.Path(os.environ["FLEET_MTLS_TEST_COLLECTIONS"]) / "build").glob("*.tar.gz")
    return str(found)


@pytest.fixture(scope="session")
def collections(tmp_path_factory, tarball) -> pathlib.Path:
    """A collections path holding only the installed tarball."""
    return consumer.install_collection(tarball, tmp_path_factory.mktemp("operator-collections"))


@pytest.fixture(scope="module")
def module_service(tmp_path_factory):
    """One reference service for the module."""
    with ProvisioningService(tmp_path_factory.mktemp("service"), token=secrets.token_urlsafe(24)) as svc:
        yield svc


@pytest.fixture(scope="module")
def devices(tmp_path_factory):
    """Two SSH devices (login users with sudo, agent users): edge-sp-01 and edge-cps-01."""
    if SSH_UNAVAILABLE:
        pytest.skip("SSH devices: %s" % SSH_UNAVAILABLE)
    if not os.access("/usr/bin/sudo", os.X_OK):
        pytest.skip("SSH devices: needs sudo (apt-get install sudo; tests/bootstrap.sh does)")
    fleet = consumer.SshDevices(tmp_path_factory.mktemp("ssh-devices"), ["edge-sp-01", "edge-cps-01"])
    try:
        yield fleet.start()
    finally:
        fleet.stop()
