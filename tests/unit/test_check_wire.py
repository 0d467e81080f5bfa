"""The agent check's pure parts: targets and arguments (check.py), the wire protocols
(wsclient.py) over a real socket pair, the verdicts that need no server (verdicts.py)."""

from __future__ import annotations

import base64
import socket
import ssl
import struct
import time

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import check, verdicts, wsclient
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import CheckError


@pytest.fixture
def pair():
    """A connected socket pair: ``(client wire with a 5 s deadline, server socket)``."""
    client, server = socket.socketpair()
    yield wsclient.Wire(client, time.monotonic() + 5), server
    client.close()
    server.close()


# --------------------------------------------------------------------------- targets and arguments


@pytest.mark.parametrize("server_url, protocol, path, url, host_header", [
    ("https://gate.example", "websocket", None, "https://gate.example/ws", "gate.example"),
    ("https://gate.example:3001/", "socketio", None,
     "https://gate.example:3001/socket.io/?EIO=4&transport=websocket", "gate.example:3001"),
    ("https://gate.example", "socketio", "/custom/?x=1", "https://gate.example/custom/?x=1&EIO=4&transport=websocket",
     "gate.example"),
    ("https://gate.example", "https", None, "https://gate.example/", "gate.example"),
    ("https://gate.example:8443", "https", "/health?full=1", "https://gate.example:8443/health?full=1",
     "gate.example:8443"),
    ("https://[::1]:9443", "websocket", None, "https://[::1]:9443/ws", "[::1]:9443"),
])
def test_target_is_where_the_agent_connects(server_url, protocol, path, url, host_header):
    target = check.Target(server_url, protocol, path)
    assert (target.url, target.host_header) == (url, host_header)


@pytest.mark.parametrize("server_url", ["http://gate.example", "https://", "https://gate.example/api",
                                        "https://gate.example:99999", "gate.example", None])
def test_target_refuses_what_the_agent_cannot_connect_to(server_url):
    with pytest.raises(CheckError) as caught:
        check.Target(server_url, "websocket", None)
    assert caught.value.kind == "config"


@pytest.mark.parametrize("kwargs, words", [
    # Named as every module and the role name them (one vocabulary).
    ({"protocol": "mqtt"}, "verify_protocol must be one of websocket, socketio, https"),
    ({"trust": "ca_bundle"}, "agent_trust must be system or ca_file"),
    ({"trust": "ca_file"}, "agent_trust ca_file needs server_ca"),
    ({"trust": "ca_file", "ca_file": "relative/ca.crt"}, "agent_trust ca_file needs server_ca"),
    ({"ca_file": "/etc/ca.crt"}, "server_ca is set but agent_trust is system"),
    ({"timeout": 0}, "verify_timeout must be a positive number"),
    ({"path": "ws"}, "must start with '/'"),
])
def test_arguments_that_cannot_work_are_config_failures(kwargs, words):
    with pytest.raises(CheckError) as caught:
        check.run_agent_check("/nonexistent", "https://127.0.0.1:9", **kwargs)
    assert caught.value.kind == "config"
    assert words in caught.value.message


def test_config_messages_name_role_variables_through_the_role(role_names):
    with pytest.raises(CheckError) as caught:
        check.run_agent_check("/nonexistent", "https://127.0.0.1:9", trust="ca_file")
    assert "mtls_agent_trust ca_file needs mtls_server_ca_src (or mtls_server_ca)" in caught.value.message


# --------------------------------------------------------------------------- HTTP


def test_accept_key_is_the_rfc_6455_example():
    assert wsclient.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_response_with_content_length(pair):
    wire, server = pair
    server.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nnope!extra")
    response = wsclient.read_response(wire)
    assert (response.status, response.reason, response.body) == (403, "Forbidden", b"nope!")
    assert response.header("X-A") == "1, 2"


def test_chunked_response(pair):
    wire, server = pair
    server.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n")
    assert wsclient.read_response(wire).body == b"Wikipedia"


def test_body_until_close(pair):
    wire, server = pair
    server.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n<center>The SSL certificate error</center>")
    server.shutdown(socket.SHUT_WR)
    response = wsclient.read_response(wire)
    assert wsclient.is_front_end_refusal(response)


def test_not_http_is_a_protocol_failure(pair):
    wire, server = pair
    server.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
    with pytest.raises(CheckError) as caught:
        wsclient.read_response(wire)
    assert caught.value.kind == "protocol"


def test_oversized_head_is_refused(pair):
    wire, server = pair
    server.sendall(b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * (wsclient.HEAD_LIMIT + 10))
    with pytest.raises(CheckError, match="larger than"):
        wsclient.read_response(wire)


def test_every_read_is_bounded_by_the_deadline():
    client, server = socket.socketpair()
    with client, server:
        wire = wsclient.Wire(client, time.monotonic() + 0.3)
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            while True:  # a peer trickling one byte at a time still meets the deadline
                server.sendall(b"x")
                wire.read_until(b"\r\n\r\n", 1 << 20)
        assert time.monotonic() - started < 5


def test_a_closed_connection_is_told_apart(pair):
    wire, server = pair
    server.sendall(b"HTTP/1.1 101")
    server.close()
    with pytest.raises(wsclient.ConnectionClosed):
        wsclient.read_response(wire)


# --------------------------------------------------------------------------- WebSocket frames


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_client_frames_are_masked_and_read_back(size, pair):
    wire, server = pair
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    frame = wsclient.encode_frame(wsclient.OP_TEXT, payload, mask=b"\x01\x02\x03\x04")
    assert frame[1] & 0x80, "client frames must be masked"
    reader = wsclient.Wire(server, time.monotonic() + 5)
    wire.send(frame)
    assert wsclient.read_frame(reader) == (True, wsclient.OP_TEXT, payload)


def test_fragments_are_joined_and_pings_answered(pair):
    wire, server = pair
    server.sendall(b"\x01\x03abc" + b"\x89\x02hi" + b"\x80\x02de")
    assert wsclient.read_message(wire) == (wsclient.OP_TEXT, b"abcde")
    pong = wsclient.read_frame(wsclient.Wire(server, time.monotonic() + 5))
    assert pong == (True, wsclient.OP_PONG, b"hi")


def test_oversized_frame_is_refused(pair):
    wire, server = pair
    server.sendall(b"\x81\x7f" + struct.pack("!Q", wsclient.FRAME_LIMIT + 1))
    with pytest.raises(CheckError, match="frame of"):
        wsclient.read_frame(wire)


# --------------------------------------------------------------------------- Engine.IO / Socket.IO


def _server_text(server, text):
    data = text.encode()
    server.sendall(bytes([0x81, len(data)]) + data)


def _client_texts(server, count):
    reader = wsclient.Wire(server, time.monotonic() + 5)
    return [wsclient.read_frame(reader)[2].decode() for _ in range(count)]


def test_socketio_connect_answers_a_ping_first(pair):
    wire, server = pair
    _server_text(server, '0{"sid":"eio","pingInterval":25000}')
    _server_text(server, "2")
    _server_text(server, '40{"sid":"abc"}')
    assert wsclient.socketio_connect(wire, "u") == "abc"
    assert _client_texts(server, 2) == ["40", "3"]


@pytest.mark.parametrize("packets, kind, words", [
    (['0{"sid":"e"}', '44{"message":"Connection rejected by server"}'], "refused", "Connection rejected by server"),
    (["hello"], "protocol", "did not open an Engine.IO v4 session"),
    (['0{"sid":"e"}', '40{"nosid":1}'], "protocol", "without a sid"),
    (['0{"sid":"e"}', '42["event"]'], "protocol", "not a Socket.IO CONNECT answer"),
    (["0not json"], "protocol", "malformed"),
])
def test_socketio_answers(pair, packets, kind, words):
    wire, server = pair
    for packet in packets:
        _server_text(server, packet)
    with pytest.raises(CheckError) as caught:
        wsclient.socketio_connect(wire, "u")
    assert caught.value.kind == kind
    assert words in caught.value.message


def _upgrade_answer(pair, answer, endpoint="WebSocket"):
    wire, server = pair
    server.sendall(answer)
    with pytest.raises(CheckError) as caught:
        wsclient.upgrade(wire, "/ws", "h", endpoint, "https://h/ws")
    return caught.value


@pytest.mark.parametrize("status, kind", [
    (403, "refused"), (401, "refused"), (404, "protocol"), (200, "protocol"), (426, "protocol"),
    (502, "http_status"), (503, "http_status"),
])
def test_upgrade_statuses(pair, status, kind):
    error = _upgrade_answer(pair, b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % status)
    assert (error.kind, error.details["status"]) == (kind, status)


def test_upgrade_404_suggests_the_other_protocol(pair):
    error = _upgrade_answer(pair, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    assert "no WebSocket endpoint" in error.message and "try verify_protocol socketio" in error.message


def test_upgrade_answered_with_the_api_key_refusal_is_no_certificate_verdict(pair):
    body = b'{"detail": "Forbidden"}'
    error = _upgrade_answer(pair, b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert error.kind == "protocol" and "not the certificate check" in error.message


def test_upgrade_with_a_wrong_accept_key_is_a_protocol_failure(pair):
    bad = base64.b64encode(b"x" * 20).decode()
    error = _upgrade_answer(pair, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                  b"Sec-WebSocket-Accept: %s\r\n\r\n" % bad.encode())
    assert error.kind == "protocol" and "Sec-WebSocket-Accept" in error.message


def test_nginx_certificate_error_page_is_a_refusal(pair):
    body = b"<html><center><h1>400 Bad Request</h1></center><center>The SSL certificate error</center></html>"
    error = _upgrade_answer(pair, b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert error.kind == "refused" and "TLS front end" in error.message


# --------------------------------------------------------------------------- verdicts without a server


class _Job:
    timeout = 2
    trust = "system"
    ca_file = None

    class target:  # noqa: N801 - a stand-in attribute namespace
        where, host = "gate.example:443", "gate.example"


def _ssl_error(reason):
    error = ssl.SSLError(1, "[SSL: %s] %s" % (reason, reason.lower()))
    error.reason = reason
    return error


@pytest.mark.parametrize("reason, kind", [
    ("SSLV3_ALERT_BAD_CERTIFICATE", "refused"),
    ("TLSV1_ALERT_UNKNOWN_CA", "refused"),
    ("TLSV13_ALERT_CERTIFICATE_REQUIRED", "refused"),
    ("SSLV3_ALERT_CERTIFICATE_EXPIRED", "refused"),
    ("TLSV1_ALERT_PROTOCOL_VERSION", "tls_protocol"),
    ("WRONG_VERSION_NUMBER", "tls_protocol"),
    ("SSLV3_ALERT_HANDSHAKE_FAILURE", "tls_protocol"),
])
def test_tls_alerts(reason, kind):
    assert verdicts.network_error(_Job, _ssl_error(reason), "in the TLS handshake", None).kind == kind


@pytest.mark.parametrize("exc, kind, words", [
    (TimeoutError("x"), "timeout", "within 2 s"),
    (ConnectionRefusedError(111, "Connection refused"), "connection", "refused the connection"),
    (socket.gaierror(-2, "Name or service not known"), "connection", "cannot resolve"),
    (wsclient.ConnectionClosed(), "connection", "closed the connection without answering"),
    (ssl.SSLEOFError(8, "EOF"), "connection", "closed the connection without answering"),
    (ConnectionResetError(104, "Connection reset by peer"), "connection", "reset"),
])
def test_network_errors(exc, kind, words):
    error = verdicts.network_error(_Job, exc, "in the exchange", None)
    assert (error.kind, words in error.message) == (kind, True), error.message
