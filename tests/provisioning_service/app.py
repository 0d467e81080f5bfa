"""The API listener's WSGI application (werkzeug), and the base both listeners' apps share
(routing, request counters, fault injection, error mapping; the gate's app is in ``gate.py``).

Request bodies are never logged. A body carrying any ``PRIVATE KEY`` block is refused with 400
before it is parsed, so nothing of it reaches the registry, a temp file or a log line.
"""

from __future__ import annotations

import datetime
import hmac
import io
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from werkzeug.exceptions import (
    HTTPException,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
)
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from tests.provisioning_service import MAX_BODY
from tests.provisioning_service.faults import HOSTILE_PRESETS, FaultBook, FaultSpecError
from tests.provisioning_service.pki import ServicePKI
from tests.provisioning_service.registry import Registry
from tests.provisioning_service.validation import (
    Refusal,
    canonical_pem,
    check_id_format,
    contains_private_key,
    fingerprint,
    validate_certificate,
    validate_csr,
)

log = logging.getLogger("provisioning_service")


class ServiceRequest(Request):
    """Bounded bodies; multipart files always in memory (never spooled to a temp file)."""

    max_content_length = MAX_BODY
    max_form_memory_size = MAX_BODY
    max_form_parts = 50

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


def iso_utc(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return Response(body, status=status, headers=headers, content_type="application/json; charset=utf-8")


def error(status: int, message: str) -> Response:
    return json_response(status, {"statusCode": status, "message": message})


def ok(data: dict[str, Any]) -> Response:
    return json_response(200, {"statusCode": 200, "data": data})


class BaseApp:
    """Routing, request counting, fault injection and error mapping shared by both listeners."""

    rules: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (rule, handler name, methods)

    def __init__(
        self,
        *,
        registry: Registry,
        pki: ServicePKI,
        faults: FaultBook,
        token: str,
        stopping: threading.Event,
    ) -> None:
        self.registry = registry
        self.pki = pki
        self.faults = faults
        self.token = token
        self.stopping = stopping
        self.url_map = Map(
            [Rule(path, endpoint=path, methods=list(methods)) for path, _, methods in self.rules],
            strict_slashes=False,
        )
        self.handlers = {path: getattr(self, name) for path, name, _ in self.rules}

    # -- WSGI entry -----------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = ServiceRequest(environ)
        routed = self.route(request)
        response = routed if isinstance(routed, Response) else self.dispatch(request, *routed)
        return response(environ, start_response)  # a Response, or a WSGI app taking over

    def route(self, request: Request) -> tuple[str, dict[str, Any]] | Response:
        """(endpoint, arguments) of the request, or the answer when nothing matches."""
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            return adapter.match()
        except NotFound:
            return error(404, "no such endpoint")
        except MethodNotAllowed as exc:
            response = error(405, "method not allowed")
            response.headers["Allow"] = ", ".join(exc.valid_methods or [])
            return response
        except HTTPException as exc:  # e.g. a redirect for a trailing slash
            return exc.get_response(request.environ)

    def dispatch(self, request: Request, endpoint: str, args: dict[str, Any]) -> Response:
        handler = self.handlers[endpoint]

        def real() -> Response:
            if self.stopping.is_set():  # e.g. a hang fault that outlived the service
                return error(503, "the service is stopping")
            return self.call(handler, request, args)

        if endpoint == "/_faults":
            return real()
        self.faults.count_request(endpoint)
        fault = self.faults.take(endpoint)
        if fault is None:
            return real()
        log.info("fault %s fires on %s", fault["kind"], endpoint)
        return self.apply_fault(fault, request, real)

    @staticmethod
    def call(handler: Callable[..., Response], request: Request, args: dict[str, Any]) -> Response:
        try:
            return handler(request, **args)
        except Refusal as exc:
            return error(exc.status, exc.message)
        except RequestEntityTooLarge:
            return error(413, f"request body larger than {MAX_BODY} bytes")
        except HTTPException as exc:
            return error(exc.code or 400, exc.description or exc.name)
        except Exception:
            log.exception("internal error in %s", getattr(handler, "__name__", handler))
            return error(500, "internal error")

    # -- helpers --------------------------------------------------------------------------
    def bearer_ok(self, request: Request) -> bool:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8", "surrogateescape"), self.token.encode("utf-8")
        )

    def require_token(self, request: Request) -> None:
        if not self.bearer_ok(request):
            raise Refusal(403, "missing or wrong bearer token")

    @staticmethod
    def body(request: Request) -> bytes:
        """The raw body (at most MAX_BODY bytes), refused when it carries a private key."""
        data = request.get_data(cache=True, parse_form_data=False)
        if contains_private_key(data):
            raise Refusal(
                400,
                "the request contains a private key: it was discarded, send only the public part",
            )
        return data

    def reservation_payload(self, agent_id: Any, expires_at: float | None = None) -> dict[str, Any]:
        expires_at = time.time() + self.registry.ttl if expires_at is None else expires_at
        data = {"expiresAt": iso_utc(expires_at), "expiresIn": round(self.registry.ttl)}
        if agent_id is not None:
            data = {"id": agent_id, **data}
        return {"statusCode": 200, "data": data}

    # -- faults ---------------------------------------------------------------------------
    def apply_fault(self, fault: dict[str, Any], request: Request, real: Callable[[], Response]) -> Response:
        kind = fault["kind"]
        if kind == "status":
            code = fault["status"]
            response = error(code, fault.get("message") or f"injected fault: HTTP {code}")
            if fault.get("retry_after") is not None:
                response.headers["Retry-After"] = str(fault["retry_after"])
            return response
        if kind == "hang":
            self.stopping.wait(fault["seconds"])
            return real()
        if kind in ("stall", "drop"):
            return self._partial(fault, request, real())
        if kind == "malformed":
            body = fault.get("body", '{"statusCode": 200, "data": {"id": ')
            return Response(body.encode("utf-8"), status=200, content_type="application/json")
        if kind == "hostile_id":
            value = fault["value"] if "value" in fault else HOSTILE_PRESETS[fault["preset"]]
            return json_response(200, self.reservation_payload(value))
        if kind == "no_id":
            return json_response(200, self.reservation_payload(None))
        if kind == "oversized":
            return self._oversized(fault["size"], fault["length"])
        if kind == "accept_then_garble":
            response = real()
            return Response(
                b'\x00\xffgarbled <html>{"statusCode": 2',
                status=response.status_code,
                content_type="application/json",
            )
        if kind == "fixed_id":
            return self.call(self.generate_id, request, {"fixed": fault["value"]})
        raise AssertionError(f"unhandled fault kind {kind}")

    def _partial(self, fault: dict[str, Any], request: Request, response: Response) -> Response:
        body = response.get_data()
        cut = max(0, min(len(body), int(fault.get("partial", len(body) // 2))))
        stopping = self.stopping
        sock = request.environ.get("werkzeug.socket")

        def stall() -> Any:
            yield body[:cut]
            stopping.wait(fault["seconds"])
            yield body[cut:]

        def drop() -> Any:
            yield body[:cut]
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            raise ConnectionAbortedError("fault: connection dropped mid-response")

        out = Response(
            stall() if fault["kind"] == "stall" else drop(),
            status=response.status_code,
            direct_passthrough=True,
        )
        for key, value in response.headers.items():
            if key.lower() != "content-length":
                out.headers[key] = value
        out.headers["Content-Length"] = str(len(body))
        return out

    @staticmethod
    def _oversized(size: int, with_length: bool) -> Response:
        head = b'{"statusCode": 200, "data": {"id": "0A1B2C3D", "padding": "'
        tail = b'"}}'
        pad = max(0, size - len(head) - len(tail))
        if with_length:
            return Response(head + b"A" * pad + tail, status=200, content_type="application/json")

        def chunks() -> Any:
            yield head
            left = pad
            while left > 0:
                n = min(left, 65536)
                yield b"A" * n
                left -= n
            yield tail

        return Response(chunks(), status=200, content_type="application/json", direct_passthrough=True)

    # -- endpoints common to both listeners ------------------------------------------------
    def healthz(self, request: Request) -> Response:
        return ok({"status": "ok"})

    def generate_id(self, request: Request, fixed: str | None = None) -> Response:  # only on the API
        raise NotImplementedError


def _loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:
        return False


class ApiApp(BaseApp):
    rules = (
        ("/generate-orchestrator-id", "generate_id", ("GET",)),
        ("/upload-orchestrator-certificate", "upload", ("POST",)),
        ("/agent/certificate", "agent_certificate", ("POST",)),
        ("/orchestrators/enroll", "enroll", ("POST",)),
        ("/orchestrators/<id>", "delete", ("DELETE",)),
        ("/healthz", "healthz", ("GET",)),
        ("/_faults", "faults_control", ("GET", "POST", "DELETE")),
    )

    def generate_id(self, request: Request, fixed: str | None = None) -> Response:
        if fixed is not None:
            check_id_format(fixed)
        rec = self.registry.reserve(fixed)
        return json_response(200, self.reservation_payload(rec.id, rec.expires_at))

    def _register(self, agent_id: Any, certificate: bytes | str, source: str) -> str:
        agent_id = check_id_format(agent_id)
        self.registry.check_usable(agent_id)
        cert, text = validate_certificate(certificate, agent_id, datetime.datetime.now(datetime.UTC))
        self.registry.register(agent_id, text, fingerprint(cert), cert.not_valid_after_utc.timestamp(), source)
        log.info("registered certificate %s for %s (%s)", fingerprint(cert)[:16], agent_id, source)
        return agent_id

    @staticmethod
    def _form_value(request: Request, name: str, required: bool = True) -> bytes | str | None:
        """One value of a multipart field given either as a file part or a plain field."""
        values: list[bytes | str] = [f.read() for f in request.files.getlist(name)]
        values += request.form.getlist(name)
        if not values:
            if required:
                raise Refusal(400, f"missing field {name!r}")
            return None
        if len(values) > 1:
            raise Refusal(400, f"field {name!r} given more than once")
        return values[0]

    def _multipart(self, request: Request) -> None:
        self.body(request)
        if request.mimetype != "multipart/form-data":
            raise Refusal(400, "expected a multipart/form-data body")

    def upload(self, request: Request) -> Response:
        self._multipart(request)
        agent_id = self._form_value(request, "id")
        certificate = self._form_value(request, "certificate")
        if isinstance(agent_id, bytes):
            agent_id = agent_id.decode("ascii", "replace")
        agent_id = self._register(agent_id, certificate, "upload")
        return ok({"message": "Certificate registered successfully", "id": agent_id})

    def agent_certificate(self, request: Request) -> Response:
        """The real cloud's upload (FastAPI): a flat answer and ``{"detail": ...}`` errors."""
        if not self.bearer_ok(request):
            return json_response(403, {"detail": "Forbidden"})
        try:
            raw = self.body(request)
            try:
                payload = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise Refusal(400, "the body is not valid JSON") from None
            if not isinstance(payload, dict):
                raise Refusal(400, "the body must be a JSON object")
            certificate = payload.get("certificate")
            if not isinstance(certificate, str):
                raise Refusal(400, "missing field 'certificate'")
            agent_id = self._register(payload.get("agent_id"), certificate, "agent")
        except Refusal as exc:
            return json_response(exc.status, {"detail": exc.message})
        except RequestEntityTooLarge:
            return json_response(413, {"detail": f"request body larger than {MAX_BODY} bytes"})
        return json_response(200, {"message": "Certificate uploaded successfully", "agent_id": agent_id})

    def enroll(self, request: Request) -> Response:
        self._multipart(request)
        csr_data = self._form_value(request, "csr")
        agent_id = self._form_value(request, "id", required=False)
        if agent_id is not None:
            if isinstance(agent_id, bytes):
                agent_id = agent_id.decode("ascii", "replace")
            agent_id = check_id_format(agent_id)
        csr, agent_id = validate_csr(csr_data, agent_id)
        self.registry.check_usable(agent_id)
        cert = self.pki.issue_enrolled(csr, agent_id)
        pem = canonical_pem(cert)
        self.registry.record_enrollment(
            agent_id,
            cert.serial_number,
            pem,
            fingerprint(cert),
            cert.not_valid_after_utc.timestamp(),
        )
        log.info("enrolled %s: issued %s", agent_id, fingerprint(cert)[:16])
        return ok({"certificate": pem, "id": agent_id, "message": "Certificate issued"})

    def delete(self, request: Request, id: str) -> Response:
        self.require_token(request)
        agent_id = check_id_format(id)
        self.registry.delete(agent_id)
        log.info("decommissioned %s", agent_id)
        return ok({"id": agent_id, "message": "Orchestrator decommissioned"})

    def faults_control(self, request: Request) -> Response:
        if not _loopback(request.remote_addr):
            raise Refusal(403, "fault control is only served to loopback clients")
        if request.method == "GET":
            return ok(self.faults.snapshot())
        self.require_token(request)
        if request.method == "DELETE":
            keep = request.args.get("keep_counters", "").lower() in ("1", "true", "yes")
            self.faults.clear(counters=not keep)
            return ok(self.faults.snapshot())
        try:
            payload = json.loads(request.get_data() or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise Refusal(400, "the body is not valid JSON") from None
        specs = payload if isinstance(payload, list) else [payload]
        added = []
        try:
            for spec in specs:
                added.append(self.faults.add(spec))
        except FaultSpecError as exc:
            raise Refusal(400, str(exc)) from None
        return ok({"added": added, **self.faults.snapshot()})
