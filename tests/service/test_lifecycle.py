"""Start-up, state on disk, restart, clean stop (nginx included, even on SIGKILL), --help, the
server certificates, slow clients."""

from __future__ import annotations

import ipaddress
import os
import pathlib
import re
import signal
import socket
import sqlite3
import ssl
import stat
import subprocess
import sys
import time

import pytest
import requests
from cryptography import x509

from tests.fixtures.provisioning_service import faults as faults_module
from tests.fixtures.servicectl import REPO, ProvisioningService

KEY_FILES = ("ca.key", "server.key", "enroll-ca.key")


def test_ready_line_and_files(service):
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", service.api_url)
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", service.gate_url)
    assert service.api_url != service.gate_url
    assert service.ca_path == service.state_dir / "ca.crt"
    assert stat.S_IMODE(service.state_dir.stat().st_mode) == 0o700
    for name in KEY_FILES:
        assert stat.S_IMODE((service.state_dir / name).stat().st_mode) == 0o600, name
    with sqlite3.connect(service.db_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_ready_is_the_only_stdout_line(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.provisioning_service", "--state-dir", str(tmp_path / "s")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        first = proc.stdout.readline().decode()
        assert re.fullmatch(
            r"READY api=https://127\.0\.0\.1:\d+ gate=https://127\.0\.0\.1:\d+ ca=\S+/ca\.crt\n",
            first,
        )
        requests.get(first.split()[1][4:] + "/healthz", verify=first.split()[3][3:], timeout=10).raise_for_status()
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert rest == b""
    # without --token a random one is created once, 0600, and reused
    token_file = tmp_path / "s" / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(token_file.read_text().strip()) >= 24


def test_server_certificate_is_for_localhost_and_loopback(service):
    der = ssl.get_server_certificate(("127.0.0.1", service.port))
    cert = x509.load_pem_x509_certificate(der.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    # hostname verification passes for both names
    for host in ("127.0.0.1", "localhost"):
        url = f"https://{host}:{service.port}/healthz"
        assert requests.get(url, verify=str(service.ca_path), timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("kind", "error"),
    [("expired", "certificate has expired"), ("wrong-host", "match")],
)
def test_faulty_server_certificates_fail_verification(service_factory, kind, error):
    svc = service_factory(server_cert=kind)
    for url in (svc.api_url, svc.gate_url):
        with pytest.raises(requests.exceptions.SSLError, match=error):
            requests.get(f"{url}/healthz", verify=str(svc.ca_path), timeout=10)
    # it is the certificate, not the CA, that is wrong: without hostname/expiry checks it chains
    ctx = ssl.create_default_context(cafile=str(svc.ca_path))
    ctx.check_hostname = False
    if kind == "expired":
        with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
            _handshake(ctx, svc.port)
    else:
        _handshake(ctx, svc.port)


def _handshake(ctx: ssl.SSLContext, port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost"):
            pass


def test_restart_keeps_state_and_starts_fast(service, tmp_path):
    from tests.fixtures.servicectl import make_key, make_self_signed, write_identity

    agent_id = service.reserve_id()
    key = make_key(2048)
    cert = make_self_signed(agent_id, key)
    crt, key_path = write_identity(tmp_path / "id", cert, key)
    assert service.upload(agent_id, crt).status_code == 200
    ca_before = service.ca_path.read_bytes()
    keys_before = {name: (service.state_dir / name).read_bytes() for name in KEY_FILES}
    registrations, reserved = service.registrations(), service.reserved_ids()
    api, gate = service.api_url, service.gate_url

    assert service.stop() == 0
    service.start()
    assert service.startup_seconds < 2.0, service.startup_seconds
    assert (service.api_url, service.gate_url) == (api, gate)  # same ports
    assert service.ca_path.read_bytes() == ca_before
    assert {name: (service.state_dir / name).read_bytes() for name in KEY_FILES} == keys_before
    assert service.registrations() == registrations
    assert service.reserved_ids() == reserved
    assert service.whoami(crt, key_path) == (200, {"id": agent_id})
    assert service.reserve_id() not in reserved


def nginx_pids(service) -> list[int]:
    """The gate's nginx master and its workers (from its pid file and /proc)."""
    master = int((service.state_dir / "nginx" / "nginx.pid").read_text())
    workers = [int(p.name) for p in pathlib.Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == master]
    return [master, *workers]


def _ppid(proc_dir: pathlib.Path) -> int | None:
    try:
        stat_line = (proc_dir / "stat").read_text()
    except OSError:
        return None
    return int(stat_line.rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting to be reaped."""
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _gate_port_closed(service) -> bool:
    try:
        socket.create_connection(("127.0.0.1", service.gate_port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_cleanly(service, sig):
    pids = nginx_pids(service)
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    service.process.send_signal(sig)
    assert service.process.wait(timeout=10) == 0
    assert "Traceback" not in service.log_text()
    assert _gone_within(pids, 1.0) and _gate_port_closed(service)


def test_sigkill_of_the_service_leaves_no_nginx_behind(service):
    """nginx's master dies with the service (PR_SET_PDEATHSIG), and takes its worker along."""
    pids = nginx_pids(service)
    service.process.kill()
    service.process.wait(timeout=5)
    assert _gone_within(pids, 5.0), [pid for pid in pids if _alive(pid)]
    assert _gate_port_closed(service)
    service.start()  # the same state dir and ports work again at once
    assert service.ws_upgrade().status == 101


def test_service_stops_when_nginx_dies(service):
    """Half a service is worse than none: a dead gate makes the service exit with status 1,
    and the worker a SIGKILLed nginx master leaves behind goes with it."""
    pids = nginx_pids(service)
    os.kill(pids[0], signal.SIGKILL)
    assert service.process.wait(timeout=10) == 1
    assert "nginx exited" in service.log_text()
    assert _gone_within(pids, 5.0), [pid for pid in pids if _alive(pid)]


def test_nginx_missing_is_a_clear_start_failure(tmp_path):
    env = dict(os.environ, PROVISIONING_SERVICE_NGINX=str(tmp_path / "no-nginx"))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fixtures.provisioning_service", "--state-dir", str(tmp_path / "s")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 1 and proc.stdout == ""
    assert "nginx" in proc.stderr and "install the nginx-light package" in proc.stderr, proc.stderr


def test_stop_is_quick_even_with_a_hanging_request(service):
    service.inject("/generate-orchestrator-id", "hang", seconds=60)
    with pytest.raises(requests.exceptions.Timeout):
        service.session().get(f"{service.api_url}/generate-orchestrator-id", timeout=0.5)
    started = time.monotonic()
    assert service.stop() == 0
    assert time.monotonic() - started < 3
    assert "Traceback" not in service.log_text()


def test_a_client_stuck_in_the_handshake_blocks_nobody(service):
    """Handshakes run in worker threads: silent TCP clients do not stall the accept loop."""
    silent = [socket.create_connection(("127.0.0.1", port), timeout=10)
              for port in (service.port, service.port, service.gate_port)]  # fmt: skip
    try:
        started = time.monotonic()
        for _ in range(3):
            response = service.session().get(f"{service.api_url}/healthz", timeout=5)
            assert response.status_code == 200
        assert time.monotonic() - started < 2
    finally:
        for sock in silent:
            sock.close()


def test_help_documents_everything():
    out = subprocess.run(
        [sys.executable, "-m", "tests.fixtures.provisioning_service", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    for needle in (
        "--state-dir", "--host", "--port", "--gate-port", "--token", "--reservation-ttl",
        "--fault", "--server-cert", "READY api=", "/generate-orchestrator-id",
        "/upload-orchestrator-certificate", "/agent/certificate", "/orchestrators/enroll",
        "/orchestrators/<id>", "/healthz", "/_faults", "/whoami", "retry_after", "rate=",
        "x*", "413", "410", "404", "403", "400", "SIGTERM", "/ws", "/socket.io/", "nginx-light",
        "optional_no_ca", "PROVISIONING_SERVICE_NGINX", '44{"message":"Connection rejected by server"}',
    ):  # fmt: skip
        assert needle in out, needle
    for kind in faults_module.KINDS:
        assert kind in out, kind
    for preset in faults_module.HOSTILE_PRESETS:
        assert preset in out, preset


def test_bad_arguments_are_refused(tmp_path):
    for args in (
        ["--fault", "/nope=status"],
        ["--fault", "/healthz=explode"],
        ["--server-cert", "bogus"],
        ["--reservation-ttl", "0"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "tests.fixtures.provisioning_service", "--state-dir",
             str(tmp_path / "s"), *args],
            cwd=REPO, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert proc.returncode == 2, args
        assert proc.stdout == ""


@pytest.mark.parametrize("listener", ["api", "gate"])
def test_start_failure_is_reported(tmp_path, service, listener):
    """A port already in use: servicectl raises with the service's own explanation."""
    from tests.fixtures.servicectl import ServiceError

    taken = {"port": service.port} if listener == "api" else {"gate_port": service.gate_port}
    other = ProvisioningService(tmp_path / "other", **taken)
    with pytest.raises(ServiceError, match="before READY"):
        other.start()
    assert "in use" in other.log_text()
    assert os.path.exists(other.log_path)
