# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certificates and CSRs for the device identity (python ``cryptography`` 3.3.2 .. 48); its
private key is ``keys``.

Profile of a self-signed identity: RSA ``key_size``, SHA-256, random 159-bit serial,
notBefore = now - 5 min, notAfter = now + ``valid_days``, subject C/ST/L/O/OU + CN=<agent ID>,
BasicConstraints CA:FALSE (critical), keyUsage digitalSignature + keyEncipherment (critical),
extendedKeyUsage clientAuth, SubjectKeyIdentifier. Certificates are written and uploaded in
canonical PEM: one certificate, base64 in 64-character lines, LF endings, trailing newline.

Nothing here returns or formats private key bytes, and certificate data that carries a private
key is refused.
"""
from __future__ import annotations

import datetime

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.backends import default_backend
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised on devices without the library
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = exc

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import keys
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.certinfo import (
    PEM_CERT_RE,
    SUBJECT_KEYS,
    UTC,
    CertInfo,
    certificate_bytes,
    usage_problems,
    utcnow,
    validity_problems,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import CertificateError

BACKDATE = datetime.timedelta(minutes=5)


def _oids():
    return {
        "C": NameOID.COUNTRY_NAME,
        "ST": NameOID.STATE_OR_PROVINCE_NAME,
        "L": NameOID.LOCALITY_NAME,
        "O": NameOID.ORGANIZATION_NAME,
        "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
        "CN": NameOID.COMMON_NAME,
    }


# --------------------------------------------------------------------------------------------
# Names and extensions
# --------------------------------------------------------------------------------------------
def build_name(subject, agent_id):
    oids = _oids()
    attrs = [x509.NameAttribute(oids[k], subject[k]) for k in SUBJECT_KEYS]
    attrs.append(x509.NameAttribute(oids["CN"], agent_id))
    return x509.Name(attrs)


def name_to_dict(name):
    """Subject as {C, ST, L, O, OU, CN} (first value of each; missing ones absent)."""
    result = {}
    for key, oid in _oids().items():
        values = name.get_attributes_for_oid(oid)
        if values:
            result[key] = values[0].value
    return result


def _key_usage():
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=True,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )


def _extensions(public_key):
    return [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_key_usage(), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        (x509.SubjectKeyIdentifier.from_public_key(public_key), False),
    ]


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------
def build_self_signed(key, agent_id, subject, valid_days, now=None):
    now = now or utcnow()
    name = build_name(subject, agent_id)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=valid_days))
    )
    for ext, critical in _extensions(key.public_key()):
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(key, hashes.SHA256(), default_backend())


def build_csr(key, agent_id, subject):
    builder = x509.CertificateSigningRequestBuilder().subject_name(build_name(subject, agent_id))
    for ext, critical in _extensions(key.public_key()):
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(key, hashes.SHA256(), default_backend())


def certificate_pem(cert):
    """Canonical PEM of one certificate (64-column base64, LF, trailing newline)."""
    return cert.public_bytes(serialization.Encoding.PEM)


def csr_pem(csr):
    return csr.public_bytes(serialization.Encoding.PEM)


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------
def load_certificate(data):
    """Parse the first PEM certificate in ``data`` (bytes or str).

    Refuses input that carries a private key. Raises CertificateError.
    """
    data = certificate_bytes(data)
    match = PEM_CERT_RE.search(data)
    if not match:
        raise CertificateError("no PEM certificate found")
    try:
        return x509.load_pem_x509_certificate(match.group(0) + b"\n", default_backend())
    except ValueError:
        raise CertificateError("the PEM certificate cannot be parsed") from None


def count_certificates(data):
    return len(PEM_CERT_RE.findall(data if isinstance(data, bytes) else data.encode("ascii", "replace")))


def canonical_certificate_pem(data):
    """Canonical form of the (single) certificate in ``data``; refuses several certificates."""
    if count_certificates(data) != 1:
        raise CertificateError("expected exactly one PEM certificate")
    return certificate_pem(load_certificate(data))


def not_before(cert):
    if hasattr(cert, "not_valid_before_utc"):
        return cert.not_valid_before_utc
    return cert.not_valid_before.replace(tzinfo=UTC)


def not_after(cert):
    if hasattr(cert, "not_valid_after_utc"):
        return cert.not_valid_after_utc
    return cert.not_valid_after.replace(tzinfo=UTC)


def common_name(cert):
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(values) != 1:
        raise CertificateError("the certificate subject has %d CN attributes, expected one" % len(values))
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def fingerprint_sha256(cert):
    """Lower-case hex SHA-256 of the DER certificate, no separators."""
    return cert.fingerprint(hashes.SHA256()).hex()


def serial_hex(cert):
    return "%X" % cert.serial_number


def _extension(cert, oid):
    try:
        return cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def client_auth_problems(cert, now=None):
    """Reasons why TLS front ends would refuse ``cert`` as a client certificate ([] if none)."""
    now = now or utcnow()
    problems = validity_problems(not_before(cert), not_after(cert), now)
    try:
        eku = _extension(cert, ExtensionOID.EXTENDED_KEY_USAGE)
        ku = _extension(cert, ExtensionOID.KEY_USAGE)
        bc = _extension(cert, ExtensionOID.BASIC_CONSTRAINTS)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        return problems + ["its extensions cannot be parsed"]
    eku_ok = eku is not None and (
        ExtendedKeyUsageOID.CLIENT_AUTH in eku or x509.ObjectIdentifier("2.5.29.37.0") in eku)
    return problems + usage_problems(eku_ok, ku.digital_signature if ku is not None else None,
                                     bc is not None and bc.ca)


def is_self_signed(cert):
    if cert.issuer != cert.subject:
        return False
    pub = cert.public_key()
    if not isinstance(pub, rsa.RSAPublicKey):
        return False
    try:
        pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                   cert.signature_hash_algorithm)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def public_key_size(cert):
    pub = cert.public_key()
    return getattr(pub, "key_size", None)


def cert_info(cert, now=None):
    """The CertInfo (certinfo.py) of a ``cryptography`` certificate: of one just made or issued,
    and of any certificate the standard-library reader leaves to this library."""
    now = now or utcnow()
    try:
        agent_id = common_name(cert)
    except CertificateError:
        agent_id = None
    return CertInfo(agent_id=agent_id, subject=name_to_dict(cert.subject), fingerprint_sha256=fingerprint_sha256(cert),
                    serial=serial_hex(cert), not_before=not_before(cert), not_after=not_after(cert),
                    key_size=public_key_size(cert), public=keys.certificate_public(cert),
                    self_signed=is_self_signed(cert), client_auth_problems=client_auth_problems(cert, now), now=now)


def get_agent_id(cert_path):
    """The agent ID of a device: the CN of its certificate (what the agent itself reads)."""
    try:
        with open(cert_path, "rb") as handle:
            data = handle.read(1024 * 1024)
    except OSError as exc:
        raise CertificateError("cannot read %s: %s" % (cert_path, exc.strerror)) from None
    return common_name(load_certificate(data))
