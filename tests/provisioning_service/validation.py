"""Checks applied to uploaded certificates and enrollment CSRs.

Every refusal raises :class:`Refusal` carrying the HTTP status and a clear message. Messages
never quote submitted bytes (only parsed, bounded values such as a CN, JSON-escaped later).
"""

from __future__ import annotations

import datetime
import hashlib
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.provisioning_service import ID_PATTERN

ID_RE = re.compile(rf"\A{ID_PATTERN}\Z")
MIN_RSA_BITS = 2048
_PEM_BLOCK = re.compile(r"\A-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\Z")
_CSR_BLOCK = re.compile(
    r"\A-----BEGIN (NEW )?CERTIFICATE REQUEST-----\r?\n[A-Za-z0-9+/=\r\n]+"
    r"-----END (NEW )?CERTIFICATE REQUEST-----\Z"
)


class Refusal(Exception):
    """A request the service refuses: ``status`` is the HTTP code, ``message`` the reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def contains_private_key(data: bytes | str) -> bool:
    """True when the data carries anything that looks like a PEM private-key block."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return b"PRIVATE KEY" in data


def check_id_format(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise Refusal(400, "missing field 'id'")
    if not ID_RE.match(value):
        raise Refusal(400, "malformed ID: expected 8 upper-case hexadecimal characters")
    return value


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def canonical_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _text(data: bytes | str, what: str) -> str:
    if isinstance(data, bytes):
        try:
            data = data.decode("ascii")
        except UnicodeDecodeError:
            raise Refusal(400, f"the {what} is not ASCII PEM text") from None
    return data


def _common_name(name: x509.Name, what: str) -> str:
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1 or not isinstance(cns[0].value, str):
        raise Refusal(400, f"the {what} subject must carry exactly one CN")
    return cns[0].value


def _check_rsa(public_key: object, what: str) -> None:
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise Refusal(400, f"the {what} key must be RSA (at least {MIN_RSA_BITS} bits)")
    if public_key.key_size < MIN_RSA_BITS:
        raise Refusal(
            400,
            f"the {what} key is RSA-{public_key.key_size}; at least {MIN_RSA_BITS} bits required",
        )


def _eku_allows_client_auth(extensions: x509.Extensions) -> bool:
    try:
        eku = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ExtendedKeyUsageOID.CLIENT_AUTH in eku


def cert_validity(cert: x509.Certificate) -> tuple[datetime.datetime, datetime.datetime]:
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def validate_certificate(data: bytes | str, agent_id: str, now: datetime.datetime) -> tuple[x509.Certificate, str]:
    """Check an uploaded certificate for ``agent_id``; return it and the text to store.

    The stored text is the upload itself (surrounding whitespace trimmed, one final LF), as
    real registries keep it: the gate compares it textually with what a client presents.
    """
    if contains_private_key(data):
        raise Refusal(400, "the upload contains a private key; only the certificate may be sent")
    text = _text(data, "certificate").strip()
    if not text:
        raise Refusal(400, "missing certificate")
    if text.count("-----BEGIN") != 1 or not _PEM_BLOCK.match(text):
        raise Refusal(400, "the body must be exactly one PEM certificate and nothing else")
    try:
        cert = x509.load_pem_x509_certificate(text.encode("ascii"))
    except ValueError:
        raise Refusal(400, "the certificate cannot be parsed") from None
    cn = _common_name(cert.subject, "certificate")
    if cn != agent_id:
        raise Refusal(400, f"certificate CN {cn[:64]!r} does not match id {agent_id!r}")
    _check_rsa(cert.public_key(), "certificate")
    if not _eku_allows_client_auth(cert.extensions):
        raise Refusal(400, "the certificate's extendedKeyUsage does not allow clientAuth")
    not_before, not_after = cert_validity(cert)
    if now < not_before:
        raise Refusal(400, "the certificate is not valid yet (notBefore is in the future)")
    if now > not_after:
        raise Refusal(400, "the certificate has expired")
    return cert, text + "\n"


def validate_csr(data: bytes | str, agent_id: str | None) -> tuple[x509.CertificateSigningRequest, str]:
    """Check an enrollment CSR; return it and the agent ID (its CN)."""
    if contains_private_key(data):
        raise Refusal(400, "the upload contains a private key; only the CSR may be sent")
    text = _text(data, "CSR").strip()
    if not text:
        raise Refusal(400, "missing field 'csr'")
    if text.count("-----BEGIN") != 1 or not _CSR_BLOCK.match(text):
        raise Refusal(400, "the csr field must be exactly one PEM certificate request")
    try:
        csr = x509.load_pem_x509_csr(text.encode("ascii"))
    except ValueError:
        raise Refusal(400, "the CSR cannot be parsed") from None
    if not csr.is_signature_valid:
        raise Refusal(400, "the CSR signature is invalid")
    cn = _common_name(csr.subject, "CSR")
    if agent_id is not None and cn != agent_id:
        raise Refusal(400, f"CSR CN {cn[:64]!r} does not match id {agent_id!r}")
    check_id_format(cn)
    _check_rsa(csr.public_key(), "CSR")
    if not _eku_allows_client_auth(csr.extensions):
        raise Refusal(400, "the CSR's extendedKeyUsage does not allow clientAuth")
    return csr, cn
