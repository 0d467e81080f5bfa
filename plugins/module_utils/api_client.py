# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client of the provisioning API contract (api.py): its calls, and the answers it believes.

Apart from the contract so that a run that makes no request (an unchanged identity) loads
neither this nor its HTTP plumbing (transport.py); ``api.ProvisioningClient`` names it.
"""
from __future__ import annotations

import json
import re
import time

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.api import (
    HEARTBEAT_FIELDS,
    ID_FIELDS,
    NEVER_SEEN,
    UNKNOWN_ID,
    Heartbeat,
    Reservation,
    _is_number,
    _text_or_none,
    check_agent_id,
    check_client_options,
    is_unknown_id_answer,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ApiError, ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.names import setting
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.reasons import _shown, sanitize_reason
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.transport import Transport


class ProvisioningClient(Transport):
    """The contract's calls against ``api_url`` for the deployment ``flavor`` (an ``endpoints()``
    record)."""

    def __init__(self, api_url, *, flavor, headers, ca_path, validate_certs, timeout, retries, id_pattern,
                 **transport):
        base = check_client_options(api_url, flavor, ca_path=ca_path, timeout=timeout, retries=retries)
        super().__init__(base, headers=headers, ca_path=ca_path, validate_certs=validate_certs,
                         timeout=timeout, retries=retries, **transport)
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
