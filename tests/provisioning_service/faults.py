"""Fault injection: make the next N requests to an endpoint misbehave, and count it all.

A fault is a dict-like spec::

    {"endpoint": "/generate-orchestrator-id" | "*", "kind": KIND, "count": N, ...params}

``count`` (default 1) is how many requests it affects; ``count: 0`` or ``null`` means until
cleared. ``rate: P`` (0 < P <= 1) makes each matching request fail with probability P (count
then defaults to unlimited). ``"*"`` matches every endpoint except ``/healthz`` and
``/_faults``; endpoint-specific faults are tried before ``"*"`` ones, oldest first.

Kinds and their parameters (see ``--help`` for the CLI syntax):

- ``status``: answer ``status`` (default 500) with a JSON error; ``retry_after`` adds a
  Retry-After header (seconds or HTTP date, as given).
- ``hang``: sleep ``seconds`` (default 30) before handling the request for real.
- ``stall``: handle for real, send the headers and ``partial`` bytes (default: half) of the
  body, sleep ``seconds`` (default 30), then send the rest.
- ``drop``: handle for real, send the headers and ``partial`` bytes (default: half) of the
  body, then close the TCP connection.
- ``malformed``: answer 200 with a body that is not JSON (``body`` overrides it).
- ``hostile_id``: answer 200 in the ``generate-orchestrator-id`` shape with data.id set to a
  ``preset`` (traversal, dn, long, newline, empty, non_ascii) or to ``value``.
- ``no_id``: answer 200 in that shape without data.id.
- ``oversized``: answer 200 with a JSON body of ``size`` bytes (default 2 MiB), with a
  Content-Length header unless ``length`` is false (then chunked).
- ``accept_then_garble``: handle for real (e.g. the upload is stored), answer 200 with an
  unparseable body.
- ``fixed_id``: ``/generate-orchestrator-id`` reserves ``value`` (8 upper-case hex, never
  reserved before) for real and answers it normally.

``/ws`` and ``/socket.io/`` (the gate's WebSocket and Engine.IO endpoints) take only
``status``, ``hang`` and ``malformed``. Hang and stall sleeps end early when the service stops.
"""

from __future__ import annotations

import collections
import json
import random
import threading
from collections.abc import Callable
from typing import Any

KINDS = (
    "status",
    "hang",
    "stall",
    "drop",
    "malformed",
    "hostile_id",
    "no_id",
    "oversized",
    "accept_then_garble",
    "fixed_id",
)
ENDPOINTS = (
    "/generate-orchestrator-id",
    "/upload-orchestrator-certificate",
    "/agent/certificate",
    "/orchestrators/enroll",
    "/orchestrators/<id>",
    "/healthz",
    "/whoami",
    "/ws",
    "/socket.io/",
)
# A WebSocket or Engine.IO exchange has no single answer to cut short or garble: these endpoints
# take only the faults that replace or delay the answer (a wildcard fault of another kind skips them).
UPGRADE_ENDPOINTS = ("/ws", "/socket.io/")
UPGRADE_KINDS = ("status", "hang", "malformed")
WILDCARD = "*"
NOT_WILDCARDED = ("/healthz", "/_faults")

HOSTILE_PRESETS = {
    "traversal": "../../etc/passwd",
    "dn": "A/CN=evil",
    "long": "A" * 10240,
    "newline": "0A1B2C3D\n",
    "empty": "",
    "non_ascii": "0A1B2C3\u00c9",
}

_PARAMS = {
    "status": {"status": int, "retry_after": str, "message": str},
    "hang": {"seconds": float},
    "stall": {"seconds": float, "partial": int},
    "drop": {"partial": int},
    "malformed": {"body": str},
    "hostile_id": {"preset": str, "value": str},
    "no_id": {},
    "oversized": {"size": int, "length": bool},
    "accept_then_garble": {},
    "fixed_id": {"value": str},
}
_COMMON = {"endpoint", "kind", "count", "rate"}


class FaultSpecError(ValueError):
    """A fault description that cannot be used."""


def _coerce(kind: str, key: str, value: Any) -> Any:
    typ = _PARAMS[kind].get(key)
    if typ is None:
        raise FaultSpecError(f"fault kind {kind!r} takes no parameter {key!r}")
    if typ is bool:
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise FaultSpecError(f"{key} must be true or false")
        return bool(value)
    if typ is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise FaultSpecError(f"{key} must be a string")
        return value
    try:
        return typ(value)
    except (TypeError, ValueError):
        raise FaultSpecError(f"{key} must be a number") from None


def normalize(spec: dict[str, Any]) -> dict[str, Any]:
    """Validate a fault spec and fill in defaults."""
    if not isinstance(spec, dict):
        raise FaultSpecError("a fault must be a JSON object")
    endpoint = spec.get("endpoint")
    if endpoint != WILDCARD and endpoint not in ENDPOINTS:
        raise FaultSpecError(f"unknown endpoint {endpoint!r}; one of {', '.join(ENDPOINTS)} or '*'")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise FaultSpecError(f"unknown fault kind {kind!r}; one of {', '.join(KINDS)}")
    if endpoint in UPGRADE_ENDPOINTS and kind not in UPGRADE_KINDS:
        raise FaultSpecError(f"{endpoint} takes only the fault kinds {', '.join(UPGRADE_KINDS)}")
    out: dict[str, Any] = {"endpoint": endpoint, "kind": kind}
    rate = spec.get("rate")
    if rate is not None:
        try:
            rate = float(rate)
        except (TypeError, ValueError):
            raise FaultSpecError("rate must be a number") from None
        if not 0 < rate <= 1:
            raise FaultSpecError("rate must be in (0, 1]")
    out["rate"] = rate
    count = spec.get("count", None if rate is not None else 1)
    if count is not None:
        try:
            count = int(count)
        except (TypeError, ValueError):
            raise FaultSpecError("count must be an integer") from None
        if count < 0:
            raise FaultSpecError("count must be >= 0")
        if count == 0:
            count = None
    out["count"] = count
    for key, value in spec.items():
        if key not in _COMMON:
            out[key] = _coerce(kind, key, value)
    if kind == "status":
        out.setdefault("status", 500)
        if not 100 <= out["status"] <= 599:
            raise FaultSpecError("status must be an HTTP status code")
    elif kind in ("hang", "stall"):
        out.setdefault("seconds", 30.0)
    elif kind == "hostile_id":
        if "value" not in out:
            preset = out.setdefault("preset", "traversal")
            if preset not in HOSTILE_PRESETS:
                raise FaultSpecError(f"unknown preset {preset!r}; one of {', '.join(HOSTILE_PRESETS)}")
    elif kind == "oversized":
        out.setdefault("size", 2 * 1024 * 1024)
        out.setdefault("length", True)
    elif kind == "fixed_id":
        if endpoint != "/generate-orchestrator-id":
            raise FaultSpecError("fixed_id only applies to /generate-orchestrator-id")
        if "value" not in out:
            raise FaultSpecError("fixed_id needs a value")
    return out


_POSITIONAL = {
    "status": "status",
    "hang": "seconds",
    "stall": "seconds",
    "drop": "partial",
    "malformed": "body",
    "oversized": "size",
    "fixed_id": "value",
}


def parse_cli(text: str) -> dict[str, Any]:
    """Parse ``ENDPOINT=KIND[:ARG][:xN][:key=value]...`` or a JSON object into a fault spec."""
    text = text.strip()
    if text.startswith("{"):
        try:
            return normalize(json.loads(text))
        except json.JSONDecodeError as exc:
            raise FaultSpecError(f"invalid JSON fault: {exc}") from None
    endpoint, sep, rest = text.partition("=")
    if not sep or not rest:
        raise FaultSpecError("expected ENDPOINT=KIND[:ARG][:xN][:key=value...]")
    parts = rest.split(":")
    spec: dict[str, Any] = {"endpoint": endpoint.strip(), "kind": parts[0].strip()}
    for part in parts[1:]:
        if "=" in part:
            key, _, value = part.partition("=")
            spec[key.strip()] = value  # typed by normalize(), never guessed
        elif len(part) > 1 and part[0] == "x" and (part[1:].isdigit() or part[1:] in ("*", "inf")):
            spec["count"] = 0 if part[1:] in ("*", "inf") else int(part[1:])
        elif spec["kind"] == "hostile_id":
            spec["preset" if part in HOSTILE_PRESETS else "value"] = part
        elif spec["kind"] in _POSITIONAL and _POSITIONAL[spec["kind"]] not in spec:
            spec[_POSITIONAL[spec["kind"]]] = part
        else:
            raise FaultSpecError(f"cannot understand {part!r} in fault {text!r}")
    return normalize(spec)


class FaultBook:
    """Pending faults plus counters of fired faults and of requests per endpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self._fired: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self._requests: collections.Counter[str] = collections.Counter()
        self._handshake_failures: collections.Counter[str] = collections.Counter()
        self._certificate_errors: collections.Counter[str] = collections.Counter()
        self._random = random.Random()
        self._gate_log: Callable[[], dict[str, int]] | None = None

    def watch_gate_log(self, new_events: Callable[[], dict[str, int]]) -> None:
        """Count the gate's failed handshakes and certificate errors from nginx's log:
        ``new_events()`` returns those logged since its previous call."""
        self._gate_log = new_events

    def _read_gate_log(self) -> None:  # with the lock held
        if self._gate_log is not None:
            events = self._gate_log()
            self._handshake_failures["gate"] += events["handshake_failures"]
            self._certificate_errors["gate"] += events["certificate_errors"]

    def add(self, spec: dict[str, Any]) -> dict[str, Any]:
        fault = normalize(spec)
        with self._lock:
            self._pending.append(fault)
        return dict(fault)

    def clear(self, counters: bool = True) -> None:
        with self._lock:
            self._read_gate_log()
            self._pending.clear()
            if counters:
                self._fired.clear()
                self._requests.clear()
                self._handshake_failures.clear()
                self._certificate_errors.clear()

    def count_request(self, endpoint: str) -> None:
        with self._lock:
            self._requests[endpoint] += 1

    def count_handshake_failure(self, listener: str) -> None:
        with self._lock:
            self._handshake_failures[listener] += 1

    def take(self, endpoint: str) -> dict[str, Any] | None:
        """Return the fault that fires for this request to ``endpoint``, if any."""
        with self._lock:
            specific = [f for f in self._pending if f["endpoint"] == endpoint]
            wild = [] if endpoint in NOT_WILDCARDED else [f for f in self._pending if f["endpoint"] == WILDCARD]
            if endpoint in UPGRADE_ENDPOINTS:
                wild = [f for f in wild if f["kind"] in UPGRADE_KINDS]
            for fault in specific + wild:
                if fault["rate"] is not None and self._random.random() >= fault["rate"]:
                    continue
                if fault["count"] is not None:
                    fault["count"] -= 1
                    if fault["count"] <= 0:
                        self._pending.remove(fault)
                self._fired[endpoint][fault["kind"]] += 1
                return dict(fault)
        return None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            self._read_gate_log()
            return {
                "pending": [dict(f) for f in self._pending],
                "fired": {ep: dict(kinds) for ep, kinds in self._fired.items()},
                "requests": dict(self._requests),
                "handshake_failures": dict(self._handshake_failures),
                "certificate_errors": dict(self._certificate_errors),
            }
