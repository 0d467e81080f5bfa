"""The contract api.py owns, against the real reference service: success shapes per endpoint
and format, the format's ID field, the registry's "unknown ID" answer, the TLS failure
reasons (the device clock moved with faketime), the server's Date."""

from __future__ import annotations

import datetime
import http.server
import json
import os
import shutil
import ssl
import subprocess
import sys
import textwrap
import threading

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certs, names
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ApiError, ConfigError
from tests.fixtures.identities import build_cert, client_for
from tests.fixtures.product import api_client

ID_EP = "/generate-orchestrator-id"
UP_EP = "/upload-orchestrator-certificate"
JSON_EP = "/agent/certificate"
DELETE = "/orchestrators/{id}"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# 200 answers that are no success: the reference's `malformed` fault sends them as they are.
HOSTILE = {
    "statusCode-string": '{"statusCode": "500"}',
    "status-error": '{"status": "error"}',
    "error": '{"error": "database is read-only"}',
    "empty": "{}",
    "no-data": '{"statusCode": 200}',
    "data-not-object": '{"statusCode": 200, "data": "ok"}',
    "bool-statusCode": '{"statusCode": true, "data": {}}',
}
JSON_ONLY_HOSTILE = {
    "message-only": '{"message": "Certificate uploaded successfully"}',
    "agent_id-only": '{"agent_id": "%s"}',
    "other-id": '{"message": "Certificate uploaded successfully", "agent_id": "FFFF0000"}',
    "detail": '{"detail": "Not Found"}',
}


def json_client(svc, **kw):
    return client_for(svc, upload_format="json", upload_endpoint=JSON_EP, headers=svc.auth_headers(), **kw)


@pytest.mark.parametrize("body", list(HOSTILE.values()), ids=list(HOSTILE))
@pytest.mark.parametrize("fmt", ["multipart", "json"])
def test_a_200_without_the_success_shape_is_an_ambiguous_failure(svc, keys, fmt, body):
    client = json_client(svc) if fmt == "json" else client_for(svc)
    agent_id = client.request_id()
    svc.inject(JSON_EP if fmt == "json" else UP_EP, "malformed", body=body)
    with pytest.raises(ApiError) as info:
        client.upload_certificate(agent_id, certs.certificate_pem(build_cert(keys.get(0), agent_id)))
    assert info.value.ambiguous and info.value.status == 200
    assert "not the contract's success answer" in info.value.msg or "no data object" in info.value.msg


@pytest.mark.parametrize("body", list(JSON_ONLY_HOSTILE.values()), ids=list(JSON_ONLY_HOSTILE))
def test_json_upload_needs_the_clouds_message_and_the_same_agent_id(svc, keys, body):
    client = json_client(svc)
    agent_id = client.request_id()
    svc.inject(JSON_EP, "malformed", body=body.replace("%s", agent_id + "X"))
    with pytest.raises(ApiError) as info:
        client.upload_certificate(agent_id, certs.certificate_pem(build_cert(keys.get(0), agent_id)))
    assert info.value.ambiguous


def test_json_upload_accepts_the_real_clouds_flat_answer(svc, keys):
    client = json_client(svc)
    agent_id = client.request_id()
    svc.inject(JSON_EP, "malformed",
               body=json.dumps({"message": "Certificate uploaded successfully", "agent_id": agent_id}))
    assert client.upload_certificate(agent_id, certs.certificate_pem(build_cert(keys.get(0), agent_id))) == 200


def test_multipart_upload_answer_naming_another_id_is_refused(svc, keys):
    client = client_for(svc)
    agent_id = client.request_id()
    svc.inject(UP_EP, "malformed", body='{"statusCode": 200, "data": {"id": "FFFF0000"}}')
    with pytest.raises(ApiError, match="names another ID") as info:
        client.upload_certificate(agent_id, certs.certificate_pem(build_cert(keys.get(0), agent_id)))
    assert info.value.ambiguous


@pytest.mark.parametrize("body", ['{"id": "0A1B2C3D"}', '{"statusCode": "200", "data": {"id": "0A1B2C3D"}}',
                                  '{"data": {"id": "0A1B2C3D"}}'], ids=["flat", "string-code", "no-code"])
def test_an_id_answer_without_the_envelope_is_refused(svc, body):
    svc.inject(ID_EP, "malformed", body=body)
    with pytest.raises(ApiError, match="not the contract's success answer") as info:
        client_for(svc).request_id()
    assert info.value.ambiguous


def test_an_enrollment_answer_without_the_envelope_is_refused(svc):
    agent_id = svc.reserve_id()
    svc.inject("/orchestrators/enroll", "malformed", body=json.dumps({"certificate": "x", "id": agent_id}))
    with pytest.raises(ApiError, match="not the contract's success answer"):
        client_for(svc).enroll(agent_id, b"-----BEGIN CERTIFICATE REQUEST-----\n")


# ----------------------------------------------------------------------------- reservations


@pytest.mark.parametrize("flavor", ["legacy", "enroll"])
def test_a_reservation_keeps_how_long_it_lasts_from_either_route(service_factory, flavor):
    """The legacy envelope (/generate-orchestrator-id) and the current installer's unwrapped
    {"data"} answer (/orchestrators/id), both real."""
    svc = service_factory(reservation_ttl=30)
    reservation = client_for(svc, flavor=flavor).reserve()
    assert reservation.agent_id in svc.reserved_ids()
    assert reservation.expires_in in (29, 30) and reservation.expires_at.endswith("Z")
    assert not reservation.lapsed()


def test_the_unwrapped_answer_is_only_the_current_flavors(svc):
    """{"data"} without statusCode stays a hostile shape for the legacy flavor (above)."""
    svc.inject("/orchestrators/id", "malformed", body='{"data": {"id": "0A1B2C3D"}}')
    assert client_for(svc, flavor="enroll").reserve().expires_in is None
    svc.inject("/orchestrators/id", "malformed", body='{"data": "0A1B2C3D"}')
    with pytest.raises(ApiError, match="no data object"):
        client_for(svc, flavor="enroll").reserve()


# ----------------------------------------------------------------------------- the heartbeat route

HEARTBEAT = "/agent/heartbeat"


def test_the_heartbeat_routes_never_seen_answer_is_not_an_error(svc):
    agent_id = svc.reserve_id()
    hb = client_for(svc, flavor="api_service", headers=svc.auth_headers()).heartbeat(agent_id)
    assert (hb.seen, hb.detail) == (False, "No heartbeat data found for agent %s" % agent_id)


def test_a_flavor_without_the_heartbeat_route_is_told_to_name_one(svc):
    with pytest.raises(ConfigError, match="the legacy API has no heartbeat route: set confirm_endpoint"):
        client_for(svc, headers=svc.auth_headers()).heartbeat(svc.reserve_id())
    named = client_for(svc, headers=svc.auth_headers(), confirm_endpoint=HEARTBEAT)
    assert named.heartbeat(svc.reserve_id()).seen is False


def beat_body(agent_id, **changes):
    """A heartbeat answer for ``agent_id`` with ``changes`` (None: the field left out)."""
    body = {"agent_id": agent_id, "cpu_usage": 1.5, "memory_usage": 0.7, "memory_total": 3.8, "disk_usage": 12.5,
            "disk_total": 58.0, "uptime": 7, "status": "active", "timestamp": "2026-12-05T10:00:00"}
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not None})


@pytest.mark.parametrize(("fault", "words"), [
    (lambda _id: {"kind": "status", "status": 404, "message": "Not Found"},
     "not the cloud's answer for an agent it never heard"),
    (lambda agent_id: {"kind": "malformed", "body": beat_body(agent_id, cpu_usage=None)}, "the answer lacks cpu_usage"),
    (lambda agent_id: {"kind": "malformed", "body": beat_body("FFFF0000")}, "names another agent"),
    (lambda agent_id: {"kind": "malformed", "body": beat_body(agent_id, status="")}, "is not a word"),
    (lambda agent_id: {"kind": "malformed", "body": beat_body(agent_id, uptime="7")}, "is not a number of seconds"),
], ids=["wrong-404", "missing-field", "other-agent", "empty-status", "string-uptime"])
def test_an_answer_that_is_not_the_routes_is_an_error(svc, fault, words):
    agent_id = svc.reserve_id()
    spec = fault(agent_id)
    svc.inject(HEARTBEAT, spec.pop("kind"), **spec)
    with pytest.raises(ApiError, match=words):
        client_for(svc, flavor="api_service", headers=svc.auth_headers()).heartbeat(agent_id)
    # the real answer
    assert client_for(svc, flavor="api_service", headers=svc.auth_headers()).heartbeat(agent_id).seen is False


def test_without_the_token_the_route_says_forbidden(svc):
    with pytest.raises(ApiError, match="HTTP 403: Forbidden") as info:
        client_for(svc, flavor="api_service").heartbeat(svc.reserve_id())
    assert info.value.status == 403


# ----------------------------------------------------------------------------- the format's ID field

def test_json_upload_sends_agent_id_when_id_field_is_not_given(svc, keys):
    client = json_client(svc)
    assert client.id_field == "agent_id" and client.enroll_id_field == "id"
    agent_id = client.request_id()
    pem = certs.certificate_pem(build_cert(keys.get(0), agent_id))
    client.upload_certificate(agent_id, pem)
    assert svc.registered_pem(agent_id) == pem.decode()


# ----------------------------------------------------------------------------- deletion

def test_the_registrys_unknown_id_answers_count_as_gone(svc):
    client = client_for(svc, headers=svc.auth_headers())
    agent_id = svc.reserve_id()
    assert client.delete_agent(agent_id, DELETE) == (200, True)
    assert client.delete_agent(agent_id, DELETE) == (410, False)
    assert client.delete_agent("0000ABCD", DELETE) == (404, False)


@pytest.mark.parametrize(("status", "message"), [(404, "Not Found"), (410, "Gone"), (404, "unknown ID FFFF0000")])
def test_a_404_or_410_that_is_not_the_unknown_id_answer_fails(svc, status, message):
    agent_id = svc.reserve_id()
    svc.inject("/orchestrators/<id>", "status", status=status, message=message)
    with pytest.raises(ApiError, match="not the registry's answer for an unknown ID") as info:
        client_for(svc, headers=svc.auth_headers()).delete_agent(agent_id, DELETE)
    assert info.value.status == status
    assert agent_id not in svc.deleted_ids()


def test_a_mistyped_deletion_endpoint_fails(svc):
    agent_id = svc.reserve_id()
    with pytest.raises(ApiError, match="HTTP 404: no such endpoint, which is not the registry's"):
        client_for(svc, headers=svc.auth_headers()).delete_agent(agent_id, "/orchestrator/{id}")


# ----------------------------------------------------------------------------- TLS reasons

def test_an_expired_server_certificate_is_a_clock_problem(service_factory):
    svc = service_factory(server_cert="expired")
    with pytest.raises(ApiError) as info:
        client_for(svc).request_id()
    msg = info.value.msg
    assert "TLS handshake failed (the server certificate is expired at this device's current time" in msg
    assert "CERT_HAS_EXPIRED" in msg and "check the device clock (NTP)" in msg and "ca_path" not in msg
    assert info.value.definitive


def test_untrusted_and_wrong_host_keep_their_advice(svc, service_factory, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with pytest.raises(ApiError, match=r"server certificate not trusted: .*set ca_path to the CA"):
        api_client(svc.api_url, retries=0).request_id()
    wrong = service_factory(server_cert="wrong-host")
    names.use_role_names()
    try:
        with pytest.raises(ApiError, match=r"for another host name.*set mtls_api_ca_src \(or mtls_api_ca\)"):
            client_for(wrong).request_id()
    finally:
        names.use_role_names(False)


FAKETIME = shutil.which("faketime")
PROBE = textwrap.dedent("""
    import json, sys, datetime
    sys.path.insert(0, sys.argv[3])
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import api
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ApiError
    client = api.ProvisioningClient(sys.argv[1], flavor=api.endpoints("legacy"), headers=None, ca_path=sys.argv[2],
                                    validate_certs=True, retries=0, timeout=10, id_pattern=api.DEFAULT_ID_PATTERN)
    out = {"now": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    out["server_date"] = client.server_date().isoformat()
    try:
        client.request_id()
        out["error"] = None
    except ApiError as exc:
        out["error"] = exc.msg
    print(json.dumps(out))
""")


@pytest.mark.skipif(FAKETIME is None, reason="faketime is not installed (apt-get install faketime)")
@pytest.mark.parametrize(("offset", "verdict", "code"), [
    ("+730d", "expired", "CERT_HAS_EXPIRED"), ("-730d", "not valid yet", "CERT_NOT_YET_VALID")])
def test_a_device_clock_two_years_off_is_named(svc, offset, verdict, code):
    code_root = os.environ["FLEET_MTLS_TEST_COLLECTIONS"]  # the collection as built for this session
    argv = [FAKETIME, "-f", offset, sys.executable, "-c", PROBE, svc.api_url, str(svc.ca_path), code_root]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    real = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017
    device = datetime.datetime.fromisoformat(out["now"])
    assert abs((device - real).days) > 700  # the device's clock really is off...
    server = datetime.datetime.fromisoformat(out["server_date"])
    assert abs((server - real).total_seconds()) < 120  # ...the server's is not
    assert "the server certificate is %s at this device's current time %s" % (verdict, device.strftime("%Y-%m-%d")) \
        in out["error"], out
    assert code in out["error"] and "check the device clock (NTP)" in out["error"]


# ----------------------------------------------------------------------------- the server's clock

def test_server_date_reserves_and_registers_nothing(svc):
    before = (svc.reserved_ids(), svc.registrations())
    client = client_for(svc)
    when = client.server_date()
    assert when.tzinfo is not None
    assert abs((when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) < 60  # noqa: UP017
    assert (svc.reserved_ids(), svc.registrations()) == before
    assert [c[0] for c in client.calls] == ["HEAD"]  # one request, no retry


class _NoDate(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):  # noqa: N802 - http.server's naming
        self.send_response_only(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_server_date_is_none_without_a_date_header(svc):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(svc.state_dir / "server-valid.crt"), str(svc.state_dir / "server.key"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoDate)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = api_client("https://127.0.0.1:%d" % server.server_address[1], ca_path=str(svc.ca_path))
        assert client.server_date() is None
    finally:
        server.shutdown()
        server.server_close()


def test_server_date_of_an_api_that_is_down_fails_at_once():
    client = api_client("https://127.0.0.1:9", retries=5, sleep=lambda _s: pytest.fail("retried"))
    with pytest.raises(ApiError, match="cannot connect"):
        client.server_date()
