"""Certificate profile, canonical PEM, key handling and parsing (real crypto)."""

from __future__ import annotations

import datetime
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certinfo, certs
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import CertificateError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.keys import (
    certificate_public,
    generate_key,
    key_matches_certificate,
    load_private_key,
    private_key_pem,
    public_numbers_of,
    summarize_private_key,
)
from tests.fixtures.identities import AGENT_ID, UTC, build_cert, ec_key

SUBJECT = certinfo.normalize_subject(None)


@pytest.fixture(scope="module")
def made(keys):
    key = keys.get(0)
    before = datetime.datetime.now(UTC)
    cert = certs.build_self_signed(key, AGENT_ID, SUBJECT, 365)
    after = datetime.datetime.now(UTC)
    return key, cert, before, after


def test_subject_is_the_upstream_one_with_cn_last(made):
    _key, cert, _b, _a = made
    assert cert.subject.rfc4514_string() == (
        "CN=0A1B2C3D,OU=Development,O=AutonomyLogic,L=SaoPaulo,ST=SP,C=BR"
    )
    assert [a.oid for a in cert.subject][-1] == NameOID.COMMON_NAME
    assert cert.issuer == cert.subject


def test_signature_is_sha256_rsa_and_self_verifies(made):
    key, cert, _b, _a = made
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    key.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                            hashes.SHA256())
    assert certs.is_self_signed(cert)
    assert cert.version == x509.Version.v3


def test_validity_is_backdated_five_minutes_and_lasts_valid_days(made):
    _key, cert, before, after = made
    nb, na = certs.not_before(cert), certs.not_after(cert)
    # certificates carry whole seconds
    assert before - datetime.timedelta(minutes=5, seconds=1) <= nb <= after - datetime.timedelta(minutes=5)
    assert before + datetime.timedelta(days=365, seconds=-1) <= na <= after + datetime.timedelta(days=365)


def test_serial_is_random_positive_and_at_most_159_bits(keys):
    key = keys.get(0)
    serials = {certs.build_self_signed(key, AGENT_ID, SUBJECT, 1).serial_number for _ in range(8)}
    assert len(serials) == 8
    assert all(0 < s < 2**159 for s in serials)
    assert max(s.bit_length() for s in serials) > 140  # random, not a counter


def test_extensions_are_exactly_the_client_profile(made):
    key, cert, _b, _a = made
    exts = {e.oid: e for e in cert.extensions}
    assert set(exts) == {
        ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE, ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    }
    bc = exts[ExtensionOID.BASIC_CONSTRAINTS]
    assert bc.critical and bc.value.ca is False and bc.value.path_length is None
    ku = exts[ExtensionOID.KEY_USAGE]
    assert ku.critical
    assert ku.value.digital_signature and ku.value.key_encipherment
    assert not any([ku.value.content_commitment, ku.value.data_encipherment,
                    ku.value.key_agreement, ku.value.key_cert_sign, ku.value.crl_sign])
    eku = exts[ExtensionOID.EXTENDED_KEY_USAGE]
    assert list(eku.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    ski = exts[ExtensionOID.SUBJECT_KEY_IDENTIFIER]
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    assert certs.client_auth_problems(cert) == []


def test_csr_has_same_subject_and_extensions(keys):
    key = keys.get(0)
    csr = certs.build_csr(key, AGENT_ID, SUBJECT)
    assert csr.is_signature_valid
    assert csr.subject == certs.build_name(SUBJECT, AGENT_ID)
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
    oids = {e.oid for e in csr.extensions}
    assert ExtensionOID.EXTENDED_KEY_USAGE in oids and ExtensionOID.KEY_USAGE in oids
    pem = certs.csr_pem(csr)
    assert pem.startswith(b"-----BEGIN CERTIFICATE REQUEST-----\n")


def test_canonical_pem_is_one_cert_64_columns_lf(made):
    _key, cert, _b, _a = made
    pem = certs.certificate_pem(cert)
    assert b"\r" not in pem and pem.endswith(b"-----END CERTIFICATE-----\n")
    lines = pem.decode().split("\n")
    assert lines[0] == "-----BEGIN CERTIFICATE-----" and lines[-1] == ""
    body = lines[1:-2]
    assert all(len(line) == 64 for line in body[:-1]) and 0 < len(body[-1]) <= 64
    assert all(re.fullmatch(r"[A-Za-z0-9+/=]+", line) for line in body)
    assert pem.count(b"BEGIN") == 1


def _rewrap76(pem: bytes) -> bytes:
    lines = pem.split(b"\n")
    body = b"".join(lines[1:-2])
    wrapped = b"\n".join(body[i:i + 76] for i in range(0, len(body), 76))
    return lines[0] + b"\n" + wrapped + b"\n" + lines[-2] + b"\n"


@pytest.mark.parametrize("mangle", [
    lambda p: p.replace(b"\n", b"\r\n"),                 # CRLF
    lambda p: b"subject=CN = x\nissuer=CN = x\n" + p,     # openssl x509 -text style header
    lambda p: p[:-1],                                      # no trailing newline
    _rewrap76,                                             # 76-column base64
], ids=["crlf", "header", "no-final-newline", "76-columns"])
def test_canonical_form_of_non_canonical_input(made, mangle):
    _key, cert, _b, _a = made
    canonical = certs.certificate_pem(cert)
    assert mangle(canonical) != canonical
    assert certs.canonical_certificate_pem(mangle(canonical)) == canonical


def test_canonical_form_refuses_chains_and_keys(made, keys):
    key, cert, _b, _a = made
    pem = certs.certificate_pem(cert)
    with pytest.raises(CertificateError, match="exactly one"):
        certs.canonical_certificate_pem(pem + pem)
    with pytest.raises(CertificateError, match="private key") as info:
        certs.load_certificate(pem + private_key_pem(key))
    assert b"PRIVATE" not in str(info.value).encode()
    with pytest.raises(CertificateError):
        certs.load_certificate(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(CertificateError, match="no PEM"):
        certs.load_certificate(b"")


def test_private_key_is_pkcs8_unencrypted_and_never_in_errors(keys):
    key = keys.get(0)
    pem = private_key_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    garbled = pem[:200] + b"garbage" + pem[200:]
    with pytest.raises(CertificateError) as info:
        load_private_key(garbled)
    assert pem[40:80].decode() not in str(info.value)


@pytest.mark.parametrize("validate", [False, True])
def test_load_private_key_roundtrip_and_match(keys, validate):
    key, other = keys.get(0), keys.get(1)
    cert = build_cert(key)
    loaded = load_private_key(private_key_pem(key), validate=validate)
    assert key_matches_certificate(loaded, cert)
    assert not key_matches_certificate(keys.get(1), cert)
    assert not key_matches_certificate(ec_key(), cert)
    assert public_numbers_of(other) != public_numbers_of(cert)


def test_traditional_rsa_format_loads(keys):
    key = keys.get(0)
    legacy = key.private_bytes(serialization.Encoding.PEM,
                               serialization.PrivateFormat.TraditionalOpenSSL,
                               serialization.NoEncryption())
    assert legacy.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert load_private_key(legacy).key_size == 2048


def test_encrypted_key_is_reported_as_such(keys):
    enc = keys.get(0).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.BestAvailableEncryption(b"secret"))
    with pytest.raises(CertificateError, match="passphrase"):
        load_private_key(enc)


def test_key_size_bounds():
    with pytest.raises(CertificateError):
        generate_key(1024)
    with pytest.raises(CertificateError):
        generate_key(32768)


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"days": -1, "not_before": datetime.datetime.now(UTC) - datetime.timedelta(days=10)}, "expired"),
    ({"not_before": datetime.datetime.now(UTC) + datetime.timedelta(days=1)}, "not valid before"),
    ({"client_auth": False}, "clientAuth"),
    ({"ca": True}, "CA certificate"),
])
def test_client_auth_problems(keys, kwargs, problem):
    cert = build_cert(keys.get(0), **kwargs)
    problems = certs.client_auth_problems(cert)
    assert any(problem in p for p in problems), problems


def test_certinfo_facts(made):
    _key, cert, _b, _a = made
    info = certs.cert_info(cert)
    facts = info.facts()
    assert facts["agent_id"] == AGENT_ID
    assert re.fullmatch(r"[0-9a-f]{64}", facts["fingerprint_sha256"])
    assert facts["fingerprint_sha256"] == cert.fingerprint(hashes.SHA256()).hex()
    assert int(facts["serial"], 16) == cert.serial_number
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", facts["not_after"])
    assert facts["days_left"] in (364, 365)
    assert facts["key_size"] == 2048
    assert info.self_signed and info.is_rsa


def test_ca_issued_certificate_is_not_self_signed(keys):
    ca_key = keys.get(2)
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Enrollment CA")])
    cert = build_cert(keys.get(0), signer=ca_key, issuer_name=issuer)
    assert not certs.is_self_signed(cert)
    # same name as subject but signed by someone else: not self-signed either
    forged = build_cert(keys.get(0), signer=ca_key)
    assert not certs.is_self_signed(forged)


def test_get_agent_id(tmp_path, made):
    _key, cert, _b, _a = made
    path = tmp_path / "client.crt"
    path.write_bytes(certs.certificate_pem(cert))
    assert certs.get_agent_id(str(path)) == AGENT_ID
    with pytest.raises(CertificateError, match="cannot read"):
        certs.get_agent_id(str(tmp_path / "missing.crt"))


@pytest.mark.parametrize(("subject", "message"), [
    ({"C": "BRA"}, "two-letter"),
    ({"O": ""}, "non-empty"),
    ({"OU": "a\nb"}, "control"),
    ({"CN": "x"}, "unknown subject"),
    ({"L": "x" * 65}, "64"),
])
def test_subject_validation(subject, message):
    with pytest.raises(CertificateError, match=message):
        certinfo.normalize_subject(subject)


def test_subject_defaults_and_overrides():
    assert certinfo.normalize_subject({"O": "Acme", "C": None}) == {
        "C": "BR", "ST": "SP", "L": "SaoPaulo", "O": "Acme", "OU": "Development"}


# ---- the cheap key summary used on re-runs --------------------------------------------------
@pytest.mark.parametrize("fmt", ["pkcs8", "pkcs1"])
def test_key_summary_matches_the_library(keys, fmt):
    key = keys.get(0)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8 if fmt == "pkcs8" else serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption())
    summary = summarize_private_key(pem)
    numbers = key.public_key().public_numbers()
    assert summary.is_rsa and summary.key_size == 2048
    assert summary.public == (numbers.n, numbers.e)
    assert summary.public == certificate_public(build_cert(key))
    assert summary.public != certificate_public(build_cert(keys.get(1)))


def test_key_summary_of_a_4096_bit_key_is_fast(keys):
    import time

    pem = private_key_pem(keys.get(0, 4096))
    started = time.perf_counter()
    for _ in range(20):
        summary = summarize_private_key(pem)
    assert summary.key_size == 4096
    assert (time.perf_counter() - started) / 20 < 0.02  # OpenSSL's full check: ~0.3 s


def test_key_summary_of_other_algorithms():
    pem = ec_key().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    summary = summarize_private_key(pem)
    assert summary.is_rsa is False and summary.public is None


def test_key_summary_detects_any_damaged_byte(keys):
    import base64
    import random

    pem = private_key_pem(keys.get(0))
    lines = pem.split(b"\n")
    der = bytearray(base64.b64decode(b"".join(lines[1:-2])))
    rng = random.Random(7)
    for pos in sorted(rng.sample(range(len(der)), 40)):
        damaged = bytearray(der)
        damaged[pos] ^= 1 << rng.randrange(8)
        body = base64.encodebytes(bytes(damaged))
        with pytest.raises(CertificateError):
            summarize_private_key(b"-----BEGIN PRIVATE KEY-----\n" + body + b"-----END PRIVATE KEY-----\n")


def test_key_summary_of_encrypted_and_garbage_keys(keys):
    enc = keys.get(0).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.BestAvailableEncryption(b"secret"))
    with pytest.raises(CertificateError, match="passphrase"):
        summarize_private_key(enc)
    with pytest.raises(CertificateError):
        summarize_private_key(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(CertificateError):
        summarize_private_key(b"hello")
