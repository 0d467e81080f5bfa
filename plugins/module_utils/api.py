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

import importlib.util
import json
import math
import os
import re
import time
from urllib.parse import urlsplit, urlunsplit

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.names import setting
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.reasons import _shown, display_url

__all__ = [
    "CONFIRM_MODES", "DEFAULTS", "DEFAULT_ID_PATTERN", "FLAVORS", "Flavor", "HAS_REQUESTS", "HEARTBEAT_FIELDS",
    "ID_FIELDS", "NEVER_SEEN", "REQUESTS_IMPORT_ERROR", "UNKNOWN_ID", "UPLOAD_FORMATS", "Heartbeat", "Reservation",
    "check_agent_id", "check_client_options", "confirm_mode", "endpoints", "is_unknown_id_answer",
]
# The client needs requests, imported by transport.py when the first request is made.
HAS_REQUESTS = importlib.util.find_spec("requests") is not None
REQUESTS_IMPORT_ERROR = None if HAS_REQUESTS else ImportError("No module named 'requests'")

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


def check_client_options(api_url, flavor, *, ca_path, timeout, retries):
    """The checks of a client's options, without the client: ``api_url`` an https:// URL without
    query or fragment, ``retries`` >= 0, ``timeout`` > 0, ``ca_path`` an existing file, and
    ``flavor``'s endpoints paths. Returns the base URL. Raises ConfigError naming the option."""
    if not isinstance(api_url, str) or not api_url:
        raise ConfigError("%s is required" % setting("api_url"))
    parts = urlsplit(api_url)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError("%s must be an https:// URL, got %s" % (setting("api_url"), display_url(api_url)))
    if parts.query or parts.fragment:
        raise ConfigError("%s must not carry a query or a fragment" % setting("api_url"))
    if int(retries) < 0:
        raise ConfigError("%s must be >= 0" % setting("retries"))
    if float(timeout) <= 0:
        raise ConfigError("%s must be > 0" % setting("timeout"))
    if ca_path and not os.path.exists(ca_path):
        raise ConfigError("%s %s does not exist" % (setting("ca_path"), ca_path))
    for option, field in (("id_endpoint", "id_endpoint"), ("upload_endpoint", "upload_endpoint"),
                          ("enroll_endpoint", "enroll_endpoint"), ("confirm_endpoint", "heartbeat_endpoint")):
        value = getattr(flavor, field)
        if value is None and option != "upload_endpoint":
            continue  # this deployment has no such call
        if not isinstance(value, str) or not value.startswith("/") or "://" in value:
            raise ConfigError("%s must be a path starting with '/', got %s" % (setting(option), _shown(value)))
    if flavor.upload_format not in UPLOAD_FORMATS:
        raise ConfigError("%s must be multipart or json" % setting("upload_format"))
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


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


def __getattr__(name):
    """``ProvisioningClient`` (api_client.py, with its HTTP plumbing), loaded when first named: a
    run that makes no request (an unchanged identity) does not import it."""
    if name != "ProvisioningClient":
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    # An absolute import written out: Ansible's payload builder finds dependencies in them.
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.api_client import ProvisioningClient

    return ProvisioningClient
