"""The standard-library certificate reader (certinfo.py) against cryptography's (certs.py):
the same CertInfo for every certificate it reads, the plain ones read without the library, the
others left to it - also for thousands of corrupted certificates (real crypto, no network)."""

from __future__ import annotations

import base64
import datetime
import random

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certinfo, certs
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import CertificateError
from tests.fixtures.identities import AGENT_ID, UTC

SUBJECT = certinfo.normalize_subject(None)
NOW = datetime.datetime.now(UTC)
FIELDS = ("agent_id", "subject", "fingerprint_sha256", "serial", "not_before", "not_after", "days_left", "key_size",
          "public", "is_rsa", "self_signed", "client_auth_problems")


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def der_to_pem(der):
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


def by_library(data):
    return certs.cert_info(certs.load_certificate(data), NOW)


def plain(data):
    """The standard-library reading, or None where it leaves the certificate to cryptography."""
    try:
        return certinfo._read_plain(data, NOW)
    except ValueError:
        return None


def assert_same(ours, theirs):
    for field in FIELDS:
        assert getattr(ours, field) == getattr(theirs, field), field


def builder(key, subject_name=None, issuer_name=None, days=365, start=None):
    name = subject_name or certs.build_name(SUBJECT, AGENT_ID)
    start = start or NOW - datetime.timedelta(minutes=5)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days)))


def ca_signed(keys, ski_aki=True):
    ca_key, key = keys.get(5), keys.get(0)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fleet CA")])
    b = (builder(key, issuer_name=ca_name)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if ski_aki:
        b = (b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    return b.sign(ca_key, hashes.SHA256())


def usage(key, *, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,), digital_signature=True, ca=False, path_length=None,
          algorithm=None, **kw):
    b = builder(key, **kw).add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if digital_signature is not None:
        b = b.add_extension(x509.KeyUsage(digital_signature, True, False, False, False, ca, ca, False, False),
                            critical=True)
    return b.sign(key, algorithm or hashes.SHA256())


# (name, certificate maker, whether the standard library reads it)
CASES = [
    ("the module's own", lambda k: certs.build_self_signed(k.get(0), AGENT_ID, SUBJECT, 365, NOW), True),
    ("a 4096-bit key", lambda k: certs.build_self_signed(k.get(0, 4096), AGENT_ID, SUBJECT, 365, NOW), True),
    ("issued by a CA (CSR mode)", ca_signed, True),
    ("issued, no key identifiers", lambda k: ca_signed(k, ski_aki=False), True),
    ("SHA-384", lambda k: usage(k.get(0), algorithm=hashes.SHA384()), True),
    ("SHA-512", lambda k: usage(k.get(0), algorithm=hashes.SHA512()), True),
    ("server auth only", lambda k: usage(k.get(0), eku=(ExtendedKeyUsageOID.SERVER_AUTH,)), True),
    ("any EKU", lambda k: usage(k.get(0), eku=(x509.ObjectIdentifier("2.5.29.37.0"),)), True),
    ("no EKU", lambda k: usage(k.get(0), eku=()), True),
    ("no digitalSignature", lambda k: usage(k.get(0), digital_signature=False), True),
    ("no keyUsage", lambda k: usage(k.get(0), digital_signature=None), True),
    ("a CA", lambda k: usage(k.get(0), ca=True), True),
    ("a CA with a path length", lambda k: usage(k.get(0), ca=True, path_length=0), True),
    ("expired", lambda k: usage(k.get(0), start=NOW - datetime.timedelta(days=400)), True),
    ("not yet valid", lambda k: usage(k.get(0), start=NOW + datetime.timedelta(days=2)), True),
    ("valid past 2050 (GeneralizedTime)", lambda k: usage(k.get(0), days=365 * 40), True),
    ("a UTF-8 subject", lambda k: certs.build_self_signed(
        k.get(0), AGENT_ID, dict(SUBJECT, L="São Paulo", O="Autonomy Lógica"), 365, NOW), True),
    ("two CNs", lambda k: usage(k.get(0), subject_name=x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "A"), x509.NameAttribute(NameOID.COMMON_NAME, "B")])), True),
    ("no CN", lambda k: usage(k.get(0), subject_name=x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Only O")])), True),
    ("another attribute", lambda k: usage(k.get(0), subject_name=x509.Name([
        x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@example.com"),
        x509.NameAttribute(NameOID.COMMON_NAME, AGENT_ID)])), True),
    ("a multi-valued RDN", lambda k: usage(k.get(0), subject_name=x509.Name([x509.RelativeDistinguishedName([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "O"),
        x509.NameAttribute(NameOID.COMMON_NAME, AGENT_ID)])])), False),
    ("an EC key", lambda k: usage(ec.generate_private_key(ec.SECP256R1())), False),
    ("a SAN", lambda k: builder(k.get(0)).add_extension(
        x509.SubjectAlternativeName([x509.DNSName("device.example")]), critical=False).sign(k.get(0), hashes.SHA256()),
     False),
    ("signed by another key under its own name", lambda k: builder(k.get(0)).add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True).sign(k.get(1), hashes.SHA256()), False),
]


@pytest.mark.parametrize(("name", "make", "read_plainly"), CASES, ids=[c[0] for c in CASES])
def test_both_readers_agree(keys, name, make, read_plainly):
    data = pem(make(keys))
    ours, theirs = certinfo.read(data, NOW), by_library(data)
    assert_same(ours, theirs)
    assert (plain(data) is not None) == read_plainly, name


def test_the_module_own_certificate_is_read_without_the_library(keys):
    info = plain(pem(certs.build_self_signed(keys.get(0), AGENT_ID, SUBJECT, 365, NOW)))
    assert info.agent_id == AGENT_ID and info.self_signed and info.client_auth_problems == []
    assert info.subject == dict(SUBJECT, CN=AGENT_ID)


def test_a_broken_self_signature_is_left_to_the_library(keys):
    der = bytearray(certs.build_self_signed(keys.get(0), AGENT_ID, SUBJECT, 365, NOW).public_bytes(
        serialization.Encoding.DER))
    der[-5] ^= 0x01  # in the signature
    data = der_to_pem(bytes(der))
    assert plain(data) is None
    assert not certinfo.read(data, NOW).self_signed


@pytest.mark.parametrize("bad", [b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", b"nothing",
                                 "é", b"-----BEGIN PRIVATE KEY-----\n"])
def test_what_neither_reads_is_refused_as_before(bad):
    with pytest.raises(CertificateError):
        certinfo.read(bad, NOW)


@pytest.mark.filterwarnings("ignore:Attribute's length")  # cryptography on a corrupted countryName
@pytest.mark.parametrize("case", [0, 2], ids=["self-signed", "issued"])
def test_corrupted_certificates_read_plainly_read_the_same(keys, case):
    """Thousands of one- and two-byte corruptions and truncations: whatever the standard library
    reads, cryptography reads the same; the rest it leaves to cryptography."""
    der = make_der(keys, case)
    rng = random.Random(21 + case)
    read = 0
    for _ in range(1500):
        mutant = bytearray(der)
        for _ in range(rng.choice((1, 1, 2))):
            position = rng.randrange(len(mutant))
            mutant[position] = rng.choice((mutant[position] ^ (1 << rng.randrange(8)), rng.randrange(256)))
        if rng.random() < 0.05:
            mutant = mutant[:rng.randrange(len(mutant))]
        data = der_to_pem(bytes(mutant))
        ours = plain(data)
        if ours is None:
            continue
        read += 1
        assert_same(ours, by_library(data))
    assert read > 100  # signature and key bytes leave most mutants readable


def make_der(keys, case):
    return CASES[case][1](keys).public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("text", ["2026-12-06T10:17:46Z", "1999-01-31T23:59:59Z", "2050-02-28T00:00:00Z"])
def test_parse_time_reads_what_iso_writes(text):
    moment = certinfo.parse_time(text)
    assert moment == datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert certinfo.iso(moment) == text


def test_parse_time_takes_offsets_and_naive_text_as_utc():
    assert certinfo.parse_time("2026-12-06T12:17:46+02:00") == certinfo.parse_time("2026-12-06T10:17:46Z")
    assert certinfo.parse_time("2026-12-06T10:17:46") == certinfo.parse_time("2026-12-06T10:17:46Z")


@pytest.mark.parametrize("text", ["2026-13-06T10:17:46Z", "yesterday", "", None])
def test_parse_time_answers_none_for_what_is_not_a_time(text):
    assert certinfo.parse_time(text) is None
