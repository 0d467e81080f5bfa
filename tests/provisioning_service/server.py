"""Threaded TLS servers driving the werkzeug apps.

The listening sockets stay plain TCP; each accepted connection is wrapped (and its TLS
handshake done) in its own worker thread, so a client that never finishes a handshake cannot
block anybody else. The gate asks its context source for an SSLContext per connection: a new
context, whose trust store holds the currently registered certificates plus the enrollment CA,
is built whenever the registry changed.
"""

from __future__ import annotations

import logging
import pathlib
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from tests.provisioning_service.faults import FaultBook
from tests.provisioning_service.registry import Registry

log = logging.getLogger("provisioning_service")

HANDSHAKE_TIMEOUT = 10.0  # seconds a client gets to complete the TLS handshake
IDLE_TIMEOUT = 30.0  # seconds a connection may stay silent while a request is read


def server_context(cert_path: pathlib.Path, key_path: pathlib.Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_path), str(key_path))
    return ctx


class GateContexts:
    """Callable returning the gate's SSLContext for the registry's current version."""

    def __init__(
        self,
        registry: Registry,
        enroll_ca_pem: str,
        cert_path: pathlib.Path,
        key_path: pathlib.Path,
    ) -> None:
        self._registry = registry
        self._enroll_ca_pem = enroll_ca_pem
        self._cert_path = cert_path
        self._key_path = key_path
        self._lock = threading.Lock()
        self._version = -1
        self._ctx: ssl.SSLContext | None = None

    def __call__(self) -> ssl.SSLContext:
        ctx = self._ctx
        if ctx is not None and self._version == self._registry.version:
            return ctx
        with self._lock:
            version, pems = self._registry.trusted_pems()
            if self._ctx is None or version != self._version:
                self._ctx = self._build(pems)
                self._version = version
            return self._ctx

    def _build(self, pems: list[str]) -> ssl.SSLContext:
        ctx = server_context(self._cert_path, self._key_path)
        ctx.verify_mode = ssl.CERT_REQUIRED
        # A registered leaf (CA:FALSE, no keyCertSign) is itself the trust anchor.
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        bundle = [self._enroll_ca_pem]
        for pem in pems:
            try:
                cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
            except ValueError:
                continue
            bundle.append(cert.public_bytes(serialization.Encoding.PEM).decode("ascii"))
        ctx.load_verify_locations(cadata="".join(bundle))
        log.info("gate trust store rebuilt: %d registered certificate(s)", len(bundle) - 1)
        return ctx


class _Handler(WSGIRequestHandler):
    timeout = IDLE_TIMEOUT

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
