"""The provisioning API client against the real reference service (HTTPS on loopback)."""

from __future__ import annotations

import uuid

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certinfo, certs
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ApiError, ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.keys import (
    key_matches_certificate,
    private_key_pem,
)
from tests.fixtures.identities import build_cert, client_for
from tests.fixtures.module_runner import closed_port
from tests.fixtures.product import api_client

ID_EP = "/generate-orchestrator-id"
UP_EP = "/upload-orchestrator-certificate"


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


def test_request_id_reserves_a_valid_id(svc):
    client = client_for(svc)
    agent_id = client.request_id()
    assert agent_id in svc.reserved_ids()
    assert svc.request_count(ID_EP) == 1


@pytest.mark.parametrize("preset", ["traversal", "dn", "long", "newline", "empty", "non_ascii"])
def test_hostile_ids_from_the_server_are_refused(svc, preset):
    svc.inject(ID_EP, "hostile_id", preset=preset)
    with pytest.raises(ApiError, match="does not match id_pattern") as info:
        client_for(svc).request_id()
    assert len(str(info.value)) < 400  # a 10 kB ID is not echoed in full
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("kind", "params", "message"), [
    ("no_id", {}, "has no id"),
    ("malformed", {}, "not JSON"),
    ("oversized", {}, "larger than 1048576 bytes"),
    ("oversized", {"length": False}, "larger than 1048576 bytes"),
])
def test_unusable_answers_are_ambiguous_errors(svc, kind, params, message):
    svc.inject(ID_EP, kind, **params)
    with pytest.raises(ApiError, match=message) as info:
        client_for(svc).request_id()
    assert info.value.ambiguous
    assert svc.request_count(ID_EP) == 1  # never retried


def test_5xx_is_retried_with_backoff_then_succeeds(svc):
    svc.inject(ID_EP, "status", count=2, status=503)
    sleeps = Sleeps()
    client = client_for(svc, sleep=sleeps, retries=3, backoff_base=0.5, backoff_cap=4)
    assert client.request_id()
    assert svc.request_count(ID_EP) == 3
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0  # full jitter, doubling


def test_retry_after_is_honoured_and_capped(svc):
    svc.inject(ID_EP, "status", count=1, status=429, retry_after="2")
    svc.inject(ID_EP, "status", count=1, status=503, retry_after="3600")
    sleeps = Sleeps()
    assert client_for(svc, sleep=sleeps, retries=3, retry_after_cap=30).request_id()
    assert sleeps == [2.0, 30.0]


def test_5xx_after_all_retries_is_ambiguous_and_names_endpoint_status_reason(svc):
    svc.inject(UP_EP, "status", count=0, status=502, message="upstream exploded")
    sleeps = Sleeps()
    client = client_for(svc, sleep=sleeps, retries=2)
    with pytest.raises(ApiError) as info:
        client.upload_certificate("0A1B2C3D", b"-----BEGIN CERTIFICATE-----\n")
    err = info.value
    assert err.ambiguous and err.status == 502 and err.endpoint == UP_EP
    assert "POST https://127.0.0.1:" in str(err) and UP_EP in str(err)
    assert "HTTP 502: upstream exploded" in str(err)
    assert svc.request_count(UP_EP) == 3 and len(sleeps) == 2


def test_429_after_all_retries_is_definitive(svc):
    svc.inject(ID_EP, "status", count=0, status=429)
    with pytest.raises(ApiError) as info:
        client_for(svc, retries=1).request_id()
    assert info.value.definitive and info.value.status == 429
    assert svc.request_count(ID_EP) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 413, 422])
def test_other_4xx_are_never_retried(svc, status):
    svc.inject(ID_EP, "status", status=status, message="nope")
    with pytest.raises(ApiError, match="HTTP %d: nope" % status) as info:
        client_for(svc, retries=5).request_id()
    assert info.value.definitive
    assert svc.request_count(ID_EP) == 1


def test_upload_refusals_carry_the_server_reason(svc, keys):
    client = client_for(svc)
    # An ID this session's service has never issued (fixed ones are pre-assigned by other tests).
    unknown = uuid.uuid4().hex[:8].upper()
    with pytest.raises(ApiError, match="HTTP 404") as info:
        client.upload_certificate(unknown, certs.certificate_pem(build_cert(keys.get(0), unknown)))
    assert info.value.definitive and info.value.reason
    agent_id = client.request_id()
    with pytest.raises(ApiError, match="HTTP 400") as info:  # CN != id
        client.upload_certificate(agent_id, certs.certificate_pem(build_cert(keys.get(0), "0A1B2C3D")))
    assert info.value.definitive


def test_upload_multipart_registers_the_exact_bytes(svc, keys):
    client = client_for(svc)
    agent_id = client.request_id()
    pem = certs.certificate_pem(build_cert(keys.get(0), agent_id))
    assert client.upload_certificate(agent_id, pem) == 200
    assert svc.registered_pem(agent_id) == pem.decode()


def test_upload_json_with_bearer_token(svc, keys):
    client = client_for(svc, upload_format="json", upload_endpoint="/agent/certificate",
                        id_field="agent_id", headers={"Authorization": "Bearer " + svc.token})
    agent_id = client.request_id()
    pem = certs.certificate_pem(build_cert(keys.get(0), agent_id))
    client.upload_certificate(agent_id, pem)
    assert svc.registered_pem(agent_id) == pem.decode()


def test_bad_token_error_never_echoes_the_token(svc, keys):
    token = "wrong-token-0123456789abcdef"
    client = client_for(svc, upload_format="json", upload_endpoint="/agent/certificate",
                        id_field="agent_id", headers={"Authorization": "Bearer " + token})
    agent_id = client.request_id()
    with pytest.raises(ApiError, match="HTTP 403") as info:
        client.upload_certificate(agent_id, certs.certificate_pem(build_cert(keys.get(0), agent_id)))
    assert token not in str(info.value) and "Bearer" not in str(info.value)


def test_upload_refuses_anything_with_a_private_key(svc, keys):
    with pytest.raises(ConfigError, match="private key"):
        client_for(svc).upload_certificate("0A1B2C3D", private_key_pem(keys.get(0)))
    assert svc.request_count(UP_EP) == 0


def test_read_timeout_is_retried_then_ambiguous(service):
    # A service of its own: the held requests complete (reserving IDs) after the test returns.
    svc = service
    svc.inject(ID_EP, "hang", count=0, seconds=3)
    with pytest.raises(ApiError, match="no answer within 0.5s") as info:
        client_for(svc, timeout=0.5, retries=1).request_id()
    assert info.value.ambiguous
    assert svc.request_count(ID_EP) == 2


def test_hang_once_then_success(service):
    svc = service  # of its own: the held request reserves an ID after the test returns
    svc.inject(ID_EP, "hang", count=1, seconds=2)
    assert client_for(svc, timeout=0.5, retries=1).request_id()


def test_connection_dropped_after_the_request_is_ambiguous(svc):
    svc.inject(ID_EP, "drop")
    with pytest.raises(ApiError, match="dropped") as info:
        client_for(svc).request_id()
    assert info.value.ambiguous


def test_accept_then_garble_upload_is_ambiguous(svc, keys):
    client = client_for(svc)
    agent_id = client.request_id()
    svc.inject(UP_EP, "accept_then_garble")
    pem = certs.certificate_pem(build_cert(keys.get(0), agent_id))
    with pytest.raises(ApiError, match="not JSON") as info:
        client.upload_certificate(agent_id, pem)
    assert info.value.ambiguous
    assert svc.registered_pem(agent_id) == pem.decode()  # it was stored after all


def test_refused_connection_is_definitive_and_retried():
    sleeps = Sleeps()
    client = api_client("https://127.0.0.1:%d" % closed_port(), retries=2, sleep=sleeps)
    with pytest.raises(ApiError, match="cannot connect") as info:
        client.request_id()
    assert info.value.definitive and len(sleeps) == 2


def test_unknown_host_is_definitive():
    client = api_client("https://api.fleet-mtls.invalid", retries=0, timeout=5)
    with pytest.raises(ApiError, match="cannot connect") as info:
        client.request_id()
    assert info.value.definitive


def test_untrusted_server_is_refused_without_ca_path(svc, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with pytest.raises(ApiError, match="TLS handshake failed.*ca_path") as info:
        api_client(svc.api_url, retries=3, sleep=Sleeps()).request_id()
    assert info.value.definitive
    assert svc.request_count(ID_EP) == 0


def test_ca_path_wins_over_the_environment_bundle(svc, monkeypatch):
    """requests lets $REQUESTS_CA_BUNDLE override a session-level verify: ca_path must win."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    assert client_for(svc).request_id()


def test_validate_certs_false_connects_without_ca(svc):
    assert api_client(svc.api_url, validate_certs=False).request_id()


@pytest.mark.parametrize("server_cert", ["expired", "wrong-host"])
def test_bad_server_certificates_are_refused(service_factory, server_cert):
    svc = service_factory(server_cert=server_cert)
    with pytest.raises(ApiError, match="TLS handshake failed") as info:
        client_for(svc).request_id()
    assert info.value.definitive


def test_errors_never_show_url_userinfo(svc):
    url = svc.api_url.replace("https://", "https://admin:hunter2@")
    svc.inject(ID_EP, "status", status=400)
    with pytest.raises(ApiError) as info:
        api_client(url, ca_path=str(svc.ca_path)).request_id()
    assert "hunter2" not in str(info.value) and "admin" not in str(info.value)


def test_enroll_returns_a_certificate_for_our_key(svc, keys):
    client = client_for(svc)
    agent_id = client.request_id()
    key = keys.get(0)
    pem = client.enroll(agent_id, certs.csr_pem(certs.build_csr(key, agent_id, certinfo.normalize_subject(None))))
    cert = certs.load_certificate(pem)
    assert certs.common_name(cert) == agent_id
    assert key_matches_certificate(key, cert)
    assert not certs.is_self_signed(cert)
