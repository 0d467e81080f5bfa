"""Start and drive the reference provisioning service (``tests/provisioning_service``) from tests.

``ProvisioningService`` runs the real service as a subprocess (``python -m
tests.provisioning_service`` from the repository root), waits for its READY line and offers
helpers to inject faults, read the registry and talk to both listeners over verified TLS,
including the gate's two certificate checks (a WebSocket upgrade on ``/ws``, a Socket.IO
CONNECT) and the stock agent's own way of connecting (``run_stock_agent``).

Also here: small certificate helpers (keys, self-signed certificates, CSRs) shared by tests.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import pathlib
import re
import secrets
import selectors
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO = pathlib.Path(__file__).resolve().parent.parent
TOKEN_ENV = "PROVISIONING_SERVICE_TOKEN"
READY_RE = re.compile(r"^READY api=(?P<api>https://\S+) gate=(?P<gate>https://\S+) ca=(?P<ca>\S+)$")
UPSTREAM_SUBJECT = "/C=BR/ST=SP/L=SaoPaulo/O=AutonomyLogic/OU=Development/CN={id}"
SOCKETIO_REFUSAL = '44{"message":"Connection rejected by server"}'
STOCK_AGENT = REPO / "tests" / "fixtures" / "stock_agent.py"


class ServiceError(RuntimeError):
    """The service did not start, or a control request failed."""


class ProvisioningService:
    """A running reference service. Use as a context manager, or call start()/stop().

    Attributes once started: ``api_url``, ``gate_url`` (``https://127.0.0.1:PORT``),
    ``ca_path`` (the CA to verify both listeners with), ``token``, ``state_dir``, ``db_path``,
    ``log_path`` (the service's stderr), ``startup_seconds`` (spawn to READY).
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        gate_port: int = 0,
        reservation_ttl: float | None = None,
        faults: Sequence[str] = (),
        server_cert: str = "valid",
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        self.state_dir = pathlib.Path(state_dir).resolve()
        self.token = token or secrets.token_urlsafe(24)
        self.host = host
        self.port = port
        self.gate_port = gate_port
        self.reservation_ttl = reservation_ttl
        self.fault_specs = list(faults)
        self.server_cert = server_cert
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.ca_path = self.state_dir / "ca.crt"
        self.db_path = self.state_dir / "registry.sqlite3"
        self.log_path = self.state_dir / "service.log"
        self.api_url: str | None = None
        self.gate_url: str | None = None
        self.startup_seconds: float | None = None
        self.process: subprocess.Popen[bytes] | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "tests.provisioning_service",
            "--state-dir", str(self.state_dir),
            "--host", self.host,
            "--port", str(self.port),
            "--gate-port", str(self.gate_port),
            "--server-cert", self.server_cert,
        ]  # fmt: skip
        if self.reservation_ttl is not None:
            cmd += ["--reservation-ttl", str(self.reservation_ttl)]
        for spec in self.fault_specs:
            cmd += ["--fault", spec]
        return cmd + self.extra_args

    def start(self) -> ProvisioningService:
        if self.running:
            raise ServiceError("the service is already running")
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        env = dict(os.environ, **{TOKEN_ENV: self.token})  # not on the command line
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=log,
            )  # fmt: skip
        line = self._read_ready_line(started + self.startup_timeout)
        self.startup_seconds = time.monotonic() - started
        match = READY_RE.match(line)
        if not match:
            self.stop()
            raise ServiceError(f"unexpected first line from the service: {line!r}")
        self.api_url = match["api"]
        self.gate_url = match["gate"]
        self.ca_path = pathlib.Path(match["ca"])
        self.port = int(self.api_url.rsplit(":", 1)[1])
        self.gate_port = int(self.gate_url.rsplit(":", 1)[1])
        return self

    def _read_ready_line(self, deadline: float) -> str:
        assert self.process is not None and self.process.stdout is not None
        stdout = self.process.stdout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(stdout, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.stop()
                    raise ServiceError(f"no READY line within the timeout\n{self.log_tail()}")
                if not sel.select(timeout=min(left, 0.2)):
                    continue
                chunk = os.read(stdout.fileno(), 4096)
                if not chunk:
                    code = self.process.wait(timeout=5)
                    raise ServiceError(f"the service exited ({code}) before READY\n{self.log_tail()}")
                buf += chunk
        return buf.split(b"\n", 1)[0].decode("utf-8", "replace").strip()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the service and wait; SIGKILL if it does not exit in time. Returns its exit code."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
        return proc.returncode

    def restart(self, **changes: Any) -> ProvisioningService:
        """Stop and start again on the same ports and state dir; ``changes`` override settings
        (``server_cert``, ``reservation_ttl``, ``faults``, ``extra_args``, ``token``)."""
        self.stop()
        for key, value in changes.items():
            if key == "faults":
                self.fault_specs = list(value)
            elif key in (
                "server_cert",
                "reservation_ttl",
                "extra_args",
                "token",
                "port",
                "gate_port",
            ):
                setattr(self, key, value)
            else:
                raise TypeError(f"restart() got an unexpected setting {key!r}")
        return self.start()

    def __enter__(self) -> ProvisioningService:  # noqa: PYI034 - Self needs 3.11 typing
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- HTTP -----------------------------------------------------------------------------
    def session(self) -> requests.Session:
        """A requests session verifying the listeners against ``ca_path``.

        ``trust_env`` is off: with it, $REQUESTS_CA_BUNDLE silently replaces ``session.verify``
        (and proxy variables could divert loopback traffic)."""
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.ca_path)
        return session

    def demo_env(self, demo_root: str | os.PathLike[str]) -> dict[str, str]:
        """The ``MTLS_DEMO_*`` variables the demo inventory (``inventory/demo``) reads to point
        its hosts at this service, with one home per host under ``demo_root`` (as ``demo.sh``
        exports them)."""
        if self.api_url is None or self.gate_url is None:
            raise ServiceError("the service is not started")
        return {
            "MTLS_DEMO_ROOT": str(demo_root),
            "MTLS_DEMO_API_URL": self.api_url,
            "MTLS_DEMO_GATE_URL": self.gate_url,
            "MTLS_DEMO_CA": str(self.ca_path),
            "MTLS_DEMO_TOKEN": self.token,
        }

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def _api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        timeout = kwargs.pop("timeout", 30)
        with self.session() as session:
            return session.request(method, f"{self.api_url}{path}", timeout=timeout, **kwargs)

    def reserve_id(self) -> str:
        response = self._api("GET", "/generate-orchestrator-id")
        response.raise_for_status()
        return response.json()["data"]["id"]

    def upload(self, agent_id: str, certificate: bytes | str | os.PathLike[str]) -> requests.Response:
        """Upload as the upstream installer does (multipart ``certificate`` file + ``id``)."""
        data = _pem_bytes(certificate)
        return self._api(
            "POST", "/upload-orchestrator-certificate",
            files={"certificate": ("client.crt", data, "application/x-pem-file")},
            data={"id": agent_id},
        )  # fmt: skip

    def upload_json(
        self, agent_id: str, certificate: bytes | str | os.PathLike[str], token: str | None = None
    ) -> requests.Response:
        """``POST /agent/certificate`` with the bearer token (or ``token``)."""
        headers = {"Authorization": f"Bearer {self.token if token is None else token}"}
        body = {"agent_id": agent_id, "certificate": _pem_bytes(certificate).decode("ascii")}
        return self._api("POST", "/agent/certificate", json=body, headers=headers)

    def enroll(self, csr: bytes | str, agent_id: str | None = None) -> requests.Response:
        data = {"id": agent_id} if agent_id is not None else {}
        files = {"csr": ("client.csr", _pem_bytes(csr), "application/pkcs10")}
        return self._api("POST", "/orchestrators/enroll", files=files, data=data)

    def delete(self, agent_id: str, token: str | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token if token is None else token}"}
        return self._api("DELETE", f"/orchestrators/{agent_id}", headers=headers)

    def whoami(
        self,
        cert_path: str | os.PathLike[str],
        key_path: str | os.PathLike[str],
        timeout: float = 10.0,
    ) -> tuple[int, Any]:
        """``GET /whoami`` on the gate over mutual TLS (new connection each time).

        The gate's nginx lets any client certificate through TLS: a certificate that is not the
        registered one of its CN gets 403. Returns (status code, parsed JSON or None); raises
        ``requests.exceptions.ConnectionError`` (``SSLError`` is one) when the handshake fails
        (e.g. the client does not trust the server); an expired client certificate gets
        nginx's 400 (body None)."""
        with requests.Session() as session:
            session.trust_env = False
            response = session.get(
                f"{self.gate_url}/whoami", cert=(str(cert_path), str(key_path)),
                verify=str(self.ca_path), timeout=timeout,
            )  # fmt: skip
        try:
            body = response.json()
        except ValueError:
            body = None
        return response.status_code, body

    def gate_accepts(self, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> bool:
        """``/whoami``'s verdict: True on 200, False on 403; raises on anything else (a failed
        handshake or nginx's 400 is no verdict on the registration)."""
        status, body = self.whoami(cert_path, key_path)
        if status not in (200, 403):
            raise ServiceError(f"/whoami answered {status} {body!r}")
        return status == 200

    # -- the gate's two certificate checks (tests/fixtures/gate_client.py) -----------------
    def gate_context(self, cert: Any = None, key: Any = None) -> ssl.SSLContext:
        """Verifies the gate with ``ca_path``; presents ``cert``/``key`` (paths) when given."""
        from tests.fixtures.gate_client import client_context

        return client_context(self.ca_path, cert, key)

    def ws_upgrade(self, cert: Any = None, key: Any = None, path: str = "/ws", timeout: float = 10.0):
        """A WebSocket upgrade on the gate: ``Upgrade(status, headers, body, key).accepted``."""
        from tests.fixtures.gate_client import upgrade

        return upgrade(self.gate_url, self.gate_context(cert, key), path, timeout)

    def ws_accepts(self, cert: Any = None, key: Any = None) -> bool:
        """True on 101 with the right Sec-WebSocket-Accept, False on 403; raises otherwise."""
        answer = self.ws_upgrade(cert, key)
        if answer.status not in (101, 403):
            raise ServiceError(f"/ws answered {answer.status} {answer.body[:200]!r}")
        return answer.accepted

    def socketio_connect(self, cert: Any = None, key: Any = None, transport: str = "polling") -> str:
        """The gate's answer to a Socket.IO CONNECT: ``40{"sid":...}`` or ``44{"message":...}``."""
        from tests.fixtures.gate_client import socketio_connect

        return socketio_connect(self.gate_url, self.gate_context(cert, key), transport)

    def socketio_accepts(self, cert: Any = None, key: Any = None, transport: str = "polling") -> bool:
        answer = self.socketio_connect(cert, key, transport)
        if answer == SOCKETIO_REFUSAL:
            return False
        if answer.startswith("40") and "sid" in json.loads(answer[2:]):
            return True
        raise ServiceError(f"unexpected Socket.IO answer {answer[:200]!r}")

    def run_stock_agent(self, home: str | os.PathLike[str], env: dict[str, str] | None = None) -> dict[str, Any]:
        """``run_stock_agent`` against this service's gate."""
        return run_stock_agent(self.gate_url, home, env)

    # -- fault control --------------------------------------------------------------------
    def _control(self, method: str, **kwargs: Any) -> dict[str, Any]:
        response = self._api(method, "/_faults", headers=self.auth_headers(), **kwargs)
        if response.status_code != 200:
            raise ServiceError(f"/_faults {method}: {response.status_code} {response.text[:300]}")
        return response.json()["data"]

    def inject(self, endpoint: str, kind: str, count: int | None = 1, **params: Any) -> dict[str, Any]:
        """Add a fault (``count=None`` or ``0``: until cleared). Returns the normalized fault."""
        spec = {"endpoint": endpoint, "kind": kind, "count": count or 0, **params}
        return self._control("POST", json=spec)["added"][0]

    def clear_faults(self, keep_counters: bool = False) -> None:
        """Remove pending faults; also reset every counter unless ``keep_counters``."""
        self._control("DELETE", params={"keep_counters": "1"} if keep_counters else None)

    def faults(self) -> dict[str, Any]:
        """{"pending": [...], "fired": {endpoint: {kind: n}}, "requests": {endpoint: n},
        "handshake_failures": {"api"|"gate": n}}"""
        return self._control("GET")

    def fired(self, endpoint: str | None = None, kind: str | None = None) -> int:
        fired = self.faults()["fired"]
        return sum(
            n for ep, kinds in fired.items() if endpoint in (None, ep) for k, n in kinds.items() if kind in (None, k)
        )

    def request_count(self, endpoint: str) -> int:
        """How many requests reached ``endpoint`` (e.g. ``/generate-orchestrator-id``)."""
        return self.faults()["requests"].get(endpoint, 0)

    def handshake_failures(self, listener: str = "gate") -> int:
        """Failed TLS handshakes (the gate's are read from nginx's error log)."""
        return self.faults()["handshake_failures"].get(listener, 0)

    def certificate_errors(self) -> int:
        """Client certificates nginx answered ``400 The SSL certificate error`` (expired, ...)."""
        return self.faults()["certificate_errors"].get("gate", 0)

    # -- registry (read straight from SQLite) -----------------------------------------------
    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.db_path, timeout=10)
        try:
            return db.execute(sql, tuple(args)).fetchall()
        finally:
            db.close()

    def registrations(self) -> dict[str, str]:
        """{id: SHA-256 fingerprint (hex) of its current certificate}."""
        return dict(self._query("SELECT id, fingerprint FROM certificates"))

    def registered_pem(self, agent_id: str) -> str | None:
        rows = self._query("SELECT pem FROM certificates WHERE id = ?", (agent_id,))
        return rows[0][0] if rows else None

    def reserved_ids(self) -> list[str]:
        """Every ID ever handed out, oldest first (deleted and expired ones included)."""
        return [row[0] for row in self._query("SELECT id FROM ids ORDER BY reserved_at, rowid")]

    def history(self, agent_id: str) -> list[str]:
        """Fingerprints of the certificates ``agent_id`` had before its current one, oldest first."""
        rows = self._query("SELECT fingerprint FROM history WHERE id = ? ORDER BY seq", (agent_id,))
        return [row[0] for row in rows]

    def deleted_ids(self) -> list[str]:
        return [row[0] for row in self._query("SELECT id FROM deletions ORDER BY deleted_at")]

    def enrollments(self, agent_id: str) -> list[str]:
        rows = self._query("SELECT fingerprint FROM enrollments WHERE id = ? ORDER BY issued_at", (agent_id,))
        return [row[0] for row in rows]


def run_stock_agent(
    server_url: str, home: str | os.PathLike[str], env: dict[str, str] | None = None, timeout: float = 60.0
) -> dict[str, Any]:
    """Run ``tests/fixtures/stock_agent.py`` as its own process: ``HOME=home`` (it reads
    ``home/.mtls/client.crt|key``), trust from ``env`` only (``SSL_CERT_FILE``/``SSL_CERT_DIR``
    of this process are removed). Returns its JSON line plus ``returncode``."""
    child_env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    child_env.update(HOME=str(home), **(env or {}))
    proc = subprocess.run(
        [sys.executable, str(STOCK_AGENT), server_url], env=child_env, cwd=str(home),
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        tail = proc.stderr[-2000:]
        raise ServiceError(f"stock_agent printed no JSON line (exit {proc.returncode}): {tail}") from None
    return {**result, "returncode": proc.returncode}


# -- certificate helpers for tests -------------------------------------------------------------
def _pem_bytes(value: bytes | str | os.PathLike[str]) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str) and "-----BEGIN" in value:
        return value.encode("ascii")
    return pathlib.Path(value).read_bytes()


def make_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def upstream_subject(agent_id: str) -> x509.Name:
    """The subject the upstream installer uses."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "BR"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "SP"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "SaoPaulo"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "AutonomyLogic"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Development"),
            x509.NameAttribute(NameOID.COMMON_NAME, agent_id),
        ]
    )


def make_self_signed(
    agent_id: str,
    key: Any,
    *,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    days: int = 365,
    client_auth: bool | None = True,
    signer: Any = None,
    issuer: x509.Name | None = None,
) -> x509.Certificate:
    """A client certificate as fleet-mtls makes it (CA:FALSE, digitalSignature+keyEncipherment,
    EKU clientAuth; notBefore backdated 5 minutes). ``client_auth=None``: no EKU at all;
    ``False``: EKU serverAuth only. ``signer``/``issuer`` sign it with another key."""
    now = datetime.datetime.now(datetime.UTC)
    not_before = not_before or now - datetime.timedelta(minutes=5)
    not_after = not_after or now + datetime.timedelta(days=days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(upstream_subject(agent_id))
        .issuer_name(issuer or upstream_subject(agent_id))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    )  # fmt: skip
    if client_auth is not None:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client_auth else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(signer or key, hashes.SHA256())


def make_csr(agent_id: str, key: Any) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, agent_id)]))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def fingerprint(cert: x509.Certificate | bytes) -> str:
    """SHA-256 (hex) of the DER certificate, as ``registrations()`` reports it."""
    if isinstance(cert, bytes):
        cert = x509.load_pem_x509_certificate(cert)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def write_identity(
    directory: str | os.PathLike[str],
    cert: x509.Certificate | bytes,
    key: Any,
    name: str = "client",
) -> tuple[pathlib.Path, pathlib.Path]:
    """Write ``name.crt`` (0644) and ``name.key`` (0600, created so) into ``directory``."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    crt_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    crt_path.write_bytes(cert if isinstance(cert, bytes) else cert_pem(cert))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem(key))
    return crt_path, key_path
