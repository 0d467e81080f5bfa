"""Fault matrix, TLS: the API server must be authenticated unless the user explicitly says not to.

Each refusal happens at the TLS handshake: no request reaches the API (the service's counters
prove it), nothing is written on the device, and the error tells the user what to do.
"""
from __future__ import annotations

import pytest

from tests.fixtures import module_runner as h
from tests.fixtures.servicectl import ProvisioningService

ID_EP = "/generate-orchestrator-id"
UPLOAD_EP = "/upload-orchestrator-certificate"


@pytest.fixture(scope="module")
def bad_cert_services(tmp_path_factory):
    """Services presenting a certificate for another host name, and an expired one."""
    services = {}
    try:
        for kind in ("wrong-host", "expired"):
            services[kind] = ProvisioningService(tmp_path_factory.mktemp(f"svc-{kind}"), server_cert=kind).start()
        yield services
    finally:
        for svc in services.values():
            svc.stop()


def assert_refused_at_handshake(dev, result, svc, *words, counters=True):
    assert result.failed, result
    for word in ("TLS handshake failed", *words):
        assert word.lower() in result.msg.lower(), result.msg
    if counters:
        assert svc.request_count(ID_EP) == 0 and svc.request_count(UPLOAD_EP) == 0
        assert svc.handshake_failures("api") >= 1
    else:  # the control endpoint is behind the same bad certificate: read the service's log
        assert "api: TLS handshake with 127.0.0.1 failed" in svc.log_text()
        assert "GET /generate-orchestrator-id" not in svc.log_text()
    assert not dev.key_path.exists() and not dev.cert_path.exists()
    assert h.leftovers(dev.path, allow_journal=False) == []


def test_unknown_ca_refused_without_ca_path(device, svc, registry_delta):
    """The service's private CA is not in the system store: without ca_path the module refuses
    the server (and says to set ca_path); validate_certs is not silently turned off."""
    result = device.run(ca_path=None)
    assert_refused_at_handshake(device, result, svc, "ca_path")
    assert registry_delta() == ([], {})


def test_unknown_ca_refused_on_rotation(device, svc):
    device.seed()
    before = device.state()
    result = device.run(ca_path=None, rotate="always")
    assert result.failed and "TLS handshake failed" in result.msg, result
    assert svc.request_count(UPLOAD_EP) == 0
    device.assert_intact(before)
    device.assert_registered()


@pytest.mark.parametrize("kind", ["wrong-host", "expired"])
def test_bad_server_certificate_refused(make_device, bad_cert_services, kind):
    """Hostname mismatch / expired server certificate: refused even with the right ca_path."""
    svc = bad_cert_services[kind]
    dev = make_device(svc)
    result = dev.run()
    assert_refused_at_handshake(dev, result, svc, counters=False)
    assert svc.reserved_ids() == [] and svc.registrations() == {}


def test_validate_certs_false_only_when_asked_with_warning(device, svc):
    """validate_certs=false (and no ca_path) works against the untrusted server, through
    Ansible, and the run carries a warning saying what is lost."""
    result = device.run(ca_path=None, validate_certs=False, via="ansible")
    assert not result.failed and result.result["action"] == "created", result
    assert "[WARNING]: validate_certs is false: the API server is not authenticated" in result.stderr
    assert "validate_certs is false" not in device.run(ca_path=None, validate_certs=True).output
    device.assert_registered()
    # and the next run with verification on (default) refuses the same server again
    again = device.run(ca_path=None, rotate="always")
    assert again.failed and "TLS handshake failed" in again.msg, again
