"""The gate app behind nginx (``nginx.py``): the real cloud's api-service, as far as agents see it.

nginx let any client certificate through TLS and forwards it URL-escaped in
``X-SSL-Client-Cert``. The certificate is judged in two places only, as in the real cloud:

- ``/ws``: a WebSocket upgrade (RFC 6455, through simple-websocket/wsproto): ``101`` when
  accepted, HTTP ``403`` when refused; a plain GET is ``404`` (it is a WebSocket route).
- ``/socket.io/``: python-socketio (Engine.IO v4, polling and websocket transports); its
  ``connect`` handler refuses with ``44{"message":"Connection rejected by server"}``.

The rule (``judge``): no certificate presented: accepted (the real cloud's "development
mode"); otherwise accepted only when the presented PEM is exactly the current registered PEM
of its CN (an enrolled certificate is recorded as its ID's current one) and the ID is not
decommissioned. Every decision is logged (ID, fingerprint, reason; never key material).

``/whoami`` is a reference-only diagnostic: ``200 {"id"}`` for an accepted certificate, 403
otherwise (also without a certificate). Every other path answers ``403 {"detail": "Forbidden"}``
without ``Authorization: Bearer <token>``, as the real cloud's middleware does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from werkzeug.wrappers import Request, Response

from tests.provisioning_service.app import BaseApp, json_response
from tests.provisioning_service.validation import Refusal

log = logging.getLogger("provisioning_service")

CERT_HEADER = "HTTP_X_SSL_CLIENT_CERT"
WS_RECEIVE_SECONDS = 1.0  # an open /ws connection re-checks this often whether the service stops


@dataclasses.dataclass(frozen=True)
class Verdict:
    accepted: bool
    agent_id: str | None
    reason: str
    fingerprint: str = ""


def detail(status: int, text: str) -> Response:
    """A FastAPI-style error, as the real cloud answers."""
    return json_response(status, {"detail": text})


def _presented(header: str) -> tuple[x509.Certificate, str] | None:
    pem = unquote(header).strip()
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii")), pem
    except (ValueError, UnicodeEncodeError):
        return None


class GateApp(BaseApp):
    rules = (
        ("/ws", "websocket", ("GET",)),
        ("/socket.io/", "socketio", ("GET", "POST")),
        ("/whoami", "whoami", ("GET",)),
        ("/healthz", "healthz", ("GET",)),
    )

    def __init__(self, **common: Any) -> None:
        super().__init__(**common)
        self._methods = {path: methods for path, _, methods in self.rules}
        self._sio: Any = None
        self._sio_lock = threading.Lock()

    # -- the acceptance rule ---------------------------------------------------------------
    def judge(self, environ: dict[str, Any]) -> Verdict:
        header = environ.get(CERT_HEADER)
        if not header:
            return Verdict(True, None, "no client certificate (development mode)")
        parsed = _presented(header)
        if parsed is None:
            return Verdict(False, None, "the presented certificate cannot be parsed")
        cert, pem = parsed
        digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
        cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        cn = cns[0].value if len(cns) == 1 and isinstance(cns[0].value, str) else None
        if cn is None:
            return Verdict(False, None, "the certificate has no single CN", digest)
        rec = self.registry.lookup(cn)
        if rec is not None and rec.deleted_at is not None:
            return Verdict(False, cn, "the ID was decommissioned", digest)
        current = self.registry.current(cn)
        if current is None:
            return Verdict(False, cn, "no certificate is registered for this CN", digest)
        if current.pem.strip() != pem:
            return Verdict(False, cn, "not the certificate registered for this CN", digest)
        return Verdict(True, cn, "the registered certificate", digest)

    def decide(self, environ: dict[str, Any], where: str) -> Verdict:
        verdict = self.judge(environ)
        log.info(
            "gate %s: %s %s (%s%s)",
            where,
            "accepted" if verdict.accepted else "refused",
            verdict.agent_id or "-",
            verdict.reason,
            f", sha256 {verdict.fingerprint[:16]}" if verdict.fingerprint else "",
        )
        return verdict

    # -- routing: the real cloud's middleware, then the routes ------------------------------
    def route(self, request: Request) -> tuple[str, dict[str, Any]] | Response:
        path = request.path
        if path.startswith("/socket.io/"):
            endpoint = "/socket.io/"
        elif path in ("/ws", "/whoami"):
            endpoint = path
        elif path.startswith(("/ws", "/socket.io")):  # the middleware lets these through
            return detail(404, "Not Found")
        elif not self.bearer_ok(request):
            return detail(403, "Forbidden")
        elif path == "/healthz":
            endpoint = path
        else:
            return detail(404, "Not Found")
        if request.method not in self._methods[endpoint]:
            return detail(405, "Method Not Allowed")
        return endpoint, {}

    # -- endpoints ------------------------------------------------------------------------
    def whoami(self, request: Request) -> Response:
        if not request.environ.get(CERT_HEADER):
            raise Refusal(403, "a client certificate is required")
        verdict = self.decide(request.environ, "/whoami")
        if not verdict.accepted:
            raise Refusal(403, f"{verdict.reason} ({verdict.agent_id or 'no CN'})")
        return json_response(200, {"id": verdict.agent_id})

    def websocket(self, request: Request) -> Any:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return detail(404, "Not Found")
        if not request.headers.get("Sec-WebSocket-Key") or request.headers.get("Sec-WebSocket-Version") != "13":
            return detail(400, "Bad WebSocket handshake")
        if not self.decide(request.environ, "/ws").accepted:
            return Response(status=403)  # the real endpoint closes before accepting
        return self._websocket_session

    def _websocket_session(self, environ: dict[str, Any], start_response: Any) -> Any:
        import simple_websocket  # only WebSocket clients pay for the import

        ws = simple_websocket.Server(environ)  # writes the 101 with Sec-WebSocket-Accept
        try:
            while ws.connected and not self.stopping.is_set():
                ws.receive(timeout=WS_RECEIVE_SECONDS)  # messages are read and dropped
        except simple_websocket.ConnectionClosed:
            pass
        finally:
            if ws.connected:
                ws.close()
        raise ConnectionAbortedError("WebSocket session over")  # werkzeug: write no response

    def socketio(self, request: Request) -> Any:
        return self._socketio_server().handle_request

    def _socketio_server(self) -> Any:
        """python-socketio's server, built on first use (importing it costs about 0.3 s)."""
        with self._sio_lock:
            if self._sio is None:
                import socketio

                sio = socketio.Server(
                    async_mode="threading", cors_allowed_origins="*", logger=False, engineio_logger=False
                )
                sio.on("connect", lambda sid, environ, auth=None: self.decide(environ, "/socket.io/").accepted)
                self._sio = sio
            return self._sio
