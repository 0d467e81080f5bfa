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


def test_registered_certificate_gets_in(service, registered):
    ident = registered()
    assert service.whoami(ident.crt_path, ident.key_path) == (200, {"id": ident.agent_id})


def test_no_client_certificate_fails_the_handshake(service, registered):
    registered()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{service.gate_url}/whoami", verify=str(service.ca_path), timeout=10)
    assert service.handshake_failures("gate") == 1


def test_never_uploaded_certificate_with_the_same_cn_is_refused(service, registered, make_identity):
    ident = registered()
    impostor = make_identity(ident.agent_id)
    assert refused(service, impostor) == "handshake"
    assert service.whoami(ident.crt_path, ident.key_path)[0] == 200


def test_certificate_of_an_id_never_registered_is_refused(service, make_identity):
    reserved_only = make_identity(service.reserve_id())
    assert refused(service, reserved_only) == "handshake"


def test_superseded_certificate_is_refused_after_rotation(service, registered, make_identity):
    old = registered()
    new = make_identity(old.agent_id)
    assert service.upload(new.agent_id, new.pem).status_code == 200
    assert refused(service, old) == "handshake"
    assert service.whoami(new.crt_path, new.key_path) == (200, {"id": old.agent_id})


def test_superseded_certificate_with_the_same_key_is_refused(service, registered, make_identity):
    """Same key, same CN, only the certificate differs: the registry check must refuse."""
    old = registered()
    new = make_identity(old.agent_id, key=old.key)
    assert service.upload(new.agent_id, new.pem).status_code == 200
    assert refused(service, old) in ("handshake", "403")
    assert service.whoami(new.crt_path, new.key_path)[0] == 200


def test_registered_ca_certificate_cannot_vouch_for_other_ids(service, make_identity, tmp_path):
    """A legacy registered certificate is CA:TRUE (openssl req -x509 defaults): certificates its
    key signs chain to it in the trust store, so the handshake succeeds; the gate must still
    refuse them (403) because they are not the registered certificate of their CN."""
    legacy_id, victim_id = service.reserve_id(), service.reserve_id()
    legacy_key = make_key(2048)
    legacy = _ca_true_cert(legacy_id, legacy_key)
    assert service.upload(legacy_id, _pem(legacy)).status_code == 200
    victim = make_identity(victim_id)
    assert service.upload(victim_id, victim.pem).status_code == 200

    minted_key = make_key(2048)
    minted = make_self_signed(victim_id, minted_key, signer=legacy_key, issuer=legacy.subject)
    crt, key = write_identity(tmp_path / "minted", minted, minted_key)
    status, body = service.whoami(crt, key)  # the handshake passes: only the registry refuses
    assert status == 403, body
    legacy_crt, legacy_key_path = write_identity(tmp_path / "legacy", legacy, legacy_key)
    assert service.whoami(legacy_crt, legacy_key_path) == (200, {"id": legacy_id})


def test_non_canonical_upload_registers_but_the_gate_compares_text(service, make_identity):
    """Like real front ends: the stored PEM is compared textually with the presented one."""
    ident = make_identity(service.reserve_id())
    crlf = ident.pem.replace(b"\n", b"\r\n")
    assert service.upload(ident.agent_id, crlf).status_code == 200
    assert service.registrations() == {ident.agent_id: ident.fingerprint}
    assert refused(service, ident) == "403"
    assert service.upload(ident.agent_id, ident.pem).status_code == 200
    assert service.whoami(ident.crt_path, ident.key_path)[0] == 200


def test_expired_certificate_is_refused(service, registered):
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2)
    ident = registered(not_after=soon)
    assert service.whoami(ident.crt_path, ident.key_path)[0] == 200
    time.sleep(max(0.0, (soon - datetime.datetime.now(datetime.UTC)).total_seconds()) + 1.1)
    assert refused(service, ident) == "handshake"


def test_deleted_id_is_refused(service, registered):
    ident, other = registered(), registered()
    assert service.whoami(ident.crt_path, ident.key_path)[0] == 200
    assert service.delete(ident.agent_id).status_code == 200
    assert refused(service, ident) == "handshake"
    assert service.whoami(other.crt_path, other.key_path) == (200, {"id": other.agent_id})


def test_enrolled_certificate_gets_in_until_the_id_is_deleted(service, tmp_path):
    agent_id = service.reserve_id()
    key = make_key(2048)
    response = service.enroll(make_csr(agent_id, key))
    assert response.status_code == 200
    cert = x509.load_pem_x509_certificate(response.json()["data"]["certificate"].encode())
    crt, key_path = write_identity(tmp_path / "enrolled", cert, key)
    assert service.whoami(crt, key_path) == (200, {"id": agent_id})
    assert service.delete(agent_id).status_code == 200
    status, body = service.whoami(crt, key_path)  # the enrollment CA still verifies it: 403
    assert status == 403, body


def test_certificate_from_a_lookalike_enrollment_ca_is_refused(service, tmp_path):
    """Same issuer name as the enrollment CA, different key: signature check fails."""
    agent_id = service.reserve_id()
    real_ca = x509.load_pem_x509_certificate((service.state_dir / "enroll-ca.crt").read_bytes())
    fake_ca_key, key = make_key(2048), make_key(2048)
    cert = make_self_signed(agent_id, key, signer=fake_ca_key, issuer=real_ca.subject)
    crt, key_path = write_identity(tmp_path / "fake", cert, key)
    with pytest.raises(requests.exceptions.ConnectionError):
        service.whoami(crt, key_path)


def test_gate_decisions_survive_a_restart(service, registered, make_identity):
    current, old = registered(), registered()
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
