"""mtls_check against real TLS servers on loopback, one per failure class.

Certificates and keys are generated at run time (2048-bit: size does not matter here).
"""
from __future__ import annotations

import datetime
import importlib.util
import json
import os
import pathlib
import socket
import ssl
import subprocess
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO = pathlib.Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location("mtls_check", REPO / "library" / "mtls_check.py")
mtls_check = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(mtls_check)

UTC = datetime.timezone.utc  # noqa: UP017 - the module under test targets Python 3.9
AGENT_ID = "0A1B2C3D"


# --------------------------------------------------------------------------- certificates


def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fleet-mtls tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject_key, cn, issuer=None, *, days=30, start=None, ca=False, sans=(), client=False):
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
    )
    if sans:
        entries = []
        for san in sans:
            try:
                import ipaddress

                entries.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                entries.append(x509.DNSName(san))
        builder = builder.add_extension(x509.SubjectAlternativeName(entries), critical=False)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True
        ).add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
    builder = builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False
    )
    if issuer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path, cert=None, key=None):
    if cert is not None:
        path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        fd = os.open(path.with_suffix(".key"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
    return str(path.with_suffix(".crt")), str(path.with_suffix(".key"))


class PKI:
    """All the certificates the tests need, written once per session."""

    def __init__(self, root):
        self.root = root
        ca_key, other_ca_key, server_key, client_key = _key(), _key(), _key(), _key()
        ca = _cert(ca_key, "Test Server CA", ca=True, days=365)
        other_ca = _cert(other_ca_key, "Some Other CA", ca=True, days=365)
        self.ca, _ = _write(root / "ca", ca)
        self.other_ca, _ = _write(root / "other-ca", other_ca)
        sans = ("127.0.0.1", "localhost")
        self.server = _write(root / "server", _cert(server_key, "localhost", (ca, ca_key), sans=sans), server_key)
        self.server_wrong_host = _write(
            root / "server-wrong", _cert(server_key, "wrong.example", (ca, ca_key), sans=("wrong.example",)),
            server_key,
        )
        past = datetime.datetime.now(UTC) - datetime.timedelta(days=40)
        self.server_expired = _write(
            root / "server-expired", _cert(server_key, "localhost", (ca, ca_key), sans=sans, start=past, days=10),
            server_key,
        )
        self.client = _write(root / "client", _cert(client_key, AGENT_ID, client=True, days=365), client_key)
        other_client_key = _key()
        self.unregistered = _write(
            root / "unregistered", _cert(other_client_key, AGENT_ID, client=True, days=365), other_client_key
        )
        self.client_expired = _write(
            root / "client-expired", _cert(client_key, AGENT_ID, client=True, start=past, days=10), client_key
        )
        future = datetime.datetime.now(UTC) + datetime.timedelta(days=3)
        self.client_future = _write(
            root / "client-future", _cert(client_key, AGENT_ID, client=True, start=future, days=10), client_key
        )
        # A certificate paired with somebody else's key.
        mismatch_dir = root / "mismatch"
        mismatch_dir.mkdir()
        self.mismatch = (self.client[0], self.unregistered[1])


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


# --------------------------------------------------------------------------- servers


class TLSServer:
    """A tiny HTTPS server on 127.0.0.1 with mutual TLS, one thread per connection.

    behaviour: ``ok`` answers ``{"id": <client CN>}`` with ``status``; ``close`` closes right
    after the handshake; ``silent`` accepts TCP and never speaks; ``plain`` answers plain HTTP.
    """

    def __init__(self, cert_key, trusted_clients, behaviour="ok", status=200, body=None, max_version=None):
        self.behaviour = behaviour
        self.status = status
        self.body = body
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(*cert_key)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_verify_locations(cafile=trusted_clients)
        if max_version:
            self.context.maximum_version = max_version
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.handshakes = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def url(self, host="127.0.0.1", path="/whoami"):
        return f"https://{host}:{self.port}{path}"

    def _serve(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        conn.settimeout(5)
        try:
            if self.behaviour == "silent":
                self.stopped.wait(10)
                return
            if self.behaviour == "plain":
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                return
            tls = self.context.wrap_socket(conn, server_side=True)
            self.handshakes += 1
            if self.behaviour == "close":
                tls.close()
                return
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = tls.recv(4096)
                if not chunk:
                    return
                data += chunk
            cn = ""
            for rdn in tls.getpeercert().get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        cn = value
            body = self.body if self.body is not None else json.dumps({"id": cn}).encode()
            tls.sendall(
                b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n" % (self.status, len(body)) + body
            )
            tls.close()
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def stop(self):
        self.stopped.set()
        self.sock.close()


@pytest.fixture
def server_factory():
    servers = []

    def make(*args, **kwargs):
        server = TLSServer(*args, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def write_ini(path, cert_key, ca_bundle, host="127.0.0.1", port=443, agent_id=AGENT_ID, **overrides):
    tls = {"min_version": "TLSv1.2", "verify_mode": "CERT_REQUIRED", "check_hostname": "true"}
    tls.update(overrides)
    path.write_text(
        "# Managed by Ansible (fleet-mtls): local changes will be overwritten.\n"
        "[server]\n"
        f"host = {host}\nport = {port}\nca_bundle = {ca_bundle}            ; or an absolute path\n"
        "[tls]\n" + "".join(f"{k} = {v}\n" for k, v in tls.items()) +
        "[client]\n"
        f"cert = {cert_key[0]}\nkey = {cert_key[1]}\nagent_id = {agent_id}\n"
    )
    return str(path)


def expect_failure(kind, *args, **kwargs):
    with pytest.raises(mtls_check.CheckError) as info:
        mtls_check.run_check(*args, **kwargs)
    assert info.value.kind == kind, info.value.message
    assert "PRIVATE KEY" not in info.value.message
    return info.value


# --------------------------------------------------------------------------- success


def test_handshake_and_request_succeed(pki, server_factory, tmp_path):
    server = server_factory(pki.server, trusted_clients=pki.client[0])
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, pki.ca, port=server.port)
    result = mtls_check.run_check(ini, url=server.url(), timeout=5)
    assert result["status"] == 200
    assert result["agent_id"] == AGENT_ID
    assert result["response"] == {"id": AGENT_ID}
    assert result["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert result["cipher"]
    assert result["server_subject"] == "localhost"
    assert 363 <= result["client_days_left"] <= 365
    assert len(result["client_fingerprint_sha256"]) == 64
    assert "PRIVATE KEY" not in json.dumps(result)


def test_default_url_comes_from_the_config(pki, server_factory, tmp_path):
    server = server_factory(pki.server, trusted_clients=pki.client[0])
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, pki.ca, host="localhost", port=server.port)
    result = mtls_check.run_check(ini, timeout=5)
    assert result["url"] == f"https://localhost:{server.port}/"
    assert result["status"] == 200


def test_tls12_server_is_accepted_and_reported(pki, server_factory, tmp_path):
    server = server_factory(pki.server, trusted_clients=pki.client[0], max_version=ssl.TLSVersion.TLSv1_2)
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, pki.ca)
    result = mtls_check.run_check(ini, url=server.url(), timeout=5)
    assert result["tls_version"] == "TLSv1.2"


def test_non_json_answer_is_truncated_text(pki, server_factory, tmp_path):
    server = server_factory(pki.server, trusted_clients=pki.client[0], body=b"x" * 5000)
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, pki.ca)
    result = mtls_check.run_check(ini, url=server.url(), timeout=5)
    assert result["response"].endswith("...[truncated]")
    assert len(result["response"]) < 1100


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("max_version", [None, ssl.TLSVersion.TLSv1_2], ids=["tls13", "tls12"])
def test_unregistered_certificate_is_refused_by_server(pki, server_factory, tmp_path, max_version):
    server = server_factory(pki.server, trusted_clients=pki.client[0], max_version=max_version)
    ini = write_ini(tmp_path / "agent-tls.ini", pki.unregistered, pki.ca)
    error = expect_failure("refused", ini, url=server.url(), timeout=5)
    assert error.message.startswith("refused by server")
    assert "not registered" in error.message
    assert error.details["agent_id"] == AGENT_ID


def test_http_403_is_refused_not_registered(pki, server_factory, tmp_path):
    server = server_factory(pki.server, trusted_clients=pki.client[0], status=403, body=b'{"error":"unknown"}')
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, pki.ca)
    error = expect_failure("refused", ini, url=server.url(), timeout=5)
    assert "HTTP 403" in error.message and "certificate not registered" in error.message
    assert error.details["status"] == 403
    assert error.details["response"] == {"error": "unknown"}


def test_connection_closed_after_handshake_is_refused(pki, server_factory, tmp_path):
    server = server_factory(pki.server, trusted_clients=pki.client[0], behaviour="close")
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, pki.ca)
    error = expect_failure("refused", ini, url=server.url(), timeout=5)
    assert "closed the connection" in error.message or "TLS error" in error.message


def test_unexpected_status(pki, server_factory, tmp_path):
    server = server_factory(pki.server, trusted_clients=pki.client[0], status=404)
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, pki.ca)
    error = expect_failure("http_status", ini, url=server.url(), timeout=5)
    assert "unexpected HTTP status 404" in error.message
    # ...unless the caller says 404 is fine.
    assert mtls_check.run_check(ini, url=server.url(), timeout=5, status_code=(200, 404))["status"] == 404


# --------------------------------------------------------------------------- the server's side


def test_untrusted_server(pki, server_factory, tmp_path):
    server = server_factory(pki.server, trusted_clients=pki.client[0])
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, pki.other_ca)
    error = expect_failure("untrusted_server", ini, url=server.url(), timeout=5)
    assert error.message.startswith("untrusted server")
    assert pki.other_ca in error.message
    assert server.handshakes == 0


def test_system_bundle_does_not_trust_a_private_ca(pki, server_factory, tmp_path):
    server = server_factory(pki.server, trusted_clients=pki.client[0])
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, "system")
    expect_failure("untrusted_server", ini, url=server.url(), timeout=5)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_hostname_mismatch(pki, server_factory, tmp_path, host):
    server = server_factory(pki.server_wrong_host, trusted_clients=pki.client[0])
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, pki.ca)
    error = expect_failure("hostname_mismatch", ini, url=server.url(host=host), timeout=5)
    assert error.message.startswith("hostname mismatch")
    assert repr(host) in error.message


def test_expired_server_certificate(pki, server_factory, tmp_path):
    server = server_factory(pki.server_expired, trusted_clients=pki.client[0])
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, pki.ca)
    error = expect_failure("server_cert_expired", ini, url=server.url(), timeout=5)
    assert error.message.startswith("server certificate expired")


def test_plain_http_server_is_a_protocol_error(pki, server_factory, tmp_path):
    server = server_factory(pki.server, trusted_clients=pki.client[0], behaviour="plain")
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, pki.ca)
    error = expect_failure("tls_protocol", ini, url=server.url(), timeout=5)
    assert "TLS" in error.message


def test_min_version_tls13_refuses_a_tls12_server(pki, server_factory, tmp_path):
    server = server_factory(pki.server, trusted_clients=pki.client[0], max_version=ssl.TLSVersion.TLSv1_2)
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, pki.ca, min_version="TLSv1.3")
    expect_failure("tls_protocol", ini, url=server.url(), timeout=5)


# --------------------------------------------------------------------------- the device's side


def test_expired_client_certificate_is_reported_before_connecting(pki, tmp_path):
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client_expired, pki.ca)
    # Port 9 on loopback: nothing must be contacted since the verdict is local.
    error = expect_failure("client_cert_expired", ini, url="https://127.0.0.1:9/", timeout=5)
    assert error.message.startswith("client certificate expired")
    assert error.details["client_days_left"] < 0


def test_not_yet_valid_client_certificate(pki, tmp_path):
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client_future, pki.ca)
    error = expect_failure("client_cert_expired", ini, url="https://127.0.0.1:9/", timeout=5)
    assert "not yet valid" in error.message


def test_key_not_matching_certificate(pki, tmp_path):
    ini = write_ini(tmp_path / "agent-tls.ini", pki.mismatch, pki.ca)
    error = expect_failure("client_credentials", ini, url="https://127.0.0.1:9/", timeout=5)
    assert "does not belong" in error.message


def test_unreadable_key(pki, tmp_path):
    ini = write_ini(tmp_path / "agent-tls.ini", (pki.client[0], str(tmp_path / "missing.key")), pki.ca)
    error = expect_failure("client_credentials", ini, url="https://127.0.0.1:9/", timeout=5)
    assert "missing.key" in error.message


def test_config_agent_id_must_match_certificate(pki, tmp_path):
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, pki.ca, agent_id="FFFF0000")
    error = expect_failure("config", ini, url="https://127.0.0.1:9/", timeout=5)
    assert "FFFF0000" in error.message and AGENT_ID in error.message


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"verify_mode": "CERT_NONE"}, "weakens server verification"),
        ({"check_hostname": "false"}, "weakens server verification"),
        ({"min_version": "TLSv1.1"}, "only TLSv1.2 or TLSv1.3"),
    ],
)
def test_weakened_config_is_refused(pki, tmp_path, overrides, words):
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, pki.ca, **overrides)
    error = expect_failure("config", ini, url="https://127.0.0.1:9/", timeout=5)
    assert words in error.message


def test_missing_config(tmp_path):
    error = expect_failure("config", str(tmp_path / "nope.ini"))
    assert "cannot read" in error.message


def test_http_url_is_refused(pki, tmp_path):
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, pki.ca)
    expect_failure("config", ini, url="http://127.0.0.1:9/")


# --------------------------------------------------------------------------- connection errors


def test_connection_refused(pki, tmp_path):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, pki.ca)
    error = expect_failure("connection", ini, url=f"https://127.0.0.1:{port}/", timeout=5)
    assert error.message.startswith("connection error") and "refused the connection" in error.message


def test_unresolvable_name(pki, tmp_path):
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, pki.ca)
    error = expect_failure("connection", ini, url="https://agent-gate.invalid/", timeout=5)
    assert "cannot resolve" in error.message


def test_timeout(pki, server_factory, tmp_path):
    server = server_factory(pki.server, trusted_clients=pki.client[0], behaviour="silent")
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, pki.ca)
    started = time.monotonic()
    error = expect_failure("timeout", ini, url=server.url(), timeout=1)
    assert time.monotonic() - started < 4
    assert "within 1 s" in error.message


# --------------------------------------------------------------------------- certificate parser


def test_parser_agrees_with_cryptography(pki):
    pem = pathlib.Path(pki.client[0]).read_text()
    parsed = mtls_check.parse_certificate(pem)
    reference = x509.load_pem_x509_certificate(pem.encode())
    assert parsed["cn"] == AGENT_ID
    assert parsed["not_after"] == reference.not_valid_after_utc
    assert parsed["not_before"] == reference.not_valid_before_utc
    assert parsed["fingerprint_sha256"] == reference.fingerprint(hashes.SHA256()).hex()


def test_parser_handles_generalized_time_and_utf8():
    key = _key()
    start = datetime.datetime(2049, 6, 1, tzinfo=UTC)
    cert = _cert(key, "Grüße-01", days=800, start=start)  # notAfter beyond 2049: GeneralizedTime
    parsed = mtls_check.parse_certificate(cert.public_bytes(serialization.Encoding.PEM).decode())
    assert parsed["cn"] == "Grüße-01"
    assert parsed["not_after"] == start + datetime.timedelta(days=800)


@pytest.mark.parametrize("text", ["", "hello", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])
def test_parser_rejects_garbage(text):
    with pytest.raises(ValueError):
        mtls_check.parse_certificate(text)


# --------------------------------------------------------------------------- through Ansible


def _ansible(tmp_path, args, check=False):
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal", ANSIBLE_NOCOLOR="1")
    cmd = [str(REPO / ".venv" / "bin" / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
           "-m", "mtls_check", "-a", json.dumps(args),
           "-e", "ansible_python_interpreter=" + str(REPO / ".venv" / "bin" / "python")]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    # minimal callback: "localhost | SUCCESS => {...}"
    assert " => " in proc.stdout, proc.stdout + proc.stderr
    head, payload = proc.stdout.split(" => ", 1)
    return proc.returncode, head, json.loads(payload)


def test_module_through_ansible_in_check_mode(pki, server_factory, tmp_path):
    server = server_factory(pki.server, trusted_clients=pki.client[0])
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, pki.ca)
    rc, head, result = _ansible(tmp_path, {"config": ini, "url": server.url()}, check=True)
    assert rc == 0 and "SUCCESS" in head, result
    assert result["changed"] is False
    assert result["agent_id"] == AGENT_ID and result["response"] == {"id": AGENT_ID}


def test_module_failure_through_ansible(pki, server_factory, tmp_path):
    server = server_factory(pki.server_wrong_host, trusted_clients=pki.client[0])
    ini = write_ini(tmp_path / "agent-tls.ini", pki.client, pki.ca)
    rc, head, result = _ansible(tmp_path, {"config": ini, "url": server.url(host="localhost")})
    assert rc != 0 and "FAILED" in head
    assert result["failure"] == "hostname_mismatch"
    assert result["msg"].startswith("hostname mismatch")
    assert result["agent_id"] == AGENT_ID
