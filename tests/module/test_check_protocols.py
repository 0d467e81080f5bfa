"""The agent check's exchanges against real TLS servers on 127.0.0.1 that answer in ways the
reference gate never does: what counts as accepted, refused, or the wrong endpoint, for each
protocol (websocket, socketio, https)."""

from __future__ import annotations

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import check
from tests.fixtures.check_helpers import (
    OPEN,
    accept_for,
    answer,
    engineio,
    expect,
    header,
    status_handler,
    switching,
    ws_accept,
)


def _check(pki, server, **kwargs):
    kwargs.setdefault("trust", "ca_file")
    kwargs.setdefault("ca_file", pki.ca)
    kwargs.setdefault("timeout", 5)
    return check.run_agent_check(pki.client_dir, server.url, **kwargs)


def _expect(kind, pki, server, **kwargs):
    kwargs.setdefault("trust", "ca_file")
    kwargs.setdefault("ca_file", pki.ca)
    kwargs.setdefault("timeout", 5)
    return expect(kind, pki.client_dir, server.url, **kwargs)


# --------------------------------------------------------------------------- websocket


def test_websocket_upgrade_request_is_rfc_6455(pki, edge):
    server = edge(ws_accept, pki.server)
    assert _check(pki, server)["status"] == 101
    head = server.requests[0]
    assert head.startswith(b"GET /ws HTTP/1.1\r\n")
    assert header(head, "Host") == "127.0.0.1:%d" % server.port
    assert header(head, "Upgrade") == "websocket" and header(head, "Connection") == "Upgrade"
    assert header(head, "Sec-WebSocket-Version") == "13" and len(header(head, "Sec-WebSocket-Key")) == 24


def test_websocket_path_can_be_given(pki, edge):
    server = edge(ws_accept, pki.server)
    assert _check(pki, server, path="/agent/ws")["url"].endswith("/agent/ws")
    assert server.requests[0].startswith(b"GET /agent/ws HTTP/1.1")


@pytest.mark.parametrize("status", [403, 401])
def test_websocket_upgrade_refused(pki, edge, status):
    server = edge(status_handler(status), pki.server)
    error = _expect("refused", pki, server)
    assert error.message.startswith("refused by server") and "HTTP %d" % status in error.message
    assert error.details["status"] == status and error.details["tls_version"]


@pytest.mark.parametrize("status", [404, 200])
def test_websocket_upgrade_to_a_non_websocket_endpoint_is_a_protocol_failure(pki, edge, status):
    server = edge(status_handler(status, b"<html>hello</html>"), pki.server)
    error = _expect("protocol", pki, server)
    assert "no WebSocket endpoint" in error.message and "try verify_protocol socketio" in error.message
    assert error.details["status"] == status


def test_websocket_upgrade_server_error_is_an_http_status(pki, edge):
    server = edge(status_handler(502, b"Bad Gateway"), pki.server)
    error = _expect("http_status", pki, server)
    assert "HTTP 502" in error.message and "failed" in error.message


def test_websocket_wrong_accept_key_is_a_protocol_failure(pki, edge):
    def wrong_accept(conn, server):
        server.read_request(conn)
        conn.sendall(switching("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))

    error = _expect("protocol", pki, edge(wrong_accept, pki.server))
    assert "Sec-WebSocket-Accept" in error.message


def test_nginx_certificate_error_page_is_refused(pki, edge):
    page = b"<html><head><title>400 The SSL certificate error</title></head><body></body></html>"
    error = _expect("refused", pki, edge(status_handler(400, page), pki.server))
    assert "TLS front end" in error.message


def test_websocket_accepted_without_a_close_reply_is_still_accepted(pki, edge):
    """The verdict is the 101; a server that drops the connection instead of answering the
    close frame does not turn it into a failure."""
    def no_close(conn, server):
        head = server.read_request(conn)
        conn.sendall(switching(accept_for(head)))

    assert _check(pki, edge(no_close, pki.server))["status"] == 101


# --------------------------------------------------------------------------- socketio


def test_socketio_connect_like_the_stock_agent(pki, edge):
    server = edge(engineio(OPEN, None, b'40{"sid":"sio-7"}'), pki.server)
    result = _check(pki, server, protocol="socketio")
    assert (result["status"], result["sid"]) == (101, "sio-7")
    assert server.requests[0].startswith(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1")
    assert server.frames == [b"40"]


def test_socketio_ping_before_the_connect_answer_is_answered(pki, edge):
    server = edge(engineio(OPEN, None, b"2", None, b'40{"sid":"sio-8"}'), pki.server)
    assert _check(pki, server, protocol="socketio")["sid"] == "sio-8"
    assert server.frames == [b"40", b"3"]


def test_socketio_connect_error_is_refused_with_the_servers_message(pki, edge):
    server = edge(engineio(OPEN, None, b'44{"message":"Connection rejected by server"}'), pki.server)
    error = _expect("refused", pki, server, protocol="socketio")
    assert "Connection rejected by server" in error.message


def test_socketio_on_a_plain_websocket_server_is_a_protocol_failure(pki, edge):
    server = edge(engineio(b"hello, websocket", None), pki.server)
    error = _expect("protocol", pki, server, protocol="socketio")
    assert "did not open an Engine.IO v4 session" in error.message


@pytest.mark.parametrize("status", [404, 200])
def test_socketio_upgrade_to_a_non_socketio_endpoint(pki, edge, status):
    error = _expect("protocol", pki, edge(status_handler(status), pki.server), protocol="socketio")
    assert "no Socket.IO endpoint" in error.message and "try verify_protocol websocket" in error.message


def test_socketio_upgrade_403_is_refused(pki, edge):
    _expect("refused", pki, edge(status_handler(403), pki.server), protocol="socketio")


# --------------------------------------------------------------------------- https


def test_https_get_ok(pki, edge):
    server = edge(status_handler(200, b'{"ok": true}'), pki.server)
    result = _check(pki, server, protocol="https", path="/health")
    assert (result["status"], result["url"]) == (200, server.url + "/health")
    assert server.requests[0].startswith(b"GET /health HTTP/1.1")


@pytest.mark.parametrize("status", [403, 401])
def test_https_403_is_an_http_status_never_a_refusal(pki, edge, status):
    server = edge(status_handler(status, b'{"detail": "Forbidden"}'), pki.server)
    error = _expect("http_status", pki, server, protocol="https")
    assert "is an HTTP status of that URL, not a certificate verdict" in error.message
    assert "set verify_protocol websocket or socketio" in error.message
    assert "refused" not in error.message and "not registered" not in error.message


def test_https_unexpected_status_and_status_code(pki, edge):
    server = edge(status_handler(404, b"nope"), pki.server)
    error = _expect("http_status", pki, server, protocol="https")
    assert error.message.startswith("unexpected HTTP status 404")
    assert _check(pki, server, protocol="https", status_code=(200, 404))["status"] == 404


def test_https_chunked_answer_without_length(pki, edge):
    def chunked(conn, server):
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")

    assert _check(pki, edge(chunked, pki.server), protocol="https")["status"] == 200


def test_https_answer_closed_early_keeps_the_status(pki, edge):
    def short(conn, server):
        server.read_request(conn)
        conn.sendall(answer(200, b"x" * 10)[:-5])

    assert _check(pki, edge(short, pki.server), protocol="https")["status"] == 200
