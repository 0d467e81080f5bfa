# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a run needs to know about a certificate (``CertInfo``), read without ``cryptography``
when the certificate is a plain one, and the subject and time helpers every run uses.

Standard library only, on purpose: an unchanged re-run reads its certificate here and never
loads ``cryptography`` (its import and its OpenSSL set-up are ~50 ms of a device's CPU, a third
of what the module costs over a ping). The reader is strict and narrow: one certificate, X.509
v3, RSA key, PKCS#1 v1.5 signature with SHA-2, single-valued names of ordinary string types,
only the extensions this bundle and the cloud issue (basic constraints, key usage, extended key
usage, key identifiers), canonical DER. Anything else is read by ``certs.py`` through
``cryptography``, which decides as before; ``tests/unit/test_certinfo.py`` holds the two
readers to the same answers, also on corrupted certificates.
"""
from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import importlib.util
import re

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import der
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import CertificateError

HAS_CRYPTOGRAPHY = importlib.util.find_spec("cryptography") is not None
CRYPTOGRAPHY_IMPORT_ERROR = None if HAS_CRYPTOGRAPHY else ImportError("No module named 'cryptography'")

UTC = datetime.timezone.utc
# Order of the subject attributes; CN is always last.
SUBJECT_KEYS = ("C", "ST", "L", "O", "OU")
DEFAULT_SUBJECT = {"C": "BR", "ST": "SP", "L": "SaoPaulo", "O": "AutonomyLogic", "OU": "Development"}

PEM_CERT_RE = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n(.*?)-----END CERTIFICATE-----", re.DOTALL)
_BASE64 = re.compile(rb"[A-Za-z0-9+/=\r\n]*")

# DER of the object identifiers read here (content bytes).
_NAME_OIDS = {b"\x55\x04\x06": "C", b"\x55\x04\x08": "ST", b"\x55\x04\x07": "L", b"\x55\x04\x0a": "O",
              b"\x55\x04\x0b": "OU", b"\x55\x04\x03": "CN"}
_RSA_ENCRYPTION = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"
# sha{256,384,512}WithRSAEncryption -> the DigestInfo prefix of PKCS#1 v1.5 (RFC 8017, 9.2).
_SIGNATURES = {
    b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b": (hashlib.sha256, bytes.fromhex("3031300d060960864801650304020105000420")),
    b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0c": (hashlib.sha384, bytes.fromhex("3041300d060960864801650304020205000430")),
    b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0d": (hashlib.sha512, bytes.fromhex("3051300d060960864801650304020305000440")),
}
_BASIC_CONSTRAINTS, _KEY_USAGE, _EXT_KEY_USAGE = b"\x55\x1d\x13", b"\x55\x1d\x0f", b"\x55\x1d\x25"
_SUBJECT_KEY_ID, _AUTHORITY_KEY_ID = b"\x55\x1d\x0e", b"\x55\x1d\x23"
_CLIENT_AUTH, _ANY_EKU = b"\x2b\x06\x01\x05\x05\x07\x03\x02", b"\x55\x1d\x25\x00"
_UTF8_STRING = 0x0C
# The string types read here, and the characters the others allow (X.680 41.4; IA5 is ASCII).
_STRING_TAGS = {_UTF8_STRING: None, 0x13: re.compile(rb"[A-Za-z0-9 '()+,\-./:=?]*"), 0x16: re.compile(rb"[\x00-\x7f]*")}
_NULL, _BOOLEAN, _BIT_STRING, _EXPLICIT_3 = 0x05, 0x01, 0x03, 0xA3


def utcnow():
    return datetime.datetime.now(UTC)


def iso(dt):
    """Format an aware datetime as ISO 8601 UTC with a Z suffix (second precision)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value):
    """An aware datetime from an ISO 8601 text ("...Z" or an offset; naive is UTC), or None.
    Not strptime: its first call compiles the locale's patterns (~7 ms of a device's CPU, and of
    every controller worker)."""
    try:
        moment = datetime.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def normalize_subject(subject):
    """Complete ``subject`` with the defaults and check the values (C has two letters)."""
    result = {}
    subject = subject or {}
    unknown = sorted(set(subject) - set(SUBJECT_KEYS))
    if unknown:
        raise CertificateError("unknown subject attribute(s): %s" % ", ".join(unknown))
    for key in SUBJECT_KEYS:
        value = subject.get(key)
        if value is None:
            value = DEFAULT_SUBJECT[key]
        if not isinstance(value, str) or not value or len(value) > 64:
            raise CertificateError("subject %s must be a non-empty string of at most 64 characters" % key)
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise CertificateError("subject %s contains control characters" % key)
        result[key] = value
    if len(result["C"]) != 2:
        raise CertificateError("subject C must be a two-letter country code")
    return result


class CertInfo:
    """What the module needs to know about a certificate (no key material). ``public``: the RSA
    key's (n, e), or None for another key type."""

    def __init__(self, *, agent_id, subject, fingerprint_sha256, serial, not_before, not_after, key_size,
                 public, self_signed, client_auth_problems, now):
        self.agent_id = agent_id
        self.subject = subject
        self.fingerprint_sha256 = fingerprint_sha256
        self.serial = serial
        self.not_before = not_before
        self.not_after = not_after
        self.days_left = int((not_after - now).total_seconds() // 86400)
        self.key_size = key_size
        self.public = public
        self.is_rsa = public is not None
        self.self_signed = self_signed
        self.client_auth_problems = client_auth_problems  # why TLS front ends would refuse it ([]: none)

    def facts(self):
        return {
            "agent_id": self.agent_id,
            "fingerprint_sha256": self.fingerprint_sha256,
            "serial": self.serial,
            "not_before": iso(self.not_before),
            "not_after": iso(self.not_after),
            "days_left": self.days_left,
            "key_size": self.key_size,
        }


def validity_problems(not_before, not_after, now):
    problems = []
    if now < not_before:
        problems.append("not valid before %s" % iso(not_before))
    if now >= not_after:
        problems.append("expired on %s" % iso(not_after))
    return problems


def usage_problems(eku_ok, digital_signature, is_ca):
    """Why TLS front ends would refuse a client certificate's usage; ``digital_signature`` is
    None without a key usage extension."""
    problems = []
    if not eku_ok:
        problems.append("extendedKeyUsage lacks clientAuth")
    if digital_signature is False:
        problems.append("keyUsage lacks digitalSignature")
    if is_ca:
        problems.append("it is a CA certificate")
    return problems


def certificate_bytes(data):
    """``data`` (bytes or str) as the bytes of PEM text that carries no private key. Raises
    CertificateError."""
    if isinstance(data, str):
        try:
            data = data.encode("ascii")
        except UnicodeEncodeError:
            raise CertificateError("the certificate is not ASCII PEM") from None
    if b"PRIVATE KEY" in data:
        raise CertificateError("refusing certificate data that contains a private key")
    return data


def read(data, now=None):
    """The CertInfo of the first PEM certificate in ``data`` (bytes or str). Refuses input that
    carries a private key. Raises CertificateError."""
    now = now or utcnow()
    data = certificate_bytes(data)
    try:
        return _read_plain(data, now)
    except ValueError:  # not a plain certificate: cryptography decides
        pass
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certs

    return certs.cert_info(certs.load_certificate(data), now)


# --------------------------------------------------------------------------- the plain reader
# An element is (tag, content start, content end, header start).


def _read_plain(data, now):
    cert = _pem_der(data)
    tbs, sig_alg, signature = _children(cert, _whole(cert), count=3)
    version, serial_tlv, inner_alg, issuer, validity, subject, spki, extensions = _children(cert, tbs, count=8)
    if version[0] != der.EXPLICIT_0 or _integer(cert, _inner(cert, version, der.INTEGER)) != 2 \
            or extensions[0] != _EXPLICIT_3:
        raise ValueError("not an X.509 v3 certificate with extensions")
    if _raw(cert, inner_alg) != _raw(cert, sig_alg):
        raise ValueError("two signature algorithms")
    serial = _integer(cert, serial_tlv)
    if serial <= 0:
        raise ValueError("serial number not positive")
    hash_fn, digest_info = _signature_algorithm(cert, sig_alg)
    n, e = _rsa_public(cert, spki)
    not_before, not_after = (der.read_time(cert, t[:3]) for t in _children(cert, validity, count=2))
    eku_ok, digital_signature, is_ca = _extensions(cert, _inner(cert, extensions, der.SEQUENCE))
    subject_rdns, issuer_rdns = _name(cert, subject), _name(cert, issuer)
    same_name = _raw(cert, issuer) == _raw(cert, subject)
    if issuer_rdns == subject_rdns and not same_name:
        raise ValueError("equal names encoded differently")  # cryptography compares the values
    signature_bits = _bits(cert, signature)
    self_signed = same_name and _signed_by(_raw(cert, tbs), signature_bits, (n, e), hash_fn, digest_info)
    cns = [value for key, value in subject_rdns if key == "CN"]
    return CertInfo(
        agent_id=cns[0] if len(cns) == 1 else None,
        subject={key: value for key, value in reversed(subject_rdns) if key in _NAME_OIDS.values()},
        fingerprint_sha256=hashlib.sha256(cert).hexdigest(), serial="%X" % serial,
        not_before=not_before, not_after=not_after, key_size=n.bit_length(), public=(n, e),
        self_signed=self_signed, now=now,
        client_auth_problems=validity_problems(not_before, not_after, now) + usage_problems(
            eku_ok, digital_signature, is_ca))


def _pem_der(data):
    match = PEM_CERT_RE.search(data)
    if not match or not _BASE64.fullmatch(match.group(1)):
        raise ValueError("no plain PEM certificate")
    try:
        return base64.b64decode(b"".join(match.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("bad base64") from None


def _tlv(data, pos, end):
    """der.read_tlv, refusing what DER forbids (a long length form where the short one fits, or
    with a leading zero) and an element running past ``end``."""
    tag, start, stop = der.read_tlv(data, pos)
    if stop > end or (start - pos > 2 and (stop - start < 0x80 or data[pos + 2] == 0)):
        raise ValueError("not canonical DER")
    return tag, start, stop, pos


def _whole(data):
    element = _tlv(data, 0, len(data))
    if element[2] != len(data):
        raise ValueError("trailing bytes")
    return element


def _children(data, element, count=None, tag=der.SEQUENCE):
    if element[0] != tag:
        raise ValueError("unexpected tag")
    found, pos = [], element[1]
    while pos < element[2]:
        child = _tlv(data, pos, element[2])
        found.append(child)
        pos = child[2]
    if count is not None and len(found) != count:
        raise ValueError("unexpected element count")
    return found


def _raw(data, element):
    return data[element[3]:element[2]]


def _inner(data, element, tag):
    """The single element inside ``element`` (an explicit tag or a wrapper), which must have
    ``tag``."""
    (child,) = _children(data, element, count=1, tag=element[0])
    if child[0] != tag:
        raise ValueError("unexpected tag")
    return child


def _oid(data, element):
    """The content of an OBJECT IDENTIFIER, checked as X.690 8.19 encodes one."""
    raw = data[element[1]:element[2]]
    if element[0] != der.OBJECT_IDENTIFIER or not raw or raw[-1] & 0x80 or raw[0] == 0x80 \
            or any(raw[i - 1] & 0x80 == 0 and raw[i] == 0x80 for i in range(1, len(raw))):
        raise ValueError("not an OBJECT IDENTIFIER")
    return raw


def _integer(data, element):
    raw = data[element[1]:element[2]]
    if element[0] != der.INTEGER or not raw or (len(raw) > 1 and (raw[0], raw[1] >> 7) in ((0, 0), (0xFF, 1))):
        raise ValueError("not a canonical INTEGER")
    return int.from_bytes(raw, "big", signed=True)


def _null(element):
    if element[0] != _NULL or element[1] != element[2]:
        raise ValueError("NULL expected")


def _signature_algorithm(data, element):
    oid, params = _children(data, element, count=2)
    _null(params)
    found = _SIGNATURES.get(_oid(data, oid))
    if found is None:
        raise ValueError("unsupported signature algorithm")
    return found


def _name(data, element):
    """[(key, value)] of a Name of single-valued RDNs; ``key`` is C..CN or the OID's bytes."""
    rdns = []
    for rdn in _children(data, element):
        (atv,) = _children(data, rdn, count=1, tag=der.SET)
        oid, value = _children(data, atv, count=2)
        oid_bytes = _oid(data, oid)
        if value[0] not in _STRING_TAGS:
            raise ValueError("unsupported attribute")
        raw = data[value[1]:value[2]]
        if value[0] != _UTF8_STRING and not _STRING_TAGS[value[0]].fullmatch(raw):
            raise ValueError("a character its string type does not allow")
        rdns.append((_NAME_OIDS.get(oid_bytes, oid_bytes), der.decode_string(value[0], raw)))
    return rdns


def _bits(data, element):
    """The bytes of a BIT STRING without unused bits."""
    if element[0] != _BIT_STRING or element[2] - element[1] < 2 or data[element[1]] != 0:
        raise ValueError("unsupported BIT STRING")
    return data[element[1] + 1:element[2]]


def _rsa_public(data, element):
    algorithm, key_bits = _children(data, element, count=2)
    oid, params = _children(data, algorithm, count=2)
    _null(params)
    if _oid(data, oid) != _RSA_ENCRYPTION:
        raise ValueError("not an RSA key")
    key = _bits(data, key_bits)
    n_tlv, e_tlv = _children(key, _whole(key), count=2)
    n, e = _integer(key, n_tlv), _integer(key, e_tlv)
    if n.bit_length() < 1024 or not n & e & 1 or not 1 < e < n:
        raise ValueError("an RSA key this reader leaves to cryptography")
    return n, e


def _extensions(data, element):
    """(clientAuth allowed, digitalSignature or None, is a CA) of the extensions."""
    seen = {}
    for ext in _children(data, element):
        parts = _children(data, ext)
        if len(parts) == 3:
            if parts[1][0] != _BOOLEAN or data[parts[1][1]:parts[1][2]] != b"\xff":
                raise ValueError("non-canonical critical flag")
            del parts[1]
        if len(parts) != 2 or parts[1][0] != der.OCTET_STRING:
            raise ValueError("bad extension")
        oid = _oid(data, parts[0])
        if oid in seen or oid not in _READERS:
            raise ValueError("an extension this reader leaves to cryptography")
        seen[oid] = _READERS[oid](data[parts[1][1]:parts[1][2]])
    return seen.get(_EXT_KEY_USAGE, False), seen.get(_KEY_USAGE), seen.get(_BASIC_CONSTRAINTS, False)


def _eku(value):
    oids = _children(value, _whole(value))
    if not oids:
        raise ValueError("bad extendedKeyUsage")
    purposes = [_oid(value, oid) for oid in oids]
    return _CLIENT_AUTH in purposes or _ANY_EKU in purposes


def _key_usage(value):
    tag, start, end, _pos = _whole(value)
    unused = value[start] if end > start else 8
    if tag != _BIT_STRING or not 2 <= end - start <= 3 or unused > 7 or value[end - 1] & ((1 << unused) - 1):
        raise ValueError("bad keyUsage")
    return bool(value[start + 1] & 0x80)


def _basic_constraints(value):
    parts = _children(value, _whole(value))
    is_ca = bool(parts) and parts[0][0] == _BOOLEAN
    if is_ca:
        if value[parts[0][1]:parts[0][2]] != b"\xff":
            raise ValueError("non-canonical cA flag")
        parts = parts[1:]
    if len(parts) > 1 or (parts and (not is_ca or _integer(value, parts[0]) < 0)):
        raise ValueError("a basicConstraints this reader leaves to cryptography")
    return is_ca


def _key_identifier(value):
    if _whole(value)[0] != der.OCTET_STRING:
        raise ValueError("bad subjectKeyIdentifier")


def _authority_key_identifier(value):
    (key_id,) = _children(value, _whole(value), count=1)
    if key_id[0] != 0x80:
        raise ValueError("an authorityKeyIdentifier this reader leaves to cryptography")


_READERS = {_EXT_KEY_USAGE: _eku, _KEY_USAGE: _key_usage, _BASIC_CONSTRAINTS: _basic_constraints,
            _SUBJECT_KEY_ID: _key_identifier, _AUTHORITY_KEY_ID: _authority_key_identifier}


def _signed_by(tbs, signature, public, hash_fn, digest_info):
    """Whether ``signature`` is the PKCS#1 v1.5 signature of ``tbs`` by ``public``, compared as
    the whole encoded block (RFC 8017, 8.2.2). One that does not verify is left to cryptography
    (ValueError): only a valid signature is answered here."""
    n, e = public
    size = (n.bit_length() + 7) // 8
    value = int.from_bytes(signature, "big")
    if len(signature) != size or value >= n:
        raise ValueError("signature out of range")
    expected = digest_info + hash_fn(tbs).digest()
    encoded = b"\x00\x01" + b"\xff" * (size - 3 - len(expected)) + b"\x00" + expected
    if pow(value, e, n).to_bytes(size, "big") != encoded:
        raise ValueError("not a valid self-signature")
    return True
