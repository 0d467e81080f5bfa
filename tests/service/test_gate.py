"""The gate, as the real cloud runs it: nginx (``ssl_verify_client optional_no_ca``) in front of
the app's two certificate checks, ``/ws`` and the Socket.IO CONNECT (plus the reference-only
``/whoami``).

Any client certificate passes TLS, except an expired, not yet valid or wrong-purpose one
(nginx's ``400 The SSL certificate error``). Then only the current registered certificate of a
live ID is accepted; each refusal in its own wire form (``/ws``: HTTP 403; Socket.IO:
``44{"message":"Connection rejected by server"}``; ``/whoami``: 403).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import urllib.parse

import pytest
import requests
from cryptography import x509

from tests.fixtures.servicectl import SOCKETIO_REFUSAL, make_csr, make_key, make_self_signed, write_identity

CHECKS = ("whoami", "ws", "socketio-polling", "socketio-websocket")
ACCEPTED = dict.fromkeys(CHECKS, True)
REFUSED = dict.fromkeys(CHECKS, False)
SID_ANSWER = re.compile(r'40\{"sid":"[^"]+"\}')


def verdicts(svc, crt=None, key=None) -> dict[str, bool]:
    """What each of the gate's checks says about the pair (True: accepted); every answer must be
    exactly the accepting or the refusing one of its check."""
    status, body = svc.whoami(crt, key) if crt else _whoami_without_certificate(svc)
    assert status == 200 or (status == 403 and body["statusCode"] == 403), (status, body)
    ws = svc.ws_upgrade(crt, key)
    assert (ws.status, ws.accepted) in ((101, True), (403, False)), ws
    found = {"whoami": status == 200, "ws": ws.accepted}
    for transport in ("polling", "websocket"):
        answer = svc.socketio_connect(crt, key, transport)
        assert answer == SOCKETIO_REFUSAL or SID_ANSWER.fullmatch(answer), answer
        found[f"socketio-{transport}"] = answer != SOCKETIO_REFUSAL
    return found


def _whoami_without_certificate(svc):
    response = requests.get(f"{svc.gate_url}/whoami", verify=str(svc.ca_path), timeout=10)
    return response.status_code, response.json()


def test_registered_certificate_is_accepted_by_every_check(svc, registered):
    ident = registered()
    assert verdicts(svc, ident.crt_path, ident.key_path) == ACCEPTED
    assert svc.whoami(ident.crt_path, ident.key_path) == (200, {"id": ident.agent_id})


def test_ws_upgrade_answers_101_with_the_rfc_6455_accept_key(svc, registered):
    ident = registered()
    answer = svc.ws_upgrade(ident.crt_path, ident.key_path)
    guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    digest = hashlib.sha1((answer.key + guid).encode(), usedforsecurity=False).digest()
    assert answer.status == 101
    assert answer.headers["upgrade"].lower() == "websocket"
    assert answer.headers["connection"].lower() == "upgrade"
    assert answer.headers["sec-websocket-accept"] == base64.b64encode(digest).decode()


def test_ws_without_an_upgrade_is_not_found(svc, registered):
    """A WebSocket route: a plain GET is 404, as on the real cloud (not 403, not 200)."""
    ident = registered()
    response = requests.get(
        f"{svc.gate_url}/ws", cert=(str(ident.crt_path), str(ident.key_path)), verify=str(svc.ca_path), timeout=10
    )
    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})


def test_no_client_certificate_is_accepted_as_development_mode(svc, registered):
    """The real cloud's "development mode": without a certificate /ws and Socket.IO accept;
    only the reference /whoami refuses (it names the presented certificate's ID)."""
    registered()
    assert verdicts(svc) == {**ACCEPTED, "whoami": False}
    assert svc.handshake_failures("gate") == 0


def test_never_uploaded_certificate_with_the_same_cn_is_refused(svc, registered, make_identity):
    ident = registered()
    impostor = make_identity(ident.agent_id)
    assert verdicts(svc, impostor.crt_path, impostor.key_path) == REFUSED
    assert verdicts(svc, ident.crt_path, ident.key_path) == ACCEPTED


def test_certificate_of_an_id_never_registered_is_refused(svc, make_identity):
    reserved_only = make_identity(svc.reserve_id())
    assert verdicts(svc, reserved_only.crt_path, reserved_only.key_path) == REFUSED


def test_superseded_certificate_is_refused_after_rotation(svc, registered, make_identity):
    old = registered()
    new = make_identity(old.agent_id)
    assert svc.upload(new.agent_id, new.pem).status_code == 200
    assert verdicts(svc, old.crt_path, old.key_path) == REFUSED
    assert verdicts(svc, new.crt_path, new.key_path) == ACCEPTED


def test_superseded_certificate_with_the_same_key_is_refused(svc, registered, make_identity):
    """Same key, same CN, only the certificate differs: the certificate itself is compared."""
    old = registered()
    new = make_identity(old.agent_id, key=old.key)
    assert svc.upload(new.agent_id, new.pem).status_code == 200
    assert verdicts(svc, old.crt_path, old.key_path) == REFUSED
    assert svc.ws_accepts(new.crt_path, new.key_path)


def test_registered_ca_certificate_cannot_vouch_for_other_ids(svc, make_identity, tmp_path):
    """A legacy registered certificate is CA:TRUE (openssl req -x509 defaults): certificates its
    key signs for another ID are still not that ID's registered certificate."""
    legacy_id, victim_id = svc.reserve_id(), svc.reserve_id()
    legacy_key = make_key(2048)
    legacy = _ca_true_cert(legacy_id, legacy_key)
    assert svc.upload(legacy_id, _pem(legacy)).status_code == 200
    victim = make_identity(victim_id)
    assert svc.upload(victim_id, victim.pem).status_code == 200

    minted_key = make_key(2048)
    minted = make_self_signed(victim_id, minted_key, signer=legacy_key, issuer=legacy.subject)
    crt, key = write_identity(tmp_path / "minted", minted, minted_key)
    assert verdicts(svc, crt, key) == REFUSED
    legacy_crt, legacy_key_path = write_identity(tmp_path / "legacy", legacy, legacy_key)
    assert svc.whoami(legacy_crt, legacy_key_path) == (200, {"id": legacy_id})


def test_non_canonical_upload_registers_but_the_gate_compares_text(svc, make_identity):
    """Like the real cloud: the stored PEM is compared textually with the presented one."""
    ident = make_identity(svc.reserve_id())
    crlf = ident.pem.replace(b"\n", b"\r\n")
    assert svc.upload(ident.agent_id, crlf).status_code == 200
    assert svc.registrations()[ident.agent_id] == ident.fingerprint
    assert verdicts(svc, ident.crt_path, ident.key_path) == REFUSED
    assert svc.upload(ident.agent_id, ident.pem).status_code == 200
    assert verdicts(svc, ident.crt_path, ident.key_path) == ACCEPTED


_NOW = datetime.datetime.now(datetime.UTC)


@pytest.mark.parametrize(
    "options",
    [
        {"not_before": _NOW - datetime.timedelta(days=30), "not_after": _NOW - datetime.timedelta(days=1)},
        {"not_before": _NOW + datetime.timedelta(days=1), "not_after": _NOW + datetime.timedelta(days=30)},
        {"client_auth": False},
    ],
    ids=["expired", "not-yet-valid", "server-auth-only"],
)
def test_nginx_answers_400_to_an_unusable_client_certificate(svc, registered, make_identity, options):
    """TLS completes (optional_no_ca), then nginx itself answers 400: no check is reached."""
    ident = make_identity(registered().agent_id, **options)
    before = svc.faults()["requests"]
    status, body = svc.whoami(ident.crt_path, ident.key_path)
    assert (status, body) == (400, None)
    ws = svc.ws_upgrade(ident.crt_path, ident.key_path)
    assert ws.status == 400 and b"The SSL certificate error" in ws.body
    assert svc.certificate_errors() == 2
    assert svc.faults()["requests"] == before


def test_deleted_id_is_refused(svc, registered):
    ident, other = registered(), registered()
    assert svc.ws_accepts(ident.crt_path, ident.key_path)
    assert svc.delete(ident.agent_id).status_code == 200
    assert verdicts(svc, ident.crt_path, ident.key_path) == REFUSED
    assert verdicts(svc, other.crt_path, other.key_path) == ACCEPTED


def test_enrolled_certificate_is_accepted_until_the_id_is_deleted(svc, tmp_path):
    agent_id = svc.reserve_id()
    key = make_key(2048)
    response = svc.enroll(make_csr(agent_id, key))
    assert response.status_code == 200
    cert = x509.load_pem_x509_certificate(response.json()["data"]["certificate"].encode())
    crt, key_path = write_identity(tmp_path / "enrolled", cert, key)
    assert verdicts(svc, crt, key_path) == ACCEPTED
    assert svc.delete(agent_id).status_code == 200
    assert verdicts(svc, crt, key_path) == REFUSED


def test_certificate_from_a_lookalike_enrollment_ca_is_refused(svc, tmp_path):
    """Same issuer name as the enrollment CA, different key: not the ID's registered certificate."""
    agent_id = svc.reserve_id()
    real_ca = x509.load_pem_x509_certificate((svc.state_dir / "enroll-ca.crt").read_bytes())
    fake_ca_key, key = make_key(2048), make_key(2048)
    cert = make_self_signed(agent_id, key, signer=fake_ca_key, issuer=real_ca.subject)
    crt, key_path = write_identity(tmp_path / "fake", cert, key)
    assert verdicts(svc, crt, key_path) == REFUSED


def test_a_client_cannot_forge_the_certificate_header(svc, registered, make_identity):
    """nginx sets X-SSL-Client-Cert itself: a header the client sends never reaches the app."""
    ident = registered()
    impostor = make_identity(ident.agent_id)
    forged = {"X-SSL-Client-Cert": urllib.parse.quote(ident.pem.decode())}
    with svc.session() as session:
        assert session.get(f"{svc.gate_url}/whoami", headers=forged, timeout=10).status_code == 403
        presented = session.get(
            f"{svc.gate_url}/whoami", headers=forged, cert=(str(impostor.crt_path), str(impostor.key_path)), timeout=10
        )
    assert presented.status_code == 403


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/"), ("GET", "/healthz"), ("GET", "/agents"), ("POST", "/agent/certificate"), ("GET", "/wss")],
)
def test_plain_routes_need_the_api_key_whatever_the_certificate(svc, registered, method, path):
    ident = registered()
    with svc.session() as session:
        session.cert = (str(ident.crt_path), str(ident.key_path))
        answer = session.request(method, f"{svc.gate_url}{path}", timeout=10)
        keyed = session.request(method, f"{svc.gate_url}{path}", headers=svc.auth_headers(), timeout=10)
    if path.startswith("/ws"):  # the middleware lets /ws* through: no such route
        assert (answer.status_code, answer.json()) == (404, {"detail": "Not Found"})
    else:
        assert (answer.status_code, answer.json()) == (403, {"detail": "Forbidden"})
    if path == "/healthz":
        assert (keyed.status_code, keyed.json()) == (200, {"statusCode": 200, "data": {"status": "ok"}})
    else:  # past the middleware: FastAPI's own answers
        assert keyed.status_code in (404, 405) and set(keyed.json()) == {"detail"}, keyed.text


def test_failed_handshakes_are_counted_from_nginx_log(svc):
    """A client that does not trust the gate aborts the handshake: nginx logs it, we count it."""
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{svc.gate_url}/whoami", timeout=10)  # system trust store: no service CA
    assert svc.handshake_failures("gate") == 1
    assert svc.faults()["requests"].get("/whoami", 0) == 0


def test_gate_decisions_survive_a_restart(service, make_identity):
    current, old = make_identity(service.reserve_id()), make_identity(service.reserve_id())
    for ident in (current, old):
        assert service.upload(ident.agent_id, ident.pem).status_code == 200
    rotated = make_identity(old.agent_id)
    assert service.upload(rotated.agent_id, rotated.pem).status_code == 200
    service.restart()
    assert verdicts(service, current.crt_path, current.key_path) == ACCEPTED
    assert service.ws_accepts(rotated.crt_path, rotated.key_path)
    assert verdicts(service, old.crt_path, old.key_path) == REFUSED


def test_socketio_refusal_is_the_real_cloud_packet(svc, make_identity):
    """The exact CONNECT_ERROR the real cloud's python-socketio sends when connect returns False."""
    impostor = make_identity(svc.reserve_id())
    answer = svc.socketio_connect(impostor.crt_path, impostor.key_path, "websocket")
    assert answer[:2] == "44" and json.loads(answer[2:]) == {"message": "Connection rejected by server"}


# -- helpers ---------------------------------------------------------------------------------
def _pem(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _ca_true_cert(agent_id: str, key) -> x509.Certificate:
    """What `openssl req -x509` makes with Debian's default openssl.cnf (v3_ca)."""
    from cryptography.hazmat.primitives import hashes

    from tests.fixtures.servicectl import upstream_subject

    now = datetime.datetime.now(datetime.UTC)
    name = upstream_subject(agent_id)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(ski, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )

