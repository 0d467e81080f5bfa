# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The provisioning API contract: the one place that knows it.

Every default of the contract is in ``DEFAULTS``; the modules' argument specs take theirs from
it (a unit test compares their DOCUMENTATION with it). The ID field of an upload follows its
format unless ``id_field`` says otherwise: ``ID_FIELDS``.

==========  ==============================================  ===========================================
call        request                                         success: HTTP 2xx and exactly this JSON
==========  ==============================================  ===========================================
reserve ID  GET {id_endpoint}                               {"statusCode": 2xx, "data": {"id": ID,
                                                            "expiresAt": ISO, "expiresIn": s}}
                                                            (``id_answer`` "data": {"data": {...}} alone)
upload      POST {upload_endpoint}, multipart: file         {"statusCode": 2xx, "data": {...}}, data.id
(multipart) ``certificate_field``, field ``id_field`` (id)  (or data[id_field]) equal to ID when present
upload      POST {upload_endpoint}, JSON                    the real cloud's {"message": str, "agent_id":
(json)      {id_field (agent_id): ID, certificate_field:    ID} (no envelope), or the envelope above
            PEM}                                            (either format: a 404 in the UNKNOWN_ID shape
                                                            is the registry saying it has no such ID)
enroll      POST {enroll_endpoint}, multipart: file         {"statusCode": 2xx, "data": {"certificate":
            ``csr``, field ``id_field`` (id)                PEM, ...}}, data.id equal to ID when present
delete      DELETE {endpoint}, ``{id}`` replaced by ID      {"statusCode": 2xx, "data": {"id": ID, ...}},
                                                            data.id equal to ID (the reference answers
                                                            "message": "Orchestrator decommissioned"
                                                            in data). "Unknown ID" (``UNKNOWN_ID``, the
                                                            ID is gone already): 404 {"statusCode":
                                                            404, "message": "unknown ID ID..."}, 410
                                                            {"statusCode": 410, "message": "ID ID was
                                                            [already] decommissioned"}
heartbeat   POST {heartbeat_endpoint}, JSON                 {"agent_id": ID, "cpu_usage", ...,
            {"agent_id": ID} (the api-service's route,      "uptime": s, "status", "timestamp"}
            bearer token)                                   (``HEARTBEAT_FIELDS``, no envelope); 404
                                                            {"detail": "No heartbeat data found for
                                                            agent ID"} = never seen (``NEVER_SEEN``)
==========  ==============================================  ===========================================

The deployments the bundle knows are ``FLAVORS`` (option ``api_flavor``): one record each, with
its endpoints, formats and capabilities; an individual endpoint or format option overrides its
flavor's value (``endpoints``). A flavor with the heartbeat route (``has_heartbeat``) has the
cloud confirm the running agent by default (``confirm_mode``).

A reservation lapses (a flavor whose ``reservations_expire``): its ``expiresIn`` (whole
seconds) is measured with the device's monotonic clock from the moment the request was sent
(``Reservation.lapsed``), never by comparing the server's ``expiresAt`` with the device's clock.

A 2xx answer of any other shape (``{"statusCode": "500"}``, ``{"status": "error"}``,
``{"error": ...}``, ``{}``, another ID) is an ambiguous failure: the server may have acted, so
the identity engine rolls back or journals. A deletion is believed only on its proof: a 2xx
without ``data.id`` equal to the ID (``{"statusCode": 200, "message": "ok"}``, ``{"data":
{"message": "deleted"}}``, another ID, not JSON) is ambiguous, quoted in the error, and the
device keeps its files. A 404 or 410 to a deletion that is not the registry's "unknown ID"
answer (a mistyped endpoint, another application's ``Not Found``) is a failure: nothing says
the ID is gone.

The HTTP plumbing (retries, deadlines, bounded answers) is ``transport``; what its errors say
(the server's reason sanitized, why TLS failed) is ``reasons``.
"""
from __future__ import annotations

import json
import math
import re
import time

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ApiError, ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.names import setting
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.reasons import _shown, sanitize_reason
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.transport import (  # noqa: F401 - re-exported (__all__)
    HAS_REQUESTS,
    MAX_BODY,
    REQUESTS_IMPORT_ERROR,
    Transport,
)

__all__ = [
    "CONFIRM_MODES", "DEFAULTS", "DEFAULT_ID_PATTERN", "FLAVORS", "Flavor", "HAS_REQUESTS", "HEARTBEAT_FIELDS",
    "ID_FIELDS", "MAX_BODY", "NEVER_SEEN", "REQUESTS_IMPORT_ERROR", "UNKNOWN_ID", "UPLOAD_FORMATS", "Heartbeat",
    "ProvisioningClient", "Reservation", "check_agent_id", "confirm_mode", "endpoints", "is_unknown_id_answer",
]

# The provisioning service's IDs (and the cloud's): 8 upper-case hexadecimal characters. An ID
# the API answers in another form is refused before a key is made or anything is uploaded.
DEFAULT_ID_PATTERN = r"^[0-9A-F]{8}$"
# Whatever id_pattern says, an ID becomes a file name and a certificate CN on the server:
# only plain ASCII names are ever accepted.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

DEFAULTS = {
    "api_flavor": "legacy",
    "certificate_field": "certificate",
    "id_pattern": DEFAULT_ID_PATTERN,
    "validate_certs": True,
    "timeout": 30,
    "retries": 3,
}
# The ID field of each upload format: the legacy installer's form field, the cloud's JSON key.
ID_FIELDS = {"multipart": "id", "json": "agent_id"}
UPLOAD_FORMATS = tuple(ID_FIELDS)
# How a reservation answer wraps the ID: the legacy {"statusCode", "data"} envelope, or the
# current installer's bare {"data"}.
ID_ANSWERS = ("envelope", "data")
# How the registry says "no such ID" to a deletion ({id}: the ID asked for).
UNKNOWN_ID = {
    404: r"unknown ID {id}\b",
    410: r"ID {id} was (already )?decommissioned\b",
}
# expiresIn is whole seconds (rounded) and the upload still has to reach the server: a
# reservation this close to its end counts as lapsed.
RESERVATION_MARGIN = 1.0
# The heartbeat route's answer (the stock agent's heartbeat fields, in the cloud's order), and
# its 404 for an agent it never heard from ({id}: the ID asked for).
HEARTBEAT_FIELDS = ("agent_id", "cpu_usage", "memory_usage", "memory_total", "disk_usage", "disk_total",
                    "uptime", "status", "timestamp")
NEVER_SEEN = r"No heartbeat data found for agent {id}"
CONFIRM_MODES = ("heartbeat", "none")


class Flavor:
    """One real deployment's API: where each call goes, in which format, and what it offers.
    Every field is required (a new flavor says everything about itself)."""

    FIELDS = ("name", "description", "id_endpoint", "id_answer", "upload_endpoint", "upload_format", "id_field",
              "certificate_field", "enroll_endpoint", "enrollment", "issues_ids", "reservations_expire",
              "has_heartbeat", "heartbeat_endpoint")
    # What an option may override ({option: the field it overrides}; None: the flavor's value).
    OVERRIDABLE = {name: name for name in ("id_endpoint", "upload_endpoint", "enroll_endpoint", "upload_format",
                                           "id_field", "certificate_field", "enrollment")}
    OVERRIDABLE["confirm_endpoint"] = "heartbeat_endpoint"

    def __init__(self, **fields):
        missing = set(self.FIELDS) - set(fields)
        unknown = set(fields) - set(self.FIELDS)
        if missing or unknown:
            raise TypeError("Flavor: missing %s, unknown %s" % (sorted(missing), sorted(unknown)))
        self.__dict__.update(fields)

    def replace(self, **overrides):
        """A copy with the options that were given (not None) in place of the flavor's values."""
        fields = {name: getattr(self, name) for name in self.FIELDS}
        fields.update((name, value) for name, value in overrides.items() if value is not None)
        return Flavor(**fields)


FLAVORS = {flavor.name: flavor for flavor in (
    Flavor(name="legacy", description="the seed's self-signed flow (the default)",
           id_endpoint="/generate-orchestrator-id", id_answer="envelope",
           upload_endpoint="/upload-orchestrator-certificate", upload_format="multipart", id_field=None,
           certificate_field="certificate", enroll_endpoint="/orchestrators/enroll", enrollment="self_signed",
           issues_ids=True, reservations_expire=True, has_heartbeat=False, heartbeat_endpoint=None),
    Flavor(name="enroll", description="the upstream installer's current flow: a CSR the API signs",
           id_endpoint="/orchestrators/id", id_answer="data",
           upload_endpoint="/upload-orchestrator-certificate", upload_format="multipart", id_field=None,
           certificate_field="certificate", enroll_endpoint="/orchestrators/enroll", enrollment="csr",
           issues_ids=True, reservations_expire=True, has_heartbeat=False, heartbeat_endpoint=None),
    Flavor(name="api_service", description="the api-service cloud: pre-assigned IDs, a JSON upload with a bearer "
                                           "token, a heartbeat route",
           id_endpoint=None, id_answer="envelope", upload_endpoint="/agent/certificate", upload_format="json",
           id_field=None, certificate_field="certificate", enroll_endpoint=None, enrollment="self_signed",
           issues_ids=False, reservations_expire=False, has_heartbeat=True, heartbeat_endpoint="/agent/heartbeat"),
)}


def endpoints(flavor, **overrides):
    """The Flavor named ``flavor`` with the fields given (``Flavor.OVERRIDABLE``'s values) in
    place of its own. Raises ConfigError for an unknown flavor."""
    if flavor not in FLAVORS:
        raise ConfigError("%s must be one of %s" % (setting("api_flavor"), ", ".join(FLAVORS)))
    return FLAVORS[flavor].replace(**overrides)


def confirm_mode(flavor, confirm):
    """The ``confirm`` setting (heartbeat, none), or, unset, its default for the deployment
    ``flavor``: ``heartbeat`` where the API has the heartbeat route, else ``none``."""
    if confirm:
        return confirm
    return "heartbeat" if flavor.has_heartbeat else "none"


class Reservation:
    """A reserved agent ID and how long it stays reserved: ``expires_in`` seconds (None: not
    said, or the deployment's reservations do not lapse) from ``sent_at``, the device's
    ``time.monotonic()`` when the request was sent."""

    def __init__(self, agent_id, *, expires_at, expires_in, sent_at):
        self.agent_id = agent_id
        self.expires_at = expires_at  # the server's ISO time, as it said it (never compared)
        self.expires_in = expires_in
        self.sent_at = sent_at

    def lapsed(self, now=None):
        """True when the reservation may have lapsed by the time a request sent now arrives."""
        if self.expires_in is None:
            return False
        elapsed = (time.monotonic() if now is None else now) - self.sent_at
        return elapsed + RESERVATION_MARGIN >= self.expires_in

    def describe(self, now=None):
        elapsed = (time.monotonic() if now is None else now) - self.sent_at
        return "ID %s (reserved for %ss%s, %.1fs ago)" % (
            self.agent_id, _seconds(self.expires_in), ", until %s" % self.expires_at if self.expires_at else "",
            elapsed)


class Heartbeat:
    """The cloud's view of one agent: ``seen`` (False: it never heard from it), its ``status``
    (``active``, or ``inactive`` since a disconnect), ``uptime`` (seconds since the agent's
    process started, as of its last heartbeat) and ``timestamp`` (the agent's local ISO time of
    that heartbeat). ``detail``: the cloud's words when it never saw the agent."""

    def __init__(self, agent_id, seen=True, status=None, uptime=None, timestamp=None, detail=""):
        self.agent_id = agent_id
        self.seen = seen
        self.status = status
        self.uptime = uptime
        self.timestamp = timestamp
        self.detail = detail

    @property
    def active(self):
        return self.seen and self.status == "active"

    def as_dict(self):
        return {"agent_id": self.agent_id, "seen": self.seen, "status": self.status, "uptime": self.uptime,
                "timestamp": self.timestamp, "detail": self.detail}

    @classmethod
    def from_dict(cls, value):
        """A Heartbeat from ``as_dict()``'s shape (handed from the controller to the module)."""
        if not isinstance(value, dict) or not isinstance(value.get("agent_id"), str):
            raise ConfigError("the cloud's view handed to the module is not a heartbeat")
        uptime = value.get("uptime")
        if uptime is not None and not _is_number(uptime):
            raise ConfigError("the cloud's view handed to the module has an uptime that is not a number")
        return cls(value["agent_id"], seen=bool(value.get("seen")), status=_text_or_none(value.get("status")),
                   uptime=uptime, timestamp=_text_or_none(value.get("timestamp")),
                   detail=str(value.get("detail") or ""))

    def __repr__(self):  # for test failure output
        return "Heartbeat(%s, seen=%s, status=%r, uptime=%r)" % (self.agent_id, self.seen, self.status, self.uptime)


def _is_number(value):
    """A non-negative int or float (not a bool, not NaN)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value) and value >= 0


def _text_or_none(value):
    return value if isinstance(value, str) else None


def _seconds(value):
    return "%g" % value if value is not None else "?"


def check_agent_id(value, pattern=DEFAULT_ID_PATTERN, source="agent_id"):
    """Return ``value`` if it is a usable agent ID, else raise ConfigError.

    Usable: a str (not a number an inventory turned it into), matching ``pattern`` in full
    and the built-in safe-name rule (ASCII letters, digits, ``._-``, no ``..``, <= 128 chars).
    """
    if not isinstance(value, str):
        raise ConfigError(
            "%s must be a string, got %s %s: quote it in the inventory (or use a YAML "
            "inventory) so it is not read as a number" % (source, type(value).__name__, _shown(value))
        )
    try:
        ok = re.fullmatch(pattern, value) is not None
    except re.error as exc:
        raise ConfigError("%s is not a valid regular expression: %s" % (setting("id_pattern"), exc)) from None
    if not ok or not _SAFE_ID.fullmatch(value) or ".." in value:
        raise ConfigError("%s %s does not match id_pattern %s" % (source, _shown(value), pattern))
    return value


def is_unknown_id_answer(status, body, agent_id):
    """True when ``body`` is the registry's own "unknown ID" answer for ``agent_id`` (UNKNOWN_ID)."""
    if status not in UNKNOWN_ID:
        return False
    try:
        payload = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(payload, dict) or payload.get("statusCode") != status:
        return False
    message = payload.get("message")
    return isinstance(message, str) and re.match(UNKNOWN_ID[status].format(id=re.escape(agent_id)), message) is not None


class ProvisioningClient(Transport):
    """The contract's calls against ``api_url`` for the deployment ``flavor`` (an ``endpoints()``
    record)."""

    def __init__(self, api_url, *, flavor, headers, ca_path, validate_certs, timeout, retries, id_pattern,
                 **transport):
        super().__init__(api_url, headers=headers, ca_path=ca_path, validate_certs=validate_certs,
                         timeout=timeout, retries=retries, **transport)
        for option, field in (("id_endpoint", "id_endpoint"), ("upload_endpoint", "upload_endpoint"),
                              ("enroll_endpoint", "enroll_endpoint"), ("confirm_endpoint", "heartbeat_endpoint")):
            value = getattr(flavor, field)
            if value is None and option != "upload_endpoint":
                continue  # this deployment has no such call
            if not isinstance(value, str) or not value.startswith("/") or "://" in value:
                raise ConfigError("%s must be a path starting with '/', got %s" % (setting(option), _shown(value)))
        if flavor.upload_format not in UPLOAD_FORMATS:
            raise ConfigError("%s must be multipart or json" % setting("upload_format"))
        self.flavor = flavor
        self.id_endpoint = flavor.id_endpoint
        self.upload_endpoint = flavor.upload_endpoint
        self.enroll_endpoint = flavor.enroll_endpoint
        self.heartbeat_endpoint = flavor.heartbeat_endpoint
        self.upload_format = flavor.upload_format
        self.id_field = flavor.id_field or ID_FIELDS[flavor.upload_format]
        self.enroll_id_field = flavor.id_field or ID_FIELDS["multipart"]  # enrollment is multipart
        self.certificate_field = flavor.certificate_field
        self.id_pattern = id_pattern

    # ------------------------------------------------------------------ answer shapes
    def _not_success(self, method, endpoint, status, why):
        return ApiError("%s: HTTP %d but %s, not the contract's success answer (the server may have "
                        "acted)" % (self._what(method, endpoint), status, why),
                        endpoint=endpoint, status=status, definitive=False)

    def _payload(self, method, endpoint, status, body):
        """The answer's JSON object; an ambiguous ApiError when it is not one."""
        what = self._what(method, endpoint)
        try:
            payload = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise ApiError("%s: HTTP %d but the answer is not JSON" % (what, status),
                           endpoint=endpoint, status=status, definitive=False) from None
        if not isinstance(payload, dict):
            raise ApiError("%s: HTTP %d but the answer is not a JSON object" % (what, status),
                           endpoint=endpoint, status=status, definitive=False)
        return payload

    def _envelope(self, method, endpoint, status, body, payload=None):
        """``data`` of a ``{"statusCode": 2xx, "data": {...}}`` answer."""
        if payload is None:
            payload = self._payload(method, endpoint, status, body)
        code = payload.get("statusCode")
        if "statusCode" not in payload:
            raise self._not_success(method, endpoint, status, "the answer has no statusCode")
        if not isinstance(code, int) or isinstance(code, bool):
            raise self._not_success(method, endpoint, status, "its statusCode %s is not an integer" % _shown(code))
        if not 200 <= code < 300:
            reason = self._reason_of(body)
            raise ApiError("%s: HTTP %d but statusCode %d%s" % (self._what(method, endpoint), status, code,
                                                                (": " + reason) if reason else ""),
                           endpoint=endpoint, status=code, reason=reason, definitive=400 <= code < 500)
        data = payload.get("data")
        if not isinstance(data, dict):
            raise self._not_success(method, endpoint, status, "the answer has no data object")
        return data

    def _check_echoed_id(self, method, endpoint, status, echoed, agent_id):
        if echoed is not None and echoed != agent_id:
            raise ApiError("%s: HTTP %d but the answer names another ID %s" % (
                self._what(method, endpoint), status, _shown(echoed)),
                endpoint=endpoint, status=status, definitive=False)

    def _post_for(self, agent_id, endpoint, **kwargs):
        """(status, body) of a 2xx answer to a POST about ``agent_id``; a 404 raises a definitive
        ApiError that says whether it is the registry's own "unknown ID" answer."""
        status, body = self._request("POST", endpoint, accept=(404,), **kwargs)
        if status == 404:
            reason = self._reason_of(body)
            raise ApiError("%s: HTTP 404%s" % (self._what("POST", endpoint), (": " + reason) if reason else ""),
                           endpoint=endpoint, status=status, reason=reason, definitive=True,
                           unknown_id=is_unknown_id_answer(status, body, agent_id))
        return status, body

    # ------------------------------------------------------------------ the contract
    def request_id(self):
        """Reserve a new agent ID. Returns it after validation against id_pattern."""
        return self.reserve().agent_id

    def reserve(self):
        """Reserve a new agent ID: a Reservation (the ID validated against id_pattern; how long
        it stays reserved, when the server says so and the deployment's reservations lapse)."""
        endpoint = self.id_endpoint
        if endpoint is None:
            raise ConfigError("the %s API issues no IDs (they are pre-assigned): set %s"
                              % (self.flavor.name, setting("agent_id")))
        sent_at = time.monotonic()
        status, body = self._request("GET", endpoint)
        payload = self._payload("GET", endpoint, status, body)
        if self.flavor.id_answer == "data" and "statusCode" not in payload:
            data = payload.get("data")
            if not isinstance(data, dict):
                raise self._not_success("GET", endpoint, status, "the answer has no data object")
        else:
            data = self._envelope("GET", endpoint, status, body, payload)
        if "id" not in data:
            raise ApiError("%s: HTTP %d but the answer has no id" % (self._what("GET", endpoint), status),
                           endpoint=endpoint, status=status, definitive=False)
        if not isinstance(data["id"], str):
            # An ID is never converted: 12345678 and "00BC614E" name different devices.
            raise ApiError("%s: HTTP %d but the answer's id is a JSON %s (%s), not a string: the API must "
                           "answer IDs as strings" % (self._what("GET", endpoint), status,
                                                      type(data["id"]).__name__, _shown(data["id"])),
                           endpoint=endpoint, status=status, definitive=False)
        try:
            agent_id = check_agent_id(data["id"], self.id_pattern, source="the ID returned by %s" % endpoint)
        except ConfigError as exc:
            raise ApiError("%s: %s" % (self._what("GET", endpoint), exc.msg), endpoint=endpoint,
                           status=status, definitive=False) from None
        expires_in = data.get("expiresIn")
        if not self.flavor.reservations_expire or not _is_number(expires_in):
            expires_in = None
        return Reservation(agent_id, expires_at=_text_or_none(data.get("expiresAt")), expires_in=expires_in,
                           sent_at=sent_at)

    def heartbeat(self, agent_id):
        """The cloud's view of the running agent ``agent_id`` (a Heartbeat; ``seen`` False for the
        route's "never heard from it" answer). Any other answer raises ApiError with the server's
        reason: a 404 of another kind (a wrong confirm_endpoint), a 403 (the token), a 200 that is
        not the route's answer."""
        endpoint = self.heartbeat_endpoint
        if endpoint is None:
            raise ConfigError("the %s API has no heartbeat route: set %s"
                              % (self.flavor.name, setting("confirm_endpoint")))
        what = self._what("POST", endpoint)
        status, body = self._request("POST", endpoint, accept=(404,), json={"agent_id": agent_id})
        if status == 404:
            detail = self._never_seen_detail(body, agent_id)
            if detail is None:
                reason = self._reason_of(body)
                raise ApiError("%s: HTTP 404%s, which is not the cloud's answer for an agent it never heard "
                               "from (check %s)" % (what, (": " + reason) if reason else "",
                                                    setting("confirm_endpoint")),
                               endpoint=endpoint, status=status, reason=reason, definitive=True)
            return Heartbeat(agent_id, seen=False, detail=detail)
        payload = self._payload("POST", endpoint, status, body)
        missing = [name for name in HEARTBEAT_FIELDS if name not in payload]
        problem = None
        if missing:
            problem = "the answer lacks %s" % ", ".join(missing)
        elif payload["agent_id"] != agent_id:
            problem = "the answer names another agent %s" % _shown(payload["agent_id"])
        elif not isinstance(payload["status"], str) or not payload["status"]:
            problem = "its status %s is not a word" % _shown(payload["status"])
        elif payload["uptime"] is not None and not _is_number(payload["uptime"]):
            problem = "its uptime %s is not a number of seconds" % _shown(payload["uptime"])
        if problem:
            raise ApiError("%s: HTTP %d but %s: not the heartbeat route's answer (check %s)" % (
                what, status, problem, setting("confirm_endpoint")), endpoint=endpoint, status=status)
        return Heartbeat(agent_id, status=payload["status"], uptime=payload["uptime"],
                         timestamp=_text_or_none(payload["timestamp"]))

    @staticmethod
    def _never_seen_detail(body, agent_id):
        """The ``detail`` of the route's 404 for ``agent_id`` (NEVER_SEEN), or None."""
        try:
            payload = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None
        detail = payload.get("detail") if isinstance(payload, dict) else None
        if isinstance(detail, str) and re.fullmatch(NEVER_SEEN.format(id=re.escape(agent_id)), detail):
            return detail
        return None

    def upload_certificate(self, agent_id, cert_pem):
        """Register ``cert_pem`` (canonical PEM bytes, the content of client.crt) for ``agent_id``."""
        endpoint = self.upload_endpoint
        cert_text = cert_pem.decode("ascii") if isinstance(cert_pem, bytes) else cert_pem
        if "PRIVATE KEY" in cert_text:
            raise ConfigError("refusing to upload data that contains a private key")
        if self.upload_format == "json":
            kwargs = {"json": {self.id_field: agent_id, self.certificate_field: cert_text}}
        else:
            kwargs = {
                "data": {self.id_field: agent_id},
                "files": {self.certificate_field: ("client.crt", cert_text.encode("ascii"), "application/x-pem-file")},
            }
        status, body = self._post_for(agent_id, endpoint, **kwargs)
        payload = self._payload("POST", endpoint, status, body)
        if self.upload_format == "json" and "statusCode" not in payload:
            # The real cloud's flat answer: the ID echoed is what says it was this upload.
            if not isinstance(payload.get("message"), str) or not isinstance(payload.get("agent_id"), str):
                raise self._not_success("POST", endpoint, status, "the answer is neither the cloud's "
                                        "{message, agent_id} nor a statusCode/data envelope")
            self._check_echoed_id("POST", endpoint, status, payload["agent_id"], agent_id)
            return status
        data = self._envelope("POST", endpoint, status, body, payload)
        self._check_echoed_id("POST", endpoint, status, data.get("id", data.get(self.id_field)), agent_id)
        return status

    def enroll(self, agent_id, csr_pem):
        """Send a CSR; returns the certificate PEM text the server issued (not yet checked)."""
        endpoint = self.enroll_endpoint
        if endpoint is None:
            raise ConfigError("the %s API signs no CSR: set %s=self_signed, or %s"
                              % (self.flavor.name, setting("enrollment"), setting("enroll_endpoint")))
        if isinstance(csr_pem, bytes):
            csr_pem = csr_pem.decode("ascii")
        status, body = self._post_for(
            agent_id, endpoint,
            data={self.enroll_id_field: agent_id},
            files={"csr": ("client.csr", csr_pem.encode("ascii"), "application/pkcs10")},
        )
        data = self._envelope("POST", endpoint, status, body)
        self._check_echoed_id("POST", endpoint, status, data.get("id"), agent_id)
        cert = data.get("certificate")
        if not isinstance(cert, str) or not cert.strip():
            raise ApiError("%s: HTTP %d but the answer has no certificate" % (self._what("POST", endpoint), status),
                           endpoint=endpoint, status=status, definitive=False)
        return cert

    def server_date(self):
        """The server's clock: the ``Date`` header of one ``HEAD`` of the API base URL (any
        status; it reserves and registers nothing, and is not retried), an aware datetime, or
        None when the server sends no Date."""
        return self._head_date("/")

    def deletion_path(self, agent_id, endpoint):
        """The path ``delete_agent`` requests (validated; opens no connection)."""
        agent_id = check_agent_id(agent_id, self.id_pattern)
        if not isinstance(endpoint, str) or not endpoint.startswith("/") or "://" in endpoint \
                or "{id}" not in endpoint:
            raise ConfigError("the deletion endpoint must be a path starting with '/' holding {id}, got %s"
                              % _shown(endpoint))
        # The ID is safe-named (check_agent_id): nothing in it can change the path it lands in.
        return endpoint.replace("{id}", agent_id)

    def delete_agent(self, agent_id, endpoint):
        """Delete ``agent_id``: ``DELETE {api_url}{endpoint}`` with ``{id}`` replaced.

        Returns (status, deleted): (2xx, True) when the server proved it deleted it (the
        contract's success shape naming the ID), (404|410, False) when its answer is the
        registry's "unknown ID" (already gone). Any other answer, another 2xx or a 404 of a
        wrong endpoint included, raises ApiError."""
        path = self.deletion_path(agent_id, endpoint)
        status, body = self._request("DELETE", path, accept=tuple(UNKNOWN_ID))
        if 200 <= status < 300:
            self._check_deletion_proof(path, status, body, agent_id)
            return status, True
        if is_unknown_id_answer(status, body, agent_id):
            return status, False
        reason = self._reason_of(body)
        raise ApiError("%s: HTTP %d%s, which is not the registry's answer for an unknown ID (check the "
                       "deletion endpoint): nothing says the ID is gone" % (
                           self._what("DELETE", path), status, (": " + reason) if reason else ""),
                       endpoint=path, status=status, reason=reason, definitive=True)

    def _check_deletion_proof(self, path, status, body, agent_id):
        """Raise an ambiguous ApiError unless ``body`` is ``{"statusCode": 2xx, "data": {"id":
        agent_id, ...}}``: any other 2xx may come from a proxy, a stub or a registry that kept
        the ID, and wiping the device on it would leave a registered pair nobody holds."""
        try:
            payload = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            payload = None
        code = payload.get("statusCode") if isinstance(payload, dict) else None
        data = payload.get("data") if isinstance(payload, dict) else None
        if isinstance(code, int) and not isinstance(code, bool) and 200 <= code < 300 \
                and isinstance(data, dict) and data.get("id") == agent_id:
            return
        raise ApiError(
            "%s: HTTP %d but the answer (%s) is not the contract's proof of deletion "
            "({\"statusCode\": 2xx, \"data\": {\"id\": \"%s\"}}): the registry may still hold %s"
            % (self._what("DELETE", path), status, sanitize_reason(body, self._secrets) or "empty",
               agent_id, agent_id),
            endpoint=path, status=status, definitive=False)
