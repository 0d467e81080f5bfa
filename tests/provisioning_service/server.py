"""Threaded servers driving the werkzeug apps: the API's TLS listener, the gate app's unix socket.

The API's listening socket stays plain TCP; each accepted connection is wrapped (and its TLS
handshake done) in its own worker thread, so a client that never finishes a handshake cannot
block anybody else. The gate's TLS is nginx's (``nginx.py``); its app speaks plain HTTP on a
unix socket in the state directory.
"""

from __future__ import annotations

import logging
import pathlib
import socket
import ssl
from collections.abc import Callable
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from tests.provisioning_service.faults import FaultBook

log = logging.getLogger("provisioning_service")

HANDSHAKE_TIMEOUT = 10.0  # seconds a client gets to complete the TLS handshake
IDLE_TIMEOUT = 30.0  # seconds a connection may stay silent while a request is read


def server_context(cert_path: pathlib.Path, key_path: pathlib.Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_path), str(key_path))
    return ctx


class _Handler(WSGIRequestHandler):
    timeout = IDLE_TIMEOUT

    def address_string(self) -> str:  # behind nginx: the client nginx names
        forwarded = self.headers.get("X-Forwarded-For") if getattr(self, "headers", None) else None
        return forwarded or super().address_string()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        line = getattr(self, "requestline", "")
        printable = "".join(ch if ch.isprintable() else "?" for ch in line[:200])
        self.log("info", '%s "%s" %s', self.server.listener_name, printable, code)


class TLSWSGIServer(ThreadedWSGIServer):
    def __init__(
        self,
        host: str,
        port: int,
        app: Any,
        name: str,
        contexts: Callable[[], ssl.SSLContext],
        faults: FaultBook,
    ) -> None:
        super().__init__(host, port, app, handler=_Handler)
        self.listener_name = name
        self.contexts = contexts
        self.faults = faults
        self.ssl_context = contexts()  # also tells werkzeug the scheme is https

    def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
        try:
            request.settimeout(HANDSHAKE_TIMEOUT)
            tls = self.contexts().wrap_socket(request, server_side=True)
        except (OSError, ValueError) as exc:
            self.faults.count_handshake_failure(self.listener_name)
            log.info(
                "%s: TLS handshake with %s failed: %s",
                self.listener_name,
                client_address[0] if client_address else "?",
                getattr(exc, "reason", None) or exc,
            )
            try:
                request.close()
            except OSError:
                pass
            return
        super().process_request_thread(tls, client_address)


class UnixWSGIServer(ThreadedWSGIServer):
    """Plain HTTP on a unix socket: the gate app's upstream listener, which only nginx uses."""

    def __init__(self, path: str, app: Any, name: str) -> None:
        super().__init__("unix://" + path, 0, app, handler=_Handler)
        self.listener_name = name
