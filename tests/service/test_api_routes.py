"""The API listener: reservations, uploads (multipart and JSON), refusals, enrollment, deletion.

Every request goes over real TLS verified against the service's ca.crt.
"""

from __future__ import annotations

import datetime
import re
import time

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.fixtures.servicectl import cert_pem, fingerprint, key_pem, make_csr, make_key, make_self_signed

NOW = datetime.datetime.now(datetime.UTC)


def _error(response: requests.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["statusCode"] == status
    assert isinstance(body["message"], str) and body["message"]
    return body["message"]


def _detail(response: requests.Response, status: int) -> str:
    """An error of /agent/certificate: the real cloud's FastAPI shape, {"detail": "..."}."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str) and body["detail"], body
    return body["detail"]


# -- reservations ----------------------------------------------------------------------------
def test_generate_id_answers_the_upstream_shape(svc):
    response = svc.session().get(f"{svc.api_url}/generate-orchestrator-id", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["statusCode"] == 200
    data = body["data"]
    assert re.fullmatch(r"[0-9A-F]{8}", data["id"])
    assert data["expiresIn"] == 600
    expires = datetime.datetime.fromisoformat(data["expiresAt"].replace("Z", "+00:00"))
    assert expires.tzinfo is not None
    left = (expires - datetime.datetime.now(datetime.UTC)).total_seconds()
    assert 590 < left <= 600
    assert svc.reserved_ids()[-1] == data["id"]


def test_orchestrators_id_answers_the_current_installers_shape(svc):
    """``{"data": {"id", "expiresAt", "expiresIn"}}``: no statusCode envelope."""
    response = svc.session().get(f"{svc.api_url}/orchestrators/id", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["data"] and list(body["data"]) == ["id", "expiresAt", "expiresIn"]
    data = body["data"]
    assert re.fullmatch(r"[0-9A-F]{8}", data["id"])
    assert data["expiresIn"] == 600
    expires = datetime.datetime.fromisoformat(data["expiresAt"].replace("Z", "+00:00"))
    assert 590 < (expires - datetime.datetime.now(datetime.UTC)).total_seconds() <= 600
    assert svc.reserved_ids()[-1] == data["id"]


def test_a_lapsed_reservation_is_refused_by_every_registration_route(service_factory, make_identity):
    """Reserved through /orchestrators/id with a 1 s TTL: once it lapsed unused, the legacy
    upload, the JSON upload and the enrollment all answer the registry's 410; a reservation
    used in time no longer lapses."""
    service = service_factory(reservation_ttl=1)

    def reserve() -> dict:
        return service.session().get(f"{service.api_url}/orchestrators/id", timeout=10).json()["data"]

    used, unused = reserve(), reserve()
    assert unused["expiresIn"] == 1
    assert service.enroll(make_csr(used["id"], make_key(2048))).status_code == 200
    lapse = datetime.datetime.fromisoformat(unused["expiresAt"].replace("Z", "+00:00"))
    while datetime.datetime.now(datetime.UTC) <= lapse + datetime.timedelta(milliseconds=2):
        time.sleep(0.05)  # a reservation lapses only as time passes
    expected = f"the reservation of ID {unused['id']} expired at {unused['expiresAt'][:19]}Z unused; reserve a new ID"
    late = make_identity(unused["id"])
    assert _error(service.upload(late.agent_id, late.pem), 410) == expected
    assert _detail(service.upload_json(late.agent_id, late.pem), 410) == expected
    assert _error(service.enroll(make_csr(late.agent_id, late.key)), 410) == expected
    assert unused["id"] not in service.registrations()
    assert service.enroll(make_csr(used["id"], make_key(2048))).status_code == 200  # rotation still works


def test_ids_are_unique_and_kept_forever(service):
    ids = [service.reserve_id() for _ in range(30)]
    assert len(set(ids)) == 30
    service.delete(ids[0])
    service.restart()
    assert service.reserved_ids() == ids  # deleted ones included, across a restart
    # an ID handed out once can never be handed out again
    service.inject("/generate-orchestrator-id", "fixed_id", value=ids[0])
    _error(service.session().get(f"{service.api_url}/generate-orchestrator-id", timeout=10), 409)


def test_reservation_expires_after_the_ttl(service_factory, make_identity):
    service = service_factory(reservation_ttl=1)
    late = make_identity(service.reserve_id())
    on_time = make_identity(service.reserve_id())
    assert service.upload(on_time.agent_id, on_time.pem).status_code == 200
    time.sleep(1.3)
    message = _error(service.upload(late.agent_id, late.pem), 410)
    assert "expired" in message
    assert late.agent_id not in service.registrations()
    # a registered ID no longer depends on its reservation: rotation still works
    rotated = make_identity(on_time.agent_id)
    assert service.upload(rotated.agent_id, rotated.pem).status_code == 200
    assert service.registrations()[on_time.agent_id] == rotated.fingerprint


# -- upload: success, rotation ---------------------------------------------------------------
def test_upload_registers_and_answers_the_upstream_shape(svc, make_identity):
    ident = make_identity(svc.reserve_id())
    response = svc.upload(ident.agent_id, ident.crt_path)
    assert response.status_code == 200
    body = response.json()
    assert body["statusCode"] == 200
    assert body["data"]["id"] == ident.agent_id
    assert isinstance(body["data"]["message"], str)
    assert svc.registrations()[ident.agent_id] == ident.fingerprint
    assert svc.registered_pem(ident.agent_id) == ident.pem.decode()


def test_last_upload_wins_and_the_previous_one_goes_to_history(svc, make_identity):
    agent_id = svc.reserve_id()
    first, second, third = (make_identity(agent_id) for _ in range(3))
    for ident in (first, second, third):
        assert svc.upload(agent_id, ident.pem).status_code == 200
    assert svc.registrations()[agent_id] == third.fingerprint
    assert svc.history(agent_id) == [first.fingerprint, second.fingerprint]
    # re-uploading the current certificate changes nothing
    assert svc.upload(agent_id, third.pem).status_code == 200
    assert svc.history(agent_id) == [first.fingerprint, second.fingerprint]


def test_certificate_without_any_extension_is_accepted(svc):
    """The legacy installer's certificate carries no extensions at all."""
    agent_id = svc.reserve_id()
    key = make_key(2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, agent_id)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(minutes=1))
        .not_valid_after(NOW + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    assert svc.upload(agent_id, cert_pem(cert)).status_code == 200
    assert svc.registrations()[agent_id] == fingerprint(cert)


def test_certificate_as_plain_form_field_is_accepted(svc, make_identity):
    """curl -F 'certificate=<client.crt' sends the PEM as a field, not a file."""
    ident = make_identity(svc.reserve_id())
    response = svc.session().post(
        f"{svc.api_url}/upload-orchestrator-certificate",
        files={"certificate": (None, ident.pem), "id": (None, ident.agent_id)},
        timeout=10,
    )
    assert response.status_code == 200, response.text


# -- upload: refusals (each one would pass if its check were removed) --------------------------
def _make(kind, agent_id, keys):
    """Certificate bytes for refusal case ``kind``."""
    key = keys()
    if kind == "cn_mismatch":
        return cert_pem(make_self_signed("0BADC0DE" if agent_id != "0BADC0DE" else "0BADC0DF", key))
    if kind == "rsa_1024":
        return cert_pem(make_self_signed(agent_id, make_key(1024)))
    if kind == "ec_key":
        ec_key = ec.generate_private_key(ec.SECP256R1())
        return cert_pem(make_self_signed(agent_id, ec_key))
    if kind == "eku_server_only":
        return cert_pem(make_self_signed(agent_id, key, client_auth=False))
    if kind == "expired":
        return cert_pem(
            make_self_signed(
                agent_id,
                key,
                not_before=NOW - datetime.timedelta(days=30),
                not_after=NOW - datetime.timedelta(days=1),
            )
        )
    if kind == "not_yet_valid":
        return cert_pem(make_self_signed(agent_id, key, not_before=NOW + datetime.timedelta(days=1)))
    good = cert_pem(make_self_signed(agent_id, key))
    if kind == "two_certificates":
        return good + cert_pem(make_self_signed(agent_id, keys()))
    if kind == "text_around":
        return b"subject=CN = " + agent_id.encode() + b"\n" + good
    if kind == "garbage_pem":
        return b"-----BEGIN CERTIFICATE-----\nTUlJQm9ndXM=\n-----END CERTIFICATE-----\n"
    if kind == "not_pem":
        return b"hello"
    if kind == "empty":
        return b""
    if kind == "csr_instead":
        return make_csr(agent_id, key)
    raise AssertionError(kind)


REFUSALS = [
    ("cn_mismatch", "does not match"),
    ("rsa_1024", "2048"),
    ("ec_key", "RSA"),
    ("eku_server_only", "clientAuth"),
    ("expired", "expired"),
    ("not_yet_valid", "not valid yet"),
    ("two_certificates", "exactly one"),
    ("text_around", "exactly one"),
    ("garbage_pem", "cannot be parsed"),
    ("not_pem", "exactly one"),
    ("empty", "missing"),
    ("csr_instead", "exactly one"),
]


@pytest.mark.parametrize(("kind", "reason"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_upload_refuses_bad_certificates(shared_service, key_pool, kind, reason):
    agent_id = shared_service.reserve_id()
    message = _error(shared_service.upload(agent_id, _make(kind, agent_id, key_pool)), 400)
    assert reason in message
    assert agent_id not in shared_service.registrations()


@pytest.mark.parametrize(("kind", "reason"), REFUSALS[:6], ids=[r[0] for r in REFUSALS[:6]])
def test_json_upload_refuses_bad_certificates(shared_service, key_pool, kind, reason):
    agent_id = shared_service.reserve_id()
    response = shared_service.upload_json(agent_id, _make(kind, agent_id, key_pool))
    assert reason in _detail(response, 400)
    assert agent_id not in shared_service.registrations()


def test_upload_refuses_unknown_and_malformed_ids(shared_service, make_identity):
    never_reserved = "FFFFFFF0"
    while never_reserved in shared_service.reserved_ids():  # pragma: no cover - 2^-32
        never_reserved = f"{int(never_reserved, 16) - 1:08X}"
    ident = make_identity(never_reserved)
    _error(shared_service.upload(never_reserved, ident.pem), 404)
    for bad in ("../../etc/passwd", "a1b2c3d4", "A/CN=evil", "0A1B2C3D\n", "123456789", ""):
        response = shared_service.upload(bad, make_identity(bad or "X").pem)
        _error(response, 400)
    assert never_reserved not in shared_service.registrations()


def test_upload_refuses_missing_fields_and_non_multipart(shared_service, make_identity):
    ident = make_identity(shared_service.reserve_id())
    session = shared_service.session()
    url = f"{shared_service.api_url}/upload-orchestrator-certificate"
    only_cert = session.post(url, files={"certificate": ("c.crt", ident.pem)}, timeout=10)
    assert "'id'" in _error(only_cert, 400)
    only_id = session.post(url, files={"id": (None, ident.agent_id)}, timeout=10)
    assert "'certificate'" in _error(only_id, 400)
    as_json = session.post(url, json={"id": ident.agent_id, "certificate": ident.pem.decode()})
    assert "multipart" in _error(as_json, 400)
    twice = session.post(
        url,
        files=[("certificate", ("a.crt", ident.pem)), ("certificate", ("b.crt", ident.pem))],
        data={"id": ident.agent_id},
        timeout=10,
    )
    assert "more than once" in _error(twice, 400)
    assert ident.agent_id not in shared_service.registrations()


@pytest.mark.parametrize("how", ["key_appended", "key_only", "key_in_other_field", "json"])
def test_body_with_a_private_key_is_refused_and_nothing_kept(service, make_identity, how):
    ident = make_identity(service.reserve_id())
    secret = key_pem(ident.key)
    marker = secret.splitlines()[5]  # a line of the key's base64
    session = service.session()
    url = f"{service.api_url}/upload-orchestrator-certificate"
    if how == "key_appended":
        response = service.upload(ident.agent_id, ident.pem + secret)
    elif how == "key_only":
        response = service.upload(ident.agent_id, secret)
    elif how == "key_in_other_field":
        response = session.post(
            url,
            files={"certificate": ("c.crt", ident.pem), "notes": ("k.pem", secret)},
            data={"id": ident.agent_id},
            timeout=10,
        )
    else:
        response = service.upload_json(ident.agent_id, ident.pem + secret)
    error = _detail if how == "json" else _error
    assert "private key" in error(response, 400)
    assert service.registrations() == {}
    assert marker not in response.content
    service.stop()  # flush the WAL into the database file before looking at the bytes
    stored = b"".join(p.read_bytes() for p in service.state_dir.iterdir() if p.is_file())
    assert marker not in stored
    assert b"PRIVATE KEY" not in service.log_path.read_bytes()


def test_body_over_one_mebibyte_is_refused_with_413(shared_service, make_identity):
    ident = make_identity(shared_service.reserve_id())
    response = shared_service.upload(ident.agent_id, ident.pem + b"\n" * (1024 * 1024))
    _error(response, 413)
    assert ident.agent_id not in shared_service.registrations()


def test_json_upload_needs_the_bearer_token_and_answers_the_real_cloud_shape(shared_service, make_identity):
    ident = make_identity(shared_service.reserve_id())
    assert _detail(shared_service.upload_json(ident.agent_id, ident.pem, token="wrong"), 403) == "Forbidden"
    no_header = shared_service.session().post(
        f"{shared_service.api_url}/agent/certificate",
        json={"agent_id": ident.agent_id, "certificate": ident.pem.decode()},
        timeout=10,
    )
    assert _detail(no_header, 403) == "Forbidden"
    assert ident.agent_id not in shared_service.registrations()
    response = shared_service.upload_json(ident.agent_id, ident.pem)
    assert response.status_code == 200
    assert response.json() == {"message": "Certificate uploaded successfully", "agent_id": ident.agent_id}
    assert shared_service.registrations()[ident.agent_id] == ident.fingerprint


def test_json_upload_refuses_bad_json(shared_service):
    session = shared_service.session()
    url = f"{shared_service.api_url}/agent/certificate"
    headers = {**shared_service.auth_headers(), "Content-Type": "application/json"}
    for body in (b"{not json", b"[1, 2]", b'{"agent_id": "0A1B2C3D"}'):
        _detail(session.post(url, data=body, headers=headers, timeout=10), 400)


# -- enrollment ------------------------------------------------------------------------------
def test_enroll_signs_a_client_certificate_with_the_enrollment_ca(svc, tmp_path):
    agent_id = svc.reserve_id()
    key = make_key(2048)
    response = svc.enroll(make_csr(agent_id, key), agent_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["statusCode"] == 200
    assert body["data"]["id"] == agent_id
    cert = x509.load_pem_x509_certificate(body["data"]["certificate"].encode())
    ca = x509.load_pem_x509_certificate((svc.state_dir / "enroll-ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == agent_id
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert svc.registrations()[agent_id] == fingerprint(cert)
    assert svc.enrollments(agent_id) == [fingerprint(cert)]


def test_enroll_refusals(shared_service):
    agent_id = shared_service.reserve_id()
    key = make_key(2048)
    _error(shared_service.enroll(make_csr("FFFFFFFE", key)), 404)  # never reserved
    assert "does not match" in _error(shared_service.enroll(make_csr(agent_id, key), "0A0A0A0A"), 400)
    assert "2048" in _error(shared_service.enroll(make_csr(agent_id, make_key(1024))), 400)
    with_key = make_csr(agent_id, key) + key_pem(key)
    assert "private key" in _error(shared_service.enroll(with_key), 400)
    _error(
        shared_service.enroll(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"),
        400,
    )
    assert agent_id not in shared_service.registrations()


# -- deletion --------------------------------------------------------------------------------
def test_delete_decommissions_an_id(svc, registered, make_identity):
    ident = registered()
    _error(svc.delete(ident.agent_id, token="wrong"), 403)
    assert ident.agent_id in svc.registrations()
    _error(svc.delete("FFFFFFFD"), 404)
    _error(svc.delete("not-an-id"), 400)
    response = svc.delete(ident.agent_id)
    assert response.status_code == 200
    assert response.json()["data"]["id"] == ident.agent_id
    assert ident.agent_id not in svc.registrations()
    assert svc.history(ident.agent_id) == [ident.fingerprint]
    assert svc.deleted_ids()[-1] == ident.agent_id
    _error(svc.delete(ident.agent_id), 410)
    again = make_identity(ident.agent_id)
    assert "decommissioned" in _error(svc.upload(again.agent_id, again.pem), 410)
    _error(svc.enroll(make_csr(ident.agent_id, again.key)), 410)
    assert ident.agent_id not in svc.registrations()


# -- misc ------------------------------------------------------------------------------------
def test_healthz_and_unknown_paths(shared_service):
    session = shared_service.session()
    assert session.get(f"{shared_service.api_url}/healthz", timeout=10).json() == {
        "statusCode": 200,
        "data": {"status": "ok"},
    }
    _error(session.get(f"{shared_service.api_url}/nope", timeout=10), 404)
    _error(session.delete(f"{shared_service.api_url}/generate-orchestrator-id", timeout=10), 405)
