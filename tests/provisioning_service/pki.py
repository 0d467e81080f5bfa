"""The service's own PKI, created once in the state directory and reused.

Files (private keys are created 0600 from the first byte):

- ``ca.key`` / ``ca.crt``: the server-trust CA. Clients verify both listeners against ``ca.crt``.
- ``server.key`` and ``server-{valid,expired,wrong-host}.crt``: the listeners' certificates,
  all signed by the CA; ``--server-cert`` picks which one is served.
- ``enroll-ca.key`` / ``enroll-ca.crt``: the enrollment CA that signs CSRs
  (``POST /orchestrators/enroll``); what it issues becomes its ID's current certificate.

All keys are EC P-256 so that a first start is fast.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pathlib
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.provisioning_service import SERVER_CERT_KINDS

WRONG_HOST = "wrong.example"
ENROLLED_DAYS = 365
_ORG = "fleet-mtls reference service"


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def write_private(path: pathlib.Path, data: bytes) -> None:
    """Write secret bytes to a new 0600 file, then move it into place atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_public(path: pathlib.Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _ca_cert(key: ec.EllipticCurvePrivateKey, cn: str, now: datetime.datetime) -> x509.Certificate:
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )


class ServicePKI:
    """Loads (or creates on first start) every key and certificate the service needs."""

    def __init__(self, state_dir: pathlib.Path, enrolled_days: float = ENROLLED_DAYS) -> None:
        self.dir = state_dir
        self.enrolled_days = enrolled_days
        self.ca_path = state_dir / "ca.crt"
        self.ca_key_path = state_dir / "ca.key"
        self.server_key_path = state_dir / "server.key"
        self.enroll_ca_path = state_dir / "enroll-ca.crt"
        self.enroll_key_path = state_dir / "enroll-ca.key"
        now = utcnow()
        self.ca_key, self.ca_cert = self._load_or_create_ca(
            self.ca_key_path, self.ca_path, "fleet-mtls reference CA", now
        )
        self.enroll_key, self.enroll_cert = self._load_or_create_ca(
            self.enroll_key_path, self.enroll_ca_path, "fleet-mtls enrollment CA", now
        )
        self.server_key = self._load_or_create_key(self.server_key_path)
        for kind in SERVER_CERT_KINDS:
            self._ensure_server_cert(kind, now)

    # -- creation -------------------------------------------------------------------------
    @staticmethod
    def _load_or_create_key(path: pathlib.Path) -> ec.EllipticCurvePrivateKey:
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise RuntimeError(f"{path} is not an EC private key")
            return key
        key = ec.generate_private_key(ec.SECP256R1())
        write_private(path, _key_pem(key))
        return key

    def _load_or_create_ca(
        self, key_path: pathlib.Path, cert_path: pathlib.Path, cn: str, now: datetime.datetime
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        fresh_key = not key_path.exists()
        key = self._load_or_create_key(key_path)
        if cert_path.exists() and not fresh_key:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if cert.public_key().public_numbers() == key.public_key().public_numbers():
                return key, cert
        cert = _ca_cert(key, cn, now)
        write_public(cert_path, _cert_pem(cert))
        return key, cert

    def server_cert_path(self, kind: str) -> pathlib.Path:
        if kind not in SERVER_CERT_KINDS:
            raise ValueError(f"unknown server certificate kind {kind!r}")
        return self.dir / f"server-{kind}.crt"

    def _ensure_server_cert(self, kind: str, now: datetime.datetime) -> None:
        path = self.server_cert_path(kind)
        if path.exists():
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            same_key = cert.public_key().public_numbers() == self.server_key.public_key().public_numbers()
            same_ca = cert.issuer == self.ca_cert.subject
            fresh = kind == "expired" or cert.not_valid_after_utc > now + datetime.timedelta(days=2)
            if same_key and same_ca and fresh:
                return
        if kind == "wrong-host":
            cn = WRONG_HOST
            san = [x509.DNSName(WRONG_HOST)]
        else:
            cn = "localhost"
            san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        if kind == "expired":
            not_before = now - datetime.timedelta(days=30)
            not_after = now - datetime.timedelta(days=1)
        else:
            not_before = now - datetime.timedelta(hours=1)
            not_after = now + datetime.timedelta(days=397)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.ca_cert.subject)
            .public_key(self.server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                critical=False,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        write_public(path, _cert_pem(cert))

    # -- enrollment -----------------------------------------------------------------------
    def issue_enrolled(self, csr: x509.CertificateSigningRequest, agent_id: str) -> x509.Certificate:
        """Sign a clientAuth certificate for ``agent_id`` with the enrollment CA."""
        now = utcnow()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, agent_id)])
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.enroll_cert.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=self.enrolled_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.enroll_key.public_key()),
                critical=False,
            )
            .sign(self.enroll_key, hashes.SHA256())
        )
