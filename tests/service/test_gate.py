"""The mutual-TLS gate: only the currently registered certificate of a live ID gets in.

A refusal is either a failed handshake (``requests.exceptions.ConnectionError``) or a 403;
some cases below are built so that one specific layer (trust store or registry check) is the
one that has to refuse.
"""

from __future__ import annotations

import datetime
import time

import pytest
import requests
from cryptography import x509

from tests.servicectl import make_csr, make_key, make_self_signed, write_identity


def refused(service, ident) -> str:
    """Return how the gate refused ``ident`` ("handshake" or "403"); fail if it let it in."""
    try:
        status, body = service.whoami(ident.crt_path, ident.key_path)
    except requests.exceptions.ConnectionError:
        return "handshake"
    assert status == 403, (status, body)
    assert body["statusCode"] == 403
    return "403"


def test_registered_certificate_gets_in(svc, registered):
    ident = registered()
    assert svc.whoami(ident.crt_path, ident.key_path) == (200, {"id": ident.agent_id})


def test_no_client_certificate_fails_the_handshake(svc, registered):
    registered()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{svc.gate_url}/whoami", verify=str(svc.ca_path), timeout=10)
    assert svc.handshake_failures("gate") == 1


def test_never_uploaded_certificate_with_the_same_cn_is_refused(svc, registered, make_identity):
    ident = registered()
    impostor = make_identity(ident.agent_id)
    assert refused(svc, impostor) == "handshake"
    assert svc.whoami(ident.crt_path, ident.key_path)[0] == 200


def test_certificate_of_an_id_never_registered_is_refused(svc, make_identity):
    reserved_only = make_identity(svc.reserve_id())
    assert refused(svc, reserved_only) == "handshake"


def test_superseded_certificate_is_refused_after_rotation(svc, registered, make_identity):
    old = registered()
    new = make_identity(old.agent_id)
    assert svc.upload(new.agent_id, new.pem).status_code == 200
    assert refused(svc, old) == "handshake"
    assert svc.whoami(new.crt_path, new.key_path) == (200, {"id": old.agent_id})


def test_superseded_certificate_with_the_same_key_is_refused(svc, registered, make_identity):
    """Same key, same CN, only the certificate differs: the registry check must refuse."""
    old = registered()
    new = make_identity(old.agent_id, key=old.key)
    assert svc.upload(new.agent_id, new.pem).status_code == 200
    assert refused(svc, old) in ("handshake", "403")
    assert svc.whoami(new.crt_path, new.key_path)[0] == 200


def test_registered_ca_certificate_cannot_vouch_for_other_ids(svc, make_identity, tmp_path):
    """A legacy registered certificate is CA:TRUE (openssl req -x509 defaults): certificates its
    key signs chain to it in the trust store, so the handshake succeeds; the gate must still
    refuse them (403) because they are not the registered certificate of their CN."""
    legacy_id, victim_id = svc.reserve_id(), svc.reserve_id()
    legacy_key = make_key(2048)
    legacy = _ca_true_cert(legacy_id, legacy_key)
    assert svc.upload(legacy_id, _pem(legacy)).status_code == 200
    victim = make_identity(victim_id)
    assert svc.upload(victim_id, victim.pem).status_code == 200

    minted_key = make_key(2048)
    minted = make_self_signed(victim_id, minted_key, signer=legacy_key, issuer=legacy.subject)
    crt, key = write_identity(tmp_path / "minted", minted, minted_key)
    status, body = svc.whoami(crt, key)  # the handshake passes: only the registry refuses
    assert status == 403, body
    legacy_crt, legacy_key_path = write_identity(tmp_path / "legacy", legacy, legacy_key)
    assert svc.whoami(legacy_crt, legacy_key_path) == (200, {"id": legacy_id})


def test_non_canonical_upload_registers_but_the_gate_compares_text(svc, make_identity):
    """Like real front ends: the stored PEM is compared textually with the presented one."""
    ident = make_identity(svc.reserve_id())
    crlf = ident.pem.replace(b"\n", b"\r\n")
    assert svc.upload(ident.agent_id, crlf).status_code == 200
    assert svc.registrations()[ident.agent_id] == ident.fingerprint
    assert refused(svc, ident) == "403"
    assert svc.upload(ident.agent_id, ident.pem).status_code == 200
    assert svc.whoami(ident.crt_path, ident.key_path)[0] == 200


def test_expired_certificate_is_refused(svc, registered):
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2)
    ident = registered(not_after=soon)
    assert svc.whoami(ident.crt_path, ident.key_path)[0] == 200
    time.sleep(max(0.0, (soon - datetime.datetime.now(datetime.UTC)).total_seconds()) + 1.1)
    assert refused(svc, ident) == "handshake"


def test_deleted_id_is_refused(svc, registered):
    ident, other = registered(), registered()
    assert svc.whoami(ident.crt_path, ident.key_path)[0] == 200
    assert svc.delete(ident.agent_id).status_code == 200
    assert refused(svc, ident) == "handshake"
    assert svc.whoami(other.crt_path, other.key_path) == (200, {"id": other.agent_id})


def test_enrolled_certificate_gets_in_until_the_id_is_deleted(svc, tmp_path):
    agent_id = svc.reserve_id()
    key = make_key(2048)
    response = svc.enroll(make_csr(agent_id, key))
    assert response.status_code == 200
    cert = x509.load_pem_x509_certificate(response.json()["data"]["certificate"].encode())
    crt, key_path = write_identity(tmp_path / "enrolled", cert, key)
    assert svc.whoami(crt, key_path) == (200, {"id": agent_id})
    assert svc.delete(agent_id).status_code == 200
    status, body = svc.whoami(crt, key_path)  # the enrollment CA still verifies it: 403
    assert status == 403, body


def test_certificate_from_a_lookalike_enrollment_ca_is_refused(svc, tmp_path):
    """Same issuer name as the enrollment CA, different key: signature check fails."""
    agent_id = svc.reserve_id()
    real_ca = x509.load_pem_x509_certificate((svc.state_dir / "enroll-ca.crt").read_bytes())
    fake_ca_key, key = make_key(2048), make_key(2048)
    cert = make_self_signed(agent_id, key, signer=fake_ca_key, issuer=real_ca.subject)
    crt, key_path = write_identity(tmp_path / "fake", cert, key)
    with pytest.raises(requests.exceptions.ConnectionError):
        svc.whoami(crt, key_path)


def test_gate_decisions_survive_a_restart(service, make_identity):
    current, old = make_identity(service.reserve_id()), make_identity(service.reserve_id())
    for ident in (current, old):
        assert service.upload(ident.agent_id, ident.pem).status_code == 200
    rotated = make_identity(old.agent_id)
    assert service.upload(rotated.agent_id, rotated.pem).status_code == 200
    service.restart()
    assert service.whoami(current.crt_path, current.key_path)[0] == 200
    assert service.whoami(rotated.crt_path, rotated.key_path)[0] == 200
    assert refused(service, old) == "handshake"


# -- helpers ---------------------------------------------------------------------------------
def _pem(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _ca_true_cert(agent_id: str, key) -> x509.Certificate:
    """What `openssl req -x509` makes with Debian's default openssl.cnf (v3_ca)."""
    from cryptography.hazmat.primitives import hashes

    from tests.servicectl import upstream_subject

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
