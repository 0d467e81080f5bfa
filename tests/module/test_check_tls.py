"""The agent check below the application protocol, against real TLS servers on 127.0.0.1: the
agent's trust (and only it), the server's certificate, the device's identity and clock, TLS
and connection failures, and the one total deadline. One test (at least) per failure class."""

from __future__ import annotations

import datetime
import json
import os
import socket
import ssl
import time

import pytest
from cryptography.hazmat.primitives import hashes

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import check
from tests.fixtures.check_helpers import (
    AGENT_ID,
    accept_for,
    expect,
    make_cert,
    make_key,
    server_frame,
    switching,
    trickle,
    ws_accept,
)

UTC = datetime.UTC
TWO_YEARS = datetime.timedelta(days=730)


# --------------------------------------------------------------------------- success


def test_ok_reports_what_the_agent_would_see(pki, edge):
    server = edge(ws_accept, pki.server)
    result = check.run_agent_check(pki.client_dir, server.url, trust="ca_file", ca_file=pki.ca, timeout=5)
    assert set(result) == set(check.RESULT_KEYS)
    assert (result["agent_id"], result["status"], result["sid"], result["protocol"]) == (AGENT_ID, 101, "", "websocket")
    assert result["url"] == server.url + "/ws"
    assert (result["trust"], result["ca_file"]) == ("ca_file", pki.ca)
    assert result["tls_version"] in ("TLSv1.2", "TLSv1.3") and result["cipher"]
    assert result["server_subject"] == "localhost"
    assert result["client_fingerprint_sha256"] == pki.client_cert.fingerprint(hashes.SHA256()).hex()
    assert 363 <= result["client_days_left"] <= 365
    assert isinstance(result["elapsed_ms"], int)
    assert "PRIVATE KEY" not in json.dumps(result)


def test_tls12_server_is_accepted_and_reported(pki, edge):
    server = edge(ws_accept, pki.server, max_version=ssl.TLSVersion.TLSv1_2)
    result = check.run_agent_check(pki.client_dir, server.url, trust="ca_file", ca_file=pki.ca, timeout=5)
    assert result["tls_version"] == "TLSv1.2"


def test_identity_dir_tilde_is_the_agents_home(pki, edge, monkeypatch):
    """``~/.mtls`` is resolved with the HOME the agent has (here the caller's own)."""
    monkeypatch.setenv("HOME", os.path.dirname(pki.client_dir))
    server = edge(ws_accept, pki.server)
    result = check.run_agent_check("~/.mtls", server.url, trust="ca_file", ca_file=pki.ca, timeout=5)
    assert result["agent_id"] == AGENT_ID


# --------------------------------------------------------------------------- the agent's trust


def test_system_trust_does_not_trust_a_private_ca_and_says_how_to_fix_it(pki, edge):
    server = edge(ws_accept, pki.server)
    error = expect("untrusted_server", pki.client_dir, server.url, trust="system", timeout=5)
    assert "the agent trusts OpenSSL's default store (no SSL_CERT_FILE in its environment)" in error.message
    assert "give it the server's CA (set server_ca; agent_trust ca_file)" in error.message
    assert server.requests == [], "nothing may be sent to an untrusted server"


def test_system_trust_advice_names_role_variables_through_the_role(pki, edge, role_names):
    server = edge(ws_accept, pki.server)
    error = expect("untrusted_server", pki.client_dir, server.url, trust="system", timeout=5)
    assert "(set mtls_server_ca_src (or mtls_server_ca); mtls_agent_trust ca_file)" in error.message


def test_system_trust_ignores_the_callers_ssl_cert_file(pki, edge, monkeypatch):
    """The agent's environment has no SSL_CERT_FILE: the caller's (here trusting the server's CA)
    must not leak into the check, or it would pass where the agent fails."""
    monkeypatch.setenv("SSL_CERT_FILE", pki.ca)
    monkeypatch.setenv("SSL_CERT_DIR", os.path.dirname(pki.ca))
    server = edge(ws_accept, pki.server)
    expect("untrusted_server", pki.client_dir, server.url, trust="system", timeout=5)
    assert os.environ["SSL_CERT_FILE"] == pki.ca, "the caller's environment is left alone"


def test_ca_file_trust_is_that_file_only(pki, edge, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", pki.other_ca)  # the caller's: not the agent's
    server = edge(ws_accept, pki.server)
    result = check.run_agent_check(pki.client_dir, server.url, trust="ca_file", ca_file=pki.ca, timeout=5)
    assert result["status"] == 101


def test_ca_file_that_does_not_sign_the_server_is_named(pki, edge):
    server = edge(ws_accept, pki.server)
    error = expect("untrusted_server", pki.client_dir, server.url, trust="ca_file", ca_file=pki.other_ca, timeout=5)
    assert "SSL_CERT_FILE=%s" % pki.other_ca in error.message


def test_ca_file_without_a_certificate_is_a_config_failure(pki, tmp_path):
    empty = tmp_path / "empty.crt"
    empty.write_text("not a certificate\n")
    error = expect("config", pki.client_dir, "https://127.0.0.1:9", trust="ca_file", ca_file=str(empty), timeout=5)
    assert "holds no PEM certificate" in error.message


# --------------------------------------------------------------------------- the server's certificate


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_hostname_mismatch(pki, edge, host):
    server = edge(ws_accept, pki.server_wrong_host)
    url = "https://%s:%d" % (host, server.port)
    error = expect("hostname_mismatch", pki.client_dir, url, trust="ca_file", ca_file=pki.ca, timeout=5)
    assert error.message.startswith("hostname mismatch") and repr(host) in error.message


def test_expired_server_certificate(pki, edge):
    server = edge(ws_accept, pki.server_expired)
    error = expect("server_cert_expired", pki.client_dir, server.url, trust="ca_file", ca_file=pki.ca, timeout=5)
    assert error.message.startswith("server certificate expired")
    assert "the server's clock agrees" in error.message and "must be renewed" in error.message


def test_not_yet_valid_server_certificate(pki, edge):
    server = edge(ws_accept, pki.server_future)
    error = expect("server_cert_expired", pki.client_dir, server.url, trust="ca_file", ca_file=pki.ca, timeout=5)
    assert error.message.startswith("server certificate not yet valid")


def test_not_yet_valid_server_certificate_with_the_device_clock_behind_the_servers(pki, edge):
    """By the server's own clock (40 days ahead of this device) its certificate is valid: the
    device clock is the cause."""
    server = edge(ws_accept, pki.server_future, date_offset=40 * 86400)
    error = expect("clock", pki.client_dir, server.url, trust="ca_file", ca_file=pki.ca, timeout=5)
    assert error.message.startswith("device clock wrong") and "fix the device clock" in error.message


# --------------------------------------------------------------------------- the device's identity and clock


@pytest.mark.parametrize("shift", [TWO_YEARS, -TWO_YEARS], ids=["ahead", "behind"])
def test_device_clock_off_by_two_years_is_told_as_such(pki, edge, shift):
    server = edge(ws_accept, pki.server)
    now = datetime.datetime.now(UTC) + shift
    error = expect("clock", pki.client_dir, server.url, trust="ca_file", ca_file=pki.ca, timeout=5, now=now)
    assert "device clock wrong" in error.message and "the server at 127.0.0.1:%d says" % server.port in error.message


def test_expired_client_certificate(pki, edge):
    start = datetime.datetime.now(UTC) - datetime.timedelta(days=40)
    identity = pki.identity("expired", make_cert(pki.client_key, AGENT_ID, client=True, start=start, days=10))
    server = edge(ws_accept, pki.server)
    error = expect("client_cert_expired", identity, server.url, trust="ca_file", ca_file=pki.ca, timeout=5)
    assert error.message.startswith("client certificate expired") and "the server's agrees" in error.message
    assert error.details["client_days_left"] < 0
    assert server.requests == [], "the agent's expired certificate is not presented"


def test_future_client_certificate_with_the_servers_clock_agreeing(pki, edge):
    start = datetime.datetime.now(UTC) + datetime.timedelta(days=3)
    identity = pki.identity("future", make_cert(pki.client_key, AGENT_ID, client=True, start=start, days=10))
    server = edge(ws_accept, pki.server)
    error = expect("client_cert_expired", identity, server.url, trust="ca_file", ca_file=pki.ca, timeout=5)
    assert "not yet valid" in error.message and "made with a clock ahead" in error.message


def test_key_not_matching_the_certificate(pki):
    identity = pki.identity("mismatch", key=make_key())
    error = expect("client_credentials", identity, "https://127.0.0.1:9", timeout=5)
    assert "does not belong to the certificate" in error.message


def test_missing_key(pki, tmp_path):
    identity = pki.identity("nokey")
    os.unlink(os.path.join(identity, "client.key"))
    error = expect("client_credentials", identity, "https://127.0.0.1:9", timeout=5)
    assert "client.key" in error.message and "No such file" in error.message


def test_garbage_certificate(pki):
    identity = pki.identity("garbage")
    with open(os.path.join(identity, "client.crt"), "w") as handle:
        handle.write("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    error = expect("client_credentials", identity, "https://127.0.0.1:9", timeout=5)
    assert "not a valid certificate" in error.message


# --------------------------------------------------------------------------- TLS and connection


@pytest.mark.parametrize("max_version", [None, ssl.TLSVersion.TLSv1_2], ids=["tls13", "tls12"])
def test_certificate_alert_is_a_refusal(pki, edge, max_version):
    """A server requiring certificates of another CA: the alert comes during the handshake with
    TLS 1.2, after it (on the first read) with TLS 1.3; both are the server refusing."""
    server = edge(ws_accept, pki.server, client_ca=pki.other_ca, max_version=max_version)
    error = expect("refused", pki.client_dir, server.url, trust="ca_file", ca_file=pki.ca, timeout=5)
    assert "refused the client certificate in the TLS handshake" in error.message


def test_plain_http_port_is_a_tls_protocol_failure(pki, edge):
    def plain(conn, server):
        conn.recv(1024)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    server = edge(plain, tls=False)
    error = expect("tls_protocol", pki.client_dir, server.url, trust="ca_file", ca_file=pki.ca, timeout=5)
    assert "TLS 1.2 or later" in error.message


def test_connection_refused(pki):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    error = expect("connection", pki.client_dir, "https://127.0.0.1:%d" % port, timeout=5)
    assert "refused the connection" in error.message


def test_unresolvable_name(pki):
    error = expect("connection", pki.client_dir, "https://agent-gate.invalid", timeout=5)
    assert "cannot resolve" in error.message


def test_closed_after_the_handshake_is_a_connection_failure_not_a_refusal(pki, edge):
    server = edge(lambda conn, server: conn.close(), pki.server)
    error = expect("connection", pki.client_dir, server.url, trust="ca_file", ca_file=pki.ca, timeout=5)
    assert "closed the connection without answering" in error.message


# --------------------------------------------------------------------------- the total deadline


def test_silent_server_times_out_in_the_handshake(pki, edge):
    server = edge(lambda conn, server: server.stopped.wait(30), tls=False)
    error = expect("timeout", pki.client_dir, server.url, timeout=1)
    assert "within 1 s" in error.message and "TLS handshake" in error.message


@pytest.mark.parametrize("protocol", ["websocket", "socketio", "https"])
def test_trickling_server_cannot_hold_the_check_past_its_deadline(pki, edge, protocol):
    """One byte every 0.2 s of an answer that would take 30 s: every read returns in time, so
    only a total deadline stops the check."""
    def trickling(conn, server):
        server.read_request(conn)
        trickle(conn, b"HTTP/1.1 101 Switching Protocols\r\n" + b"X-Slow: 1\r\n" * 10, 0.2, server.stopped)

    server = edge(trickling, pki.server)
    started = time.monotonic()
    error = expect("timeout", pki.client_dir, server.url, protocol=protocol, trust="ca_file", ca_file=pki.ca,
                   timeout=2)
    elapsed = time.monotonic() - started
    assert elapsed < 2 + check.GRACE + 1.5, elapsed  # the trickle alone lasts 30 s
    assert "within 2 s" in error.message and "exchange" in error.message
    assert error.details["tls_version"], "what was learnt before the deadline is kept"


def test_trickled_engineio_open_packet_meets_the_deadline(pki, edge):
    def trickling(conn, server):
        head = server.read_request(conn)
        conn.sendall(switching(accept_for(head)))
        trickle(conn, server_frame(1, b'0{"sid":"' + b"x" * 100 + b'"}'), 0.2, server.stopped)

    server = edge(trickling, pki.server)
    started = time.monotonic()
    expect("timeout", pki.client_dir, server.url, protocol="socketio", trust="ca_file", ca_file=pki.ca, timeout=2)
    assert time.monotonic() - started < 2 + check.GRACE + 1.5


def test_a_stuck_child_is_killed_at_the_deadline_and_reaped():
    """The parent's kill covers what no socket timeout bounds (a hung DNS lookup, a blocked
    call): the child here sleeps, reports its pid, and must be gone when the call returns."""
    def stuck(report):
        report({"phase": "sleeping", "result": {"pid": os.getpid()}})
        time.sleep(20)

    started = time.monotonic()
    message = check._run_forked(stuck, time.monotonic() + 1)
    assert time.monotonic() - started < 3
    assert message["killed"] and message["last"]["phase"] == "sleeping"
    pid = message["last"]["result"]["pid"]
    assert pid != os.getpid()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped: not even a zombie


def test_a_child_never_returns_into_the_caller():
    """Whatever the child raises (even SystemExit), it ends in the child with a report."""
    def crash(report):
        raise SystemExit(3)

    assert check._run_forked(crash, time.monotonic() + 5)["crash"].startswith("SystemExit")
