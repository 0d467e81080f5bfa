"""plugins/module_utils/der.py: the standard-library DER / X.509 reader shared by the agent check
and certs.

The DER comes from real certificates and keys made here with ``cryptography``; hand-made bytes
are used only for the malformed encodings no library would produce.
"""

from __future__ import annotations

import datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import der
from tests.fixtures.identities import AGENT_ID, build_cert

OID_RSA_ENCRYPTION = bytes.fromhex("2a864886f70d010101")
OID_EC_PUBLIC_KEY = bytes.fromhex("2a8648ce3d0201")
OID_COMMON_NAME = bytes.fromhex("550403")
OID_CLIENT_AUTH = bytes.fromhex("2b06010505070302")
OID_EXT_KEY_USAGE = bytes.fromhex("551d25")
CONSTRUCTED = 0x20


def _cert_der(key, *args, **kw) -> bytes:
    return build_cert(key, *args, **kw).public_bytes(serialization.Encoding.DER)


def _key_der(key, fmt: str) -> bytes:
    """The private key in DER, ``fmt`` ``PKCS8`` or ``TraditionalOpenSSL`` (PKCS#1 for RSA)."""
    return key.private_bytes(
        serialization.Encoding.DER, getattr(serialization.PrivateFormat, fmt), serialization.NoEncryption()
    )


def _walk(data: bytes, start: int, end: int, found: list) -> None:
    """Every element, depth first, as (tag, content bytes); recurse into constructed ones."""
    for tag, cstart, cend in der.read_children(data, start, end):
        found.append((tag, data[cstart:cend]))
        if tag & CONSTRUCTED:
            _walk(data, cstart, cend, found)


# --------------------------------------------------------------------------- certificates


def test_certificate_layout_matches_cryptography(keys):
    key = keys.get(0)
    cert = build_cert(key)
    data = cert.public_bytes(serialization.Encoding.DER)
    tag, start, end = der.read_tlv(data, 0)
    assert (tag, end) == (der.SEQUENCE, len(data))
    parts = der.read_children(data, start, end)
    assert [p[0] for p in parts] == [der.SEQUENCE, der.SEQUENCE, 0x03]  # tbs, algorithm, BIT STRING
    _tbs_tag, tbs_start, tbs_end = parts[0]
    assert data[start:tbs_end] == cert.tbs_certificate_bytes  # the TBS element, header included
    signature = data[parts[2][1]:parts[2][2]]
    assert signature[0] == 0 and signature[1:] == cert.signature  # unused-bits byte, then the value
    tbs = der.read_children(data, tbs_start, tbs_end)
    assert tbs[0][0] == 0xA0  # explicit [0] version
    version, _ = der.read_integer(data, tbs[0][1])
    assert version == 2  # v3
    serial, serial_end = der.read_integer(data, tbs[0][2])  # the element after the version
    assert serial == cert.serial_number and serial_end == tbs[1][2]


def test_walk_of_a_certificate_finds_its_names_and_consumes_every_byte(keys):
    data = _cert_der(keys.get(0), "Grüße-01")
    found: list = []
    _walk(data, 0, len(data), found)
    assert len(der.read_children(data, 0, len(data))) == 1  # one element, ending on the last byte
    oids = [content for tag, content in found if tag == der.OBJECT_IDENTIFIER]
    assert OID_COMMON_NAME in oids and OID_RSA_ENCRYPTION in oids
    # extendedKeyUsage: its value is DER inside an OCTET STRING (after an optional critical flag)
    index = next(i for i, item in enumerate(found) if item == (der.OBJECT_IDENTIFIER, OID_EXT_KEY_USAGE))
    value = next(content for tag, content in found[index + 1:] if tag == der.OCTET_STRING)
    start, end = der.read_expected(value, 0, der.SEQUENCE)
    assert end == len(value)
    assert [value[s:e] for _t, s, e in der.read_children(value, start, end)] == [OID_CLIENT_AUTH]
    # the CN value follows its OID inside the AttributeTypeAndValue
    index = next(i for i, item in enumerate(found) if item == (der.OBJECT_IDENTIFIER, OID_COMMON_NAME))
    assert found[index + 1] == (0x0C, "Grüße-01".encode())  # UTF8String


def test_every_truncation_of_a_certificate_is_refused(keys):
    data = _cert_der(keys.get(0))
    for cut in range(len(data)):
        with pytest.raises(ValueError):
            der.read_tlv(data[:cut], 0)


def test_children_refuse_a_truncated_inner_element(keys):
    data = _cert_der(keys.get(0))
    _tag, start, end = der.read_tlv(data, 0)
    tbs_tag, tbs_start, tbs_end = der.read_children(data, start, end)[0]
    # the TBS content cut short by one byte: its last element now runs past the end given
    with pytest.raises(ValueError):
        der.read_children(data, tbs_start, tbs_end - 1)


# --------------------------------------------------------------------------- private keys


@pytest.mark.parametrize("size", [2048, 4096])
def test_pkcs1_rsa_key_integers_match_the_private_numbers(keys, size):
    key = keys.get(0, size)
    data = _key_der(key, "TraditionalOpenSSL")
    start, end = der.read_expected(data, 0, der.SEQUENCE)
    assert end == len(data)
    values, pos = [], start
    for _ in range(9):
        value, pos = der.read_integer(data, pos)
        values.append(value)
    assert pos == end
    numbers = key.private_numbers()
    assert values == [
        0, numbers.public_numbers.n, numbers.public_numbers.e, numbers.d, numbers.p, numbers.q,
        numbers.dmp1, numbers.dmq1, numbers.iqmp,
    ]  # fmt: skip
    assert values[1].bit_length() == size


def test_pkcs8_rsa_key_wraps_the_pkcs1_key(keys):
    key = keys.get(1)
    pkcs8 = _key_der(key, "PKCS8")
    pkcs1 = _key_der(key, "TraditionalOpenSSL")
    start, _end = der.read_expected(pkcs8, 0, der.SEQUENCE)
    version, pos = der.read_integer(pkcs8, start)
    alg_start, alg_end = der.read_expected(pkcs8, pos, der.SEQUENCE)
    oid_start, oid_end = der.read_expected(pkcs8, alg_start, der.OBJECT_IDENTIFIER)
    key_start, key_end = der.read_expected(pkcs8, alg_end, der.OCTET_STRING)
    assert version == 0
    assert pkcs8[oid_start:oid_end] == OID_RSA_ENCRYPTION
    assert pkcs8[key_start:key_end] == pkcs1


def test_pkcs8_ec_key_names_its_algorithm():
    key = ec.generate_private_key(ec.SECP256R1())
    data = _key_der(key, "PKCS8")
    start, end = der.read_expected(data, 0, der.SEQUENCE)
    kinds = der.read_children(data, start, end)
    assert [k[0] for k in kinds] == [der.INTEGER, der.SEQUENCE, der.OCTET_STRING]
    algorithm = der.read_children(data, kinds[1][1], kinds[1][2])
    assert data[algorithm[0][1]:algorithm[0][2]] == OID_EC_PUBLIC_KEY


def test_wrong_tag_is_refused(keys):
    data = _cert_der(keys.get(0))
    with pytest.raises(ValueError, match="unexpected DER tag"):
        der.read_expected(data, 0, der.OCTET_STRING)
    with pytest.raises(ValueError, match="unexpected DER tag"):
        der.read_integer(data, 0)  # a SEQUENCE, not an INTEGER


# --------------------------------------------------------------------------- malformed encodings


@pytest.mark.parametrize(
    "data, pos, message",
    [
        (b"", 0, "truncated"),
        (b"\x30", 0, "truncated"),
        (b"\x30\x03\x02\x01", 0, "truncated"),  # content shorter than its length
        (b"\x30\x80\x02\x01\x00\x00\x00", 0, "bad DER length"),  # indefinite length (BER only)
        (b"\x04\x85\x00\x00\x00\x00\x01\x00", 0, "bad DER length"),  # five length bytes
        (b"\x04\x82\x01", 0, "bad DER length"),  # length bytes cut off
        (b"\x1f\x81\x01\x00", 0, "unsupported DER tag"),  # high-tag-number form
        (b"\x02\x01\x00", 3, "truncated"),  # past the end
        (b"\x02\x01\x00", -1, "truncated"),
    ],
    ids=["empty", "tag-only", "short-content", "indefinite", "long-length", "cut-length", "high-tag", "past-end",
         "negative-pos"],
)
def test_malformed_encodings_are_refused(data, pos, message):
    with pytest.raises(ValueError, match=message):
        der.read_tlv(data, pos)


@pytest.mark.parametrize(
    "data, value",
    [(b"\x02\x01\x00", 0), (b"\x02\x01\x7f", 127), (b"\x02\x02\x00\x80", 128), (b"\x02\x01\xff", -1),
     (b"\x02\x03\x01\x00\x01", 65537)],
)
def test_integers_are_twos_complement(data, value):
    assert der.read_integer(data, 0) == (value, len(data))


def test_empty_integer_is_refused():
    with pytest.raises(ValueError, match="empty INTEGER"):
        der.read_integer(b"\x02\x00", 0)


def test_errors_never_carry_the_bytes_read(keys):
    """A damaged key must not leak into an exception message (they reach module results)."""
    key = keys.get(0)
    data = _key_der(key, "TraditionalOpenSSL")
    damaged = data[:-1]
    with pytest.raises(ValueError) as caught:
        der.read_expected(damaged, 0, der.SEQUENCE)
    assert str(caught.value) == "truncated DER"


# --------------------------------------------------------------------------- X.509 reader


def test_certificate_reader_agrees_with_cryptography(keys):
    cert = build_cert(keys.get(0))
    for data in (cert.public_bytes(serialization.Encoding.PEM).decode(), cert.public_bytes(serialization.Encoding.DER)):
        parsed = der.parse_certificate(data)
        assert parsed["cn"] == AGENT_ID
        assert parsed["not_after"] == cert.not_valid_after_utc
        assert parsed["not_before"] == cert.not_valid_before_utc
        assert parsed["fingerprint_sha256"] == cert.fingerprint(hashes.SHA256()).hex()


def test_certificate_reader_handles_generalized_time_and_utf8(keys):
    start = datetime.datetime(2049, 6, 1, tzinfo=datetime.UTC)
    # notAfter beyond 2049 is a GeneralizedTime; the CN is UTF8String
    cert = build_cert(keys.get(0), "Grüße-01", not_before=start, days=9000)
    parsed = der.parse_certificate(cert.public_bytes(serialization.Encoding.PEM).decode())
    assert parsed["cn"] == "Grüße-01"
    assert parsed["not_before"] == start
    assert parsed["not_after"] == cert.not_valid_after_utc


def test_certificate_reader_takes_the_first_of_a_chain(keys):
    first, second = build_cert(keys.get(0), "AAAA0001"), build_cert(keys.get(1), "BBBB0002")
    text = (first.public_bytes(serialization.Encoding.PEM) + second.public_bytes(serialization.Encoding.PEM)).decode()
    assert der.parse_certificate("junk before\n" + text)["cn"] == "AAAA0001"


@pytest.mark.parametrize("text", [
    "", "hello", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    "-----BEGIN CERTIFICATE-----\nMII*\n-----END CERTIFICATE-----\n", b"\x30\x03\x02\x01\x01",
])
def test_certificate_reader_rejects_garbage(text):
    with pytest.raises(ValueError):
        der.parse_certificate(text)


def test_certificate_reader_rejects_every_truncation(keys):
    data = _cert_der(keys.get(0))
    for cut in range(0, len(data), 7):
        with pytest.raises(ValueError):
            der.parse_certificate(data[:cut])
