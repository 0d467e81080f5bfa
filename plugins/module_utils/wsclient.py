# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent check's wire protocols over one established TLS connection, bounded by one deadline.

- an HTTP/1.1 request and its answer (status, headers, at most ``BODY_LIMIT`` bytes of body);
- the RFC 6455 WebSocket client upgrade (accepted only on ``101`` with the right
  ``Sec-WebSocket-Accept``) and the frames a client needs (masked text/close/pong);
- the Engine.IO v4 + Socket.IO CONNECT exchange the stock agent (python-socketio over the
  websocket transport) performs: open packet ``0{...}``, ``40`` -> ``40{"sid"}`` or ``44{...}``.

Each exchange returns what it saw or raises ``CheckError`` with the verdict on the answer
(``refused``, ``protocol``, ``http_status``). TLS errors, timeouts and a closed connection
propagate (``ssl.SSLError``, ``socket.timeout``, ``ConnectionClosed``): ``check.py`` classifies
them. Every read is bounded by the deadline, so a server trickling bytes cannot hold the check.
Standard library only; Python 3.9+.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import time

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import names
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import CheckError

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HEAD_LIMIT = 16 * 1024
BODY_LIMIT = 64 * 1024
FRAME_LIMIT = 1024 * 1024
CLOSE_WAIT = 1.0  # seconds granted to the server's close frame; never turns a verdict
MAX_FRAMES = 32  # frames read while waiting for one answer
USER_AGENT = "fleet-mtls-check/2.0"
NGINX_CERT_ERROR = b"The SSL certificate error"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class ConnectionClosed(Exception):
    """The server closed the connection before the answer was complete."""


class Response:
    def __init__(self, status, reason, headers, body=b""):
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case name -> value (repeats joined with ", ")
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower(), "")

    def snippet(self, limit=200):
        """The start of the body as text, for a message (a server's reason, never our data)."""
        text = " ".join(self.body[:limit].decode("utf-8", "replace").split())
        return text + ("..." if len(self.body) > limit else "")


class Wire:
    """A connected (TLS) socket whose every operation must finish before ``deadline``
    (a ``time.monotonic()`` value)."""

    def __init__(self, sock, deadline):
        self.sock = sock
        self.deadline = deadline
        self.buffer = b""

    def _arm(self, cap=None):
        remaining = self.deadline - time.monotonic()
        if cap is not None:
            remaining = min(remaining, cap)
        if remaining <= 0:
            raise socket.timeout("deadline")
        self.sock.settimeout(remaining)

    def send(self, data):
        self._arm()
        self.sock.sendall(data)

    def _fill(self, cap=None):
        self._arm(cap)
        chunk = self.sock.recv(16384)
        if not chunk:
            raise ConnectionClosed()
        self.buffer += chunk

    def read_until(self, marker, limit):
        while marker not in self.buffer:
            if len(self.buffer) > limit:
                raise CheckError("protocol", "the answer's header is larger than %d bytes" % limit)
            self._fill()
        head, self.buffer = self.buffer.split(marker, 1)
        return head

    def read_exact(self, count, cap=None):
        while len(self.buffer) < count:
            self._fill(cap)
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def read_available(self, limit):
        """Bytes until the server closes or ``limit``; what arrived when it closed is kept."""
        try:
            while len(self.buffer) < limit:
                self._fill()
        except ConnectionClosed:
            pass
        data, self.buffer = self.buffer[:limit], b""
        return data


def exchange(protocol, wire, target, host_header, url, status_code=(200,)):
    """The exchange of ``protocol`` on a connected wire: ``{"status", "sid"}`` when accepted."""
    if protocol == "https":
        return {"status": https_get(wire, target, host_header, url, status_code).status, "sid": ""}
    if protocol == "socketio":
        upgrade(wire, target, host_header, "Socket.IO", url)
        sid = socketio_connect(wire, url)
    else:
        upgrade(wire, target, host_header, "WebSocket", url)
        sid = ""
    close(wire)
    return {"status": 101, "sid": sid}


# --------------------------------------------------------------------------- HTTP/1.1


def send_request(wire, method, target, host_header, headers=()):
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: " + host_header, "User-Agent: " + USER_AGENT]
    lines.extend("%s: %s" % item for item in headers)
    wire.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


def parse_head(head):
    """``Response`` (no body) from the bytes before the blank line. Raises CheckError."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise CheckError("protocol", "the server did not answer HTTP/1.1 (status line %r)" % lines[0][:80])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            name = name.strip().lower()
            headers[name] = (headers[name] + ", " if name in headers else "") + value.strip()
    return Response(int(parts[1]), parts[2] if len(parts) > 2 else "", headers)


def read_response(wire):
    response = parse_head(wire.read_until(b"\r\n\r\n", HEAD_LIMIT))
    if response.status not in (101, 204, 304):
        response.body = _read_body(wire, response)
    return response


def _read_body(wire, response):
    try:
        if "chunked" in response.header("transfer-encoding").lower():
            return _read_chunked(wire)
        length = response.header("content-length")
        if length.isdigit():
            return wire.read_exact(min(int(length), BODY_LIMIT))
        return wire.read_available(BODY_LIMIT)
    except (ConnectionClosed, ValueError, socket.timeout):
        return wire.buffer  # the verdict rests on the status: a short body is no failure


def _read_chunked(wire):
    body = b""
    while len(body) < BODY_LIMIT:
        size = int(wire.read_until(b"\r\n", 1024).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            break
        body += wire.read_exact(size)
        wire.read_exact(2)
    return body[:BODY_LIMIT]


def https_get(wire, target, host_header, url, status_code):
    """One GET; the ``Response`` when its status is one of ``status_code``."""
    send_request(wire, "GET", target, host_header, (("Accept", "*/*"), ("Connection", "close")))
    response = read_response(wire)
    if is_front_end_refusal(response):
        raise front_end_refusal(url)
    if response.status in status_code:
        return response
    expected = ", ".join(str(code) for code in status_code)
    if response.status in (401, 403):
        raise CheckError("http_status", (
            "HTTP %d from %s (expected %s) is an HTTP status of that URL, not a certificate verdict: the "
            "real cloud answers every plain route %d without its API key, whatever certificate is presented "
            "(%s); to prove the certificate, set %s websocket or socketio"
        ) % (response.status, url, expected, response.status, response.snippet() or "no body",
             names.setting("verify_protocol")), status=response.status)
    raise CheckError("http_status", "unexpected HTTP status %d %s from %s; expected %s (%s)" % (
        response.status, response.reason, url, expected, response.snippet() or "no body"), status=response.status)


def is_front_end_refusal(response):
    """nginx's answer to a client certificate it refuses (expired, not yet valid, wrong purpose)
    under ``ssl_verify_client optional_no_ca``: ``400`` with "The SSL certificate error"."""
    return response.status == 400 and NGINX_CERT_ERROR in response.body


# --------------------------------------------------------------------------- WebSocket


def accept_key(key):
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455, 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + WS_GUID).digest()).decode("ascii")  # noqa: S324


def encode_frame(opcode, payload, mask=None):
    """One final, masked client frame (clients must mask, RFC 6455 5.3)."""
    mask = mask if mask is not None else os.urandom(4)
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frame(wire, cap=None):
    """``(fin, opcode, payload)`` of the next frame (unmasked if the server masked it)."""
    first, second = wire.read_exact(2, cap)
    size = second & 0x7F
    if size == 126:
        size = struct.unpack("!H", wire.read_exact(2, cap))[0]
    elif size == 127:
        size = struct.unpack("!Q", wire.read_exact(8, cap))[0]
    if size > FRAME_LIMIT:
        raise CheckError("protocol", "the server sent a WebSocket frame of %d bytes" % size)
    mask = wire.read_exact(4, cap) if second & 0x80 else None
    payload = wire.read_exact(size, cap)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bool(first & 0x80), first & 0x0F, payload


def read_message(wire, cap=None):
    """``(opcode, payload)`` of the next data or close message; pings are answered, fragments
    joined."""
    opcode, parts = None, []
    for _count in range(MAX_FRAMES):
        fin, op, payload = read_frame(wire, cap)
        if op == OP_PING:
            wire.send(encode_frame(OP_PONG, payload))
            continue
        if op == OP_PONG:
            continue
        if op == OP_CLOSE:
            return op, payload
        opcode = op if op != OP_CONT else opcode
        parts.append(payload)
        if fin:
            return opcode, b"".join(parts)
    raise CheckError("protocol", "the server sent %d WebSocket frames without a complete message" % MAX_FRAMES)


def close_code(payload):
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


def upgrade(wire, target, host_header, endpoint, url):
    """Send the RFC 6455 upgrade of ``target`` and judge the answer; return the ``Response``
    when the server switched protocols with the right accept key. ``endpoint`` names the
    service for messages ("WebSocket" or "Socket.IO")."""
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    send_request(wire, "GET", target, host_header, (
        ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13"),
    ))
    response = read_response(wire)
    if response.status != 101:
        raise upgrade_verdict(response, endpoint, url)
    expected = accept_key(key)
    if response.header("sec-websocket-accept") != expected:
        raise CheckError("protocol", (
            "%s answered 101 to the upgrade but with Sec-WebSocket-Accept %r instead of %r: not a "
            "WebSocket server (or a proxy that breaks the handshake)"
        ) % (url, response.header("sec-websocket-accept")[:60], expected), status=101)
    if response.header("upgrade").lower() != "websocket" or "upgrade" not in response.header("connection").lower():
        raise CheckError("protocol", "%s answered 101 without 'Upgrade: websocket' / 'Connection: Upgrade'" % url,
                         status=101)
    return response


def upgrade_verdict(response, endpoint, url):
    """The ``CheckError`` for an upgrade answered other than 101."""
    status = response.status
    other = "socketio" if endpoint == "WebSocket" else "websocket"
    if status in (401, 403) and _api_refusal(response):
        text = (
            "%s answered the %s upgrade with HTTP %d %s: that is the API refusing a request without its API "
            "key, not the certificate check, so the server has no %s endpoint there (the cloud checks "
            "certificates on /ws and /socket.io/); check the URL, or try %s %s"
        ) % (url, endpoint, status, response.snippet(), endpoint, names.setting("verify_protocol"), other)
        return CheckError("protocol", text, status=status)
    if status in (401, 403):
        return CheckError("refused", (
            "refused by server: %s answered HTTP %d to the %s upgrade, where the server checks the "
            "client certificate: the certificate presented is not the one registered for its agent ID "
            "(rotated out, never uploaded, or the ID was deleted)"
        ) % (url, status, endpoint), status=status)
    if is_front_end_refusal(response):
        return front_end_refusal(url)
    if status >= 500:
        return CheckError("http_status", "%s answered HTTP %d %s to the %s upgrade: the service behind the "
                          "TLS front end failed (%s)" % (url, status, response.reason, endpoint, response.snippet()),
                          status=status)
    return CheckError("protocol", (
        "%s answered HTTP %d %s to the %s upgrade: the server has no %s endpoint there (%s); "
        "check the URL, or try %s %s"
    ) % (url, status, response.reason, endpoint, endpoint, response.snippet() or "no body",
         names.setting("verify_protocol"), other), status=status)


def _api_refusal(response):
    """FastAPI's ``{"detail": ...}`` body: the API-key middleware's 403, which the cloud answers
    on every route but its two certificate-checking endpoints (their refusal has no body)."""
    try:
        return "detail" in json.loads(response.body.decode("utf-8"))
    except (ValueError, TypeError):
        return False


def front_end_refusal(url):
    return CheckError("refused", (
        "refused by server: the TLS front end of %s refused the client certificate (nginx: 400 The SSL "
        "certificate error): it is expired or not yet valid by the server's clock, or not usable for client "
        "authentication (extendedKeyUsage clientAuth, keyUsage digitalSignature)"
    ) % url, status=400)


def close(wire):
    """Send a normal close and give the server ``CLOSE_WAIT`` seconds to answer it."""
    wire.send(encode_frame(OP_CLOSE, struct.pack("!H", 1000)))
    try:
        for _count in range(MAX_FRAMES):
            if read_frame(wire, CLOSE_WAIT)[1] == OP_CLOSE:
                return True
    except (OSError, ConnectionClosed, CheckError):
        pass
    return False


# --------------------------------------------------------------------------- Engine.IO / Socket.IO


def socketio_connect(wire, url):
    """After the upgrade: read the Engine.IO open packet, send CONNECT (``40``) to the default
    namespace, answer pings, and return the Socket.IO ``sid`` of ``40{...}``. ``44{...}`` is
    ``refused`` with the server's message."""
    text = _engineio_text(wire, url, "the Engine.IO open packet")
    if not text.startswith("0"):
        raise CheckError("protocol", "%s did not open an Engine.IO v4 session (first packet %r)" % (url, text[:60]))
    _json_object(text[1:], url, "Engine.IO open packet")
    wire.send(encode_frame(OP_TEXT, b"40"))
    for _count in range(MAX_FRAMES):
        text = _engineio_text(wire, url, "the answer to CONNECT")
        if text == "2":  # Engine.IO ping: the agent answers pong
            wire.send(encode_frame(OP_TEXT, b"3"))
        elif text.startswith("40"):
            sid = _json_object(text[2:], url, "CONNECT answer").get("sid")
            if not isinstance(sid, str) or not sid:
                raise CheckError("protocol", "%s answered CONNECT without a sid (%r)" % (url, text[:80]))
            return sid
        elif text.startswith("44"):
            message = _json_object(text[2:] or "{}", url, "CONNECT_ERROR").get("message", "")
            raise CheckError("refused", (
                "refused by server: %s rejected the Socket.IO CONNECT (44: %r), where the server checks the "
                "client certificate: the certificate presented is not the one registered for its agent ID "
                "(rotated out, never uploaded, or the ID was deleted)"
            ) % (url, str(message)[:200]), status=101)
        elif not text.startswith(("3", "6")):  # pong, noop: wait on
            raise CheckError("protocol", "%s answered CONNECT with %r, not a Socket.IO CONNECT answer"
                             % (url, text[:80]), status=101)
    raise CheckError("protocol", "%s sent %d packets without answering CONNECT" % (url, MAX_FRAMES))


def _engineio_text(wire, url, what):
    opcode, payload = read_message(wire)
    if opcode == OP_CLOSE:
        raise CheckError("protocol", "%s closed the WebSocket (code %s) instead of sending %s"
                         % (url, close_code(payload), what), status=101)
    if opcode != OP_TEXT:
        raise CheckError("protocol", "%s sent a binary frame instead of %s" % (url, what), status=101)
    return payload.decode("utf-8", "replace")


def _json_object(text, url, what):
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise CheckError("protocol", "%s sent a malformed %s (%r)" % (url, what, text[:80]), status=101)
    return value
