"""Real servers and certificates for the agent check's tests (``test_check_*.py``).

``CheckPKI`` writes every certificate the tests need (2048-bit keys: size does not matter
here). ``EdgeServer`` is a small threaded TLS server on 127.0.0.1 whose answer to each
connection is a handler function: the edge cases the reference gate never produces (a
trickling server, a wrong accept key, a 404 to the upgrade, TLS alerts, broken certificates).
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import hashlib
import ipaddress
import os
import pathlib
import socket
import ssl
import struct
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.check import RESULT_KEYS, run_agent_check
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import CheckError

UTC = datetime.UTC
AGENT_ID = "0A1B2C3D"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OPEN = b'0{"sid":"eio-1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'


# --------------------------------------------------------------------------- certificates


def make_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fleet-mtls tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(subject_key, cn, issuer=None, *, days=30, start=None, ca=False, sans=(), client=False):
    """A certificate for ``cn`` signed by ``issuer`` ``(cert, key)`` (self-signed without)."""
    now = datetime.datetime.now(UTC)
    start = start or now - datetime.timedelta(minutes=5)
    issuer_cert, issuer_key = issuer if issuer else (None, subject_key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_cert.subject if issuer_cert else _name(cn))
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False)
    )
    if sans:
        entries = []
        for san in sans:
            try:
                entries.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                entries.append(x509.DNSName(san))
        builder = builder.add_extension(x509.SubjectAlternativeName(entries), critical=False)
    if ca:
        usage = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
    else:
        usage = x509.KeyUsage(True, True, False, False, False, False, False, False, False)
        purpose = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
    builder = builder.add_extension(usage, critical=True)
    if issuer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def write_pair(directory, cert, key, mode=0o700):
    """``directory/client.crt`` (0644) and ``client.key`` (0600), as the agent reads them."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=mode)
    (directory / "client.crt").write_bytes(pem(cert))
    fd = os.open(directory / "client.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return directory


class CheckPKI:
    """A private server CA, server certificates in every state, client identities."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        ca_key, other_ca_key, self.server_key, self.client_key = make_key(), make_key(), make_key(), make_key()
        self.ca_cert = make_cert(ca_key, "Test Server CA", ca=True, days=365)
        self.ca = self._file("ca.crt", pem(self.ca_cert))
        self.other_ca = self._file("other-ca.crt", pem(make_cert(other_ca_key, "Some Other CA", ca=True, days=365)))
        signer = (self.ca_cert, ca_key)
        sans = ("127.0.0.1", "localhost")
        now = datetime.datetime.now(UTC)
        self.server = self._server("server", make_cert(self.server_key, "localhost", signer, sans=sans))
        self.server_wrong_host = self._server(
            "server-wrong", make_cert(self.server_key, "wrong.example", signer, sans=("wrong.example",)))
        self.server_expired = self._server("server-expired", make_cert(
            self.server_key, "localhost", signer, sans=sans, start=now - datetime.timedelta(days=40), days=10))
        self.server_future = self._server("server-future", make_cert(
            self.server_key, "localhost", signer, sans=sans, start=now + datetime.timedelta(days=30), days=10))
        self.client_cert = make_cert(self.client_key, AGENT_ID, client=True, days=365)
        self.client_dir = write_pair(root / "client" / ".mtls", self.client_cert, self.client_key)

    def _file(self, name, data):
        path = self.root / name
        path.write_bytes(data)
        return str(path)

    def _server(self, name, cert):
        key = self.root / (name + ".key")
        key.write_bytes(self.server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return self._file(name + ".crt", pem(cert)), str(key)

    def identity(self, name, cert=None, key=None):
        """A ``.mtls`` directory holding ``cert`` (default: the valid client certificate)."""
        return str(write_pair(self.root / name / ".mtls", cert or self.client_cert, key or self.client_key))


# --------------------------------------------------------------------------- a TLS edge server


class EdgeServer:
    """TLS on 127.0.0.1; each connection runs ``handler(conn, server)`` in its own thread.

    ``client_ca``: ``None`` asks for no client certificate; a CA path requires one signed by it
    (so any other certificate is refused by a TLS alert). ``tls=False`` serves plain TCP.
    ``date_offset``: seconds the server's clock (its ``Date``) is ahead of the real one."""

    def __init__(self, handler, cert_key=None, client_ca=None, tls=True, max_version=None, date_offset=0):
        self.handler = handler
        self.date_offset = date_offset
        self.context = None
        if tls:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(*cert_key)
            if client_ca:
                self.context.verify_mode = ssl.CERT_REQUIRED
                self.context.load_verify_locations(cafile=client_ca)
            if max_version:
                self.context.maximum_version = max_version
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.stopped = threading.Event()
        self.connections = 0
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, raw):
        raw.settimeout(15)
        try:
            conn = self.context.wrap_socket(raw, server_side=True) if self.context else raw
            self.handler(conn, self)
        except (OSError, ValueError):
            pass
        finally:
            raw.close()

    def read_request(self, conn):
        """The request head; a ``HEAD`` (the check's clock probe) is answered here with a Date."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                raise ValueError("closed")
            data += chunk
        head = data.split(b"\r\n\r\n", 1)[0]
        if head.startswith(b"HEAD "):
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nDate: %s\r\nContent-Length: 0\r\n\r\n"
                         % http_date(self.date_offset))
            raise ValueError("probe answered")
        self.requests.append(head)
        return head

    def stop(self):
        self.stopped.set()
        self.sock.close()


def http_date(offset: float = 0):
    return email.utils.formatdate(time.time() + offset, usegmt=True).encode()


def header(head: bytes, name: str) -> str:
    for line in head.decode("latin-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return ""


def accept_for(head: bytes) -> str:
    key = header(head, "Sec-WebSocket-Key").encode()
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()  # noqa: S324 - RFC 6455


def switching(accept: str) -> bytes:
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: %s\r\n\r\n" % accept.encode())


def answer(status: int, body: bytes = b"", reason: str = "X") -> bytes:
    return (b"HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % (status, reason.encode(), http_date(), len(body)) + body)


def server_frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked server frame (payload < 126 bytes)."""
    return struct.pack("!BB", 0x80 | opcode, len(payload)) + payload


def read_client_frame(conn) -> tuple[int, bytes]:
    """``(opcode, payload)`` of one masked client frame (payload < 126 bytes)."""
    first, second = _exact(conn, 2)
    mask = _exact(conn, 4)
    payload = _exact(conn, second & 0x7F)
    return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _exact(conn, count):
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            raise ValueError("closed")
        data += chunk
    return data


def trickle(conn, data: bytes, interval: float, stopped: threading.Event):
    """Send ``data`` one byte every ``interval`` seconds (a gate that holds its client)."""
    for byte in data:
        if stopped.wait(interval):
            return
        conn.sendall(bytes([byte]))


# --------------------------------------------------------------------------- fixtures
# The test_check_*.py files import the *_fixture functions; pytest knows them by their name=.


@pytest.fixture(scope="session", name="pki")
def pki_fixture(tmp_path_factory):
    return CheckPKI(tmp_path_factory.mktemp("check-pki"))


@pytest.fixture(name="edge")
def edge_fixture():
    """``edge(handler, cert_key, **options)`` starts an EdgeServer, stopped after the test."""
    servers = []

    def start(handler, cert_key=None, **options):
        server = EdgeServer(handler, cert_key, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


class ServiceGate:
    """The reference service's gate (real nginx, ``/ws`` and Socket.IO, the cloud's acceptance
    rule) as the acceptance tests use it: ``gate_url``, ``ca_path``, ``upload`` (the ID is
    reserved first when the registry has never seen it: fixed IDs keep the tests readable),
    ``delete``, and the stock agent stand-in (``run_stock_agent``)."""

    def __init__(self, service):
        self.service = service
        self.gate_url = service.gate_url
        self.ca_path = service.ca_path

    def upload(self, agent_id, certificate):
        if agent_id not in self.service.reserved_ids():
            self.service.inject("/generate-orchestrator-id", "fixed_id", value=agent_id)
            assert self.service.reserve_id() == agent_id
        response = self.service.upload(agent_id, certificate)
        assert response.status_code == 200, response.text

    def delete(self, agent_id):
        response = self.service.delete(agent_id)
        assert response.status_code == 200, response.text

    def run_stock_agent(self, home, env=None):
        return self.service.run_stock_agent(home, env)


@pytest.fixture(name="gate")
def gate_fixture(svc):
    """The gate the acceptance tests meet: the reference service's (``svc``, shared by the
    session). IDs must be 8 upper-case hex characters, each test its own."""
    return ServiceGate(svc)


def expect(kind, *args, **kwargs):
    """Run the check, expecting a failure of ``kind``; return the CheckError."""
    with pytest.raises(CheckError) as caught:
        run_agent_check(*args, **kwargs)
    error = caught.value
    assert error.kind == kind, error.message
    assert "PRIVATE KEY" not in error.message and "PRIVATE KEY" not in repr(error.details)
    assert set(RESULT_KEYS) <= set(error.details), error.details
    return error


# --------------------------------------------------------------------------- handlers


def ws_accept(conn, server):
    """A correct RFC 6455 server: 101 with the right accept key, then echo the close."""
    head = server.read_request(conn)
    conn.sendall(switching(accept_for(head)))
    opcode, payload = read_client_frame(conn)
    conn.sendall(server_frame(opcode, payload))


def status_handler(status, body=b""):
    def handle(conn, server):
        server.read_request(conn)
        conn.sendall(answer(status, body))
    return handle


def engineio(*script):
    """A Socket.IO server playing ``script``: bytes are sent as text frames, ``None`` reads one
    client frame (recorded in ``server.frames``)."""
    def handle(conn, server):
        head = server.read_request(conn)
        conn.sendall(switching(accept_for(head)))
        server.frames = getattr(server, "frames", [])
        for step in script:
            if step is None:
                server.frames.append(read_client_frame(conn)[1])
            else:
                conn.sendall(server_frame(1, step))
        read_client_frame(conn)  # the close
    return handle
