"""Helpers for the fleet_mtls module_utils tests: real RSA keys, certificates in every state
the engine must handle, identity directories, snapshots."""

from __future__ import annotations

import datetime
import os
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certs
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.api import ProvisioningClient

UTC = datetime.timezone.utc  # noqa: UP017 - mirrors the device-side code
AGENT_ID = "0A1B2C3D"


class KeyPool:
    """Real RSA keys generated once per session (RSA-4096 keygen costs ~0.4 s)."""

    def __init__(self):
        self._keys: dict[tuple[int, int], rsa.RSAPrivateKey] = {}

    def get(self, index: int = 0, size: int = 2048) -> rsa.RSAPrivateKey:
        if (size, index) not in self._keys:
            self._keys[(size, index)] = rsa.generate_private_key(65537, size)
        return self._keys[(size, index)]


def build_cert(
    key,
    agent_id: str = AGENT_ID,
    *,
    days: float = 365,
    not_before: datetime.datetime | None = None,
    subject: dict | None = None,
    client_auth: bool = True,
    signer=None,
    issuer_name: x509.Name | None = None,
    ca: bool = False,
):
    """A certificate like the engine makes, with knobs for the broken variants."""
    now = datetime.datetime.now(UTC)
    name = certs.build_name(certs.normalize_subject(subject), agent_id)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if client_auth:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    return builder.sign(signer or key, hashes.SHA256())


def write_file(path: pathlib.Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


def write_identity(directory: pathlib.Path, key=None, cert=None, *, cert_bytes=None,
                   key_bytes=None) -> pathlib.Path:
    """Write client.key (0600) / client.crt (0644) into ``directory`` (0700)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    if key is not None or key_bytes is not None:
        write_file(directory / "client.key", key_bytes or certs.private_key_pem(key), 0o600)
    if cert is not None or cert_bytes is not None:
        write_file(directory / "client.crt", cert_bytes or certs.certificate_pem(cert), 0o644)
    return directory


def client_for(service, **kw) -> ProvisioningClient:
    kw.setdefault("ca_path", str(service.ca_path))
    kw.setdefault("sleep", lambda _s: None)
    kw.setdefault("timeout", 10)
    return ProvisioningClient(service.api_url, **kw)


class NoNetwork:
    """A client factory proving that a run made no network call at all."""

    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        raise AssertionError("the engine tried to use the network")


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def snapshot(directory: pathlib.Path) -> dict[str, tuple[bytes, int, int]]:
    """{name: (bytes, mode, mtime_ns)} of every entry, to prove nothing was touched."""
    result = {}
    if not directory.exists():
        return result
    for entry in sorted(directory.iterdir()):
        st = entry.lstat()
        result[entry.name] = (entry.read_bytes(), st.st_mode, st.st_mtime_ns)
    st = directory.lstat()
    result["."] = (b"", st.st_mode, st.st_mtime_ns)
    return result
