# -*- coding: utf-8 -*-
"""Client of the provisioning API: the one place that knows the contract.

Contract (see the project README):
- ``GET {api_url}{id_endpoint}`` -> ``{"statusCode": 200, "data": {"id": "<id>", ...}}``
- ``POST {api_url}{upload_endpoint}``: multipart (file field ``certificate_field``, form field
  ``id_field``) or JSON ``{id_field: id, certificate_field: pem}``; 2xx JSON answer.
- ``POST {api_url}{enroll_endpoint}``: multipart (file field ``csr``, form field ``id_field``)
  -> ``{"data": {"certificate": "<PEM>", "id": "<id>"}}``.

Retries (exponential backoff, full jitter, Retry-After honoured up to a cap) on connection
errors, timeouts, 429 and 5xx; never on other answers. Answers are streamed and refused above
1 MiB. Errors name the endpoint, the status and the server's reason, sanitized and truncated;
request headers are never echoed. Each error says whether it is definitive (the server surely
did not act) or ambiguous (it may have).
"""
from __future__ import annotations

import contextlib
import email.utils
import importlib.util
import json
import os
import random
import re
import signal
import threading
import time
from urllib.parse import urlsplit, urlunsplit

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ApiError, ConfigError

# requests is imported when the first request is made: importing it costs more than the whole
# of an unchanged re-run (~100-200 ms on small devices), which makes no request at all.
HAS_REQUESTS = importlib.util.find_spec("requests") is not None
REQUESTS_IMPORT_ERROR = None if HAS_REQUESTS else ImportError("No module named 'requests'")
requests = None
NewConnectionError = ()

MAX_BODY = 1024 * 1024
REASON_MAX = 200
DEFAULT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
# Whatever id_pattern says, an ID becomes a file name and a certificate CN on the server:
# only plain ASCII names are ever accepted.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
USER_AGENT = "fleet-mtls"
# requests' timeout bounds each socket read, not an answer: a server trickling one byte per
# read would hold the run forever. Each attempt gets this many `timeout`s in total.
ATTEMPT_DEADLINE_FACTOR = 3


class _DeadlineExpired(Exception):
    pass


class _Retry(Exception):
    """A retryable failure of one attempt (connection, timeout, 429, 5xx)."""

    def __init__(self, error, retry_after=None):
        super().__init__(error.msg)
        self.error = error
        self.retry_after = retry_after


@contextlib.contextmanager
def _attempt_deadline(seconds):
    """Interrupt a blocking read after ``seconds`` (SIGALRM; modules run in the main thread)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expired(_signum, _frame):
        raise _DeadlineExpired()

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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
        raise ConfigError("id_pattern is not a valid regular expression: %s" % exc) from None
    if not ok or not _SAFE_ID.fullmatch(value) or ".." in value:
        raise ConfigError("%s %s does not match id_pattern %s" % (source, _shown(value), pattern))
    return value


def _shown(value, limit=80):
    text = repr(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return text


def sanitize_reason(text, secrets=(), limit=REASON_MAX):
    """Printable, single-line, truncated text with any secret value and key block removed."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = str(text)
    text = re.sub(r"-----BEGIN[^-]*PRIVATE KEY-----.*?(-----END[^-]*PRIVATE KEY-----|$)",
                  "[private key removed]", text, flags=re.DOTALL)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "********")
    text = "".join(ch if 32 <= ord(ch) < 127 else " " for ch in text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit] + "..."
    return text


def display_url(url):
    """URL without userinfo, query or fragment (safe to show)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = "[%s]" % host
    netloc = host + (":%d" % parts.port if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _import_requests():
    global requests, NewConnectionError
    if requests is None:
        try:
            import requests as _requests
            import requests.exceptions  # noqa: F401 - the submodule used below
        except ImportError as exc:
            raise ConfigError("the requests library cannot be imported on this host: %s" % exc) from None
        try:  # urllib3 1.x and 2.x both have it
            from urllib3.exceptions import NewConnectionError as _nce
        except ImportError:  # pragma: no cover
            _nce = ()
        NewConnectionError = _nce
        requests = _requests
    return requests


def _not_sent(exc):
    """True when a ConnectionError happened before the request could reach the server."""
    seen = set()
    stack = [exc]
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if NewConnectionError and isinstance(cur, NewConnectionError):
            return True
        if isinstance(cur, BaseException):
            stack.extend(a for a in cur.args if isinstance(a, BaseException))
            stack.append(getattr(cur, "reason", None))
            stack.append(cur.__cause__)
            stack.append(cur.__context__)
    return False


class ProvisioningClient:
    def __init__(
        self,
        api_url,
        id_endpoint="/generate-orchestrator-id",
        upload_endpoint="/upload-orchestrator-certificate",
        enroll_endpoint="/orchestrators/enroll",
        upload_format="multipart",
        id_field="id",
        certificate_field="certificate",
        headers=None,
        ca_path=None,
        validate_certs=True,
        timeout=30,
        retries=3,
        id_pattern=DEFAULT_ID_PATTERN,
        backoff_base=1.0,
        backoff_cap=30.0,
        retry_after_cap=30.0,
        sleep=time.sleep,
    ):
        if not isinstance(api_url, str) or not api_url:
            raise ConfigError("api_url is required")
        parts = urlsplit(api_url)
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError("api_url must be an https:// URL, got %s" % display_url(api_url))
        if parts.query or parts.fragment:
            raise ConfigError("api_url must not carry a query or a fragment")
        self.base = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        for name, value in (("id_endpoint", id_endpoint), ("upload_endpoint", upload_endpoint),
                            ("enroll_endpoint", enroll_endpoint)):
            if not isinstance(value, str) or not value.startswith("/") or "://" in value:
                raise ConfigError("%s must be a path starting with '/', got %s" % (name, _shown(value)))
        if upload_format not in ("multipart", "json"):
            raise ConfigError("upload_format must be multipart or json")
        if int(retries) < 0:
            raise ConfigError("retries must be >= 0")
        if float(timeout) <= 0:
            raise ConfigError("timeout must be > 0")
        self.id_endpoint = id_endpoint
        self.upload_endpoint = upload_endpoint
        self.enroll_endpoint = enroll_endpoint
        self.upload_format = upload_format
        self.id_field = id_field
        self.certificate_field = certificate_field
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.id_pattern = id_pattern
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.retry_after_cap = retry_after_cap
        self.sleep = sleep
        headers = dict(headers or {})
        self._secrets = []
        for value in headers.values():
            value = str(value)
            self._secrets.append(value)
            self._secrets.extend(part for part in value.split() if len(part) >= 8)
        self._headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        self._headers.update({str(k): str(v) for k, v in headers.items()})
        self._session = None
        if ca_path and not os.path.exists(ca_path):
            raise ConfigError("ca_path %s does not exist" % ca_path)
        # Passed on every request: a session-level value would lose against
        # $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE, silently ignoring ca_path.
        self.verify = ca_path if ca_path else bool(validate_certs)
        self.validate_certs = bool(validate_certs) or bool(ca_path)
        self.calls = []  # (method, endpoint, status or exception name) for tests and -vvv

    @property
    def session(self):
        """The requests session, created (and requests imported) on first use."""
        if self._session is None:
            self._session = _import_requests().Session()
            self._session.headers.update(self._headers)
            if self.verify is False:
                # The module itself warns once; urllib3 would warn on every request.
                try:
                    import urllib3

                    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
                except (ImportError, AttributeError):  # pragma: no cover
                    pass
        return self._session

    def close(self):
        if self._session is not None:
            self._session.close()

    # ------------------------------------------------------------------ plumbing
    def _url(self, endpoint):
        return self.base + endpoint

    def _what(self, method, endpoint):
        return "%s %s" % (method, display_url(self._url(endpoint)))

    def _reason_of(self, body):
        if not body:
            return ""
        try:
            payload = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return sanitize_reason(body, self._secrets)
        if isinstance(payload, dict):
            for key in ("message", "error", "reason", "detail"):
                if isinstance(payload.get(key), str):
                    return sanitize_reason(payload[key], self._secrets)
            data = payload.get("data")
            if isinstance(data, dict) and isinstance(data.get("message"), str):
                return sanitize_reason(data["message"], self._secrets)
        return sanitize_reason(body, self._secrets)

    def _read_body(self, resp, method, endpoint):
        """Read at most MAX_BODY bytes; raise ApiError (ambiguous) when the answer is larger."""
        length = resp.headers.get("Content-Length")
        too_big = ApiError(
            "%s: the answer is larger than %d bytes; refused" % (self._what(method, endpoint), MAX_BODY),
            endpoint=endpoint, status=resp.status_code, definitive=False,
        )
        try:
            if length is not None and int(length) > MAX_BODY:
                raise too_big
        except ValueError:
            pass
        chunks = []
        total = 0
        for chunk in resp.iter_content(65536):
            total += len(chunk)
            if total > MAX_BODY:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    def _delay(self, attempt, retry_after=None):
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        # Jitter, not secrecy: the standard PRNG is the right tool.
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * (2 ** attempt)))  # noqa: S311

    @staticmethod
    def _retry_after(resp):
        value = resp.headers.get("Retry-After")
        if not value:
            return None
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        return max(0.0, when.timestamp() - time.time())

    def _request(self, method, endpoint, **kwargs):
        """(status, body bytes) of a 2xx answer; raise ApiError otherwise (after retries)."""
        what = self._what(method, endpoint)
        session = self.session  # imports requests
        attempts = self.retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                with _attempt_deadline(self.timeout * ATTEMPT_DEADLINE_FACTOR):
                    return self._attempt(session, method, endpoint, what, **kwargs)
            except _DeadlineExpired:
                self.calls.append((method, endpoint, "Deadline"))
                error = ApiError("%s: no complete answer within %gs" % (
                    what, self.timeout * ATTEMPT_DEADLINE_FACTOR), endpoint=endpoint, definitive=False)
            except _Retry as retry:
                error = retry.error
                if not last:
                    self.sleep(self._delay(attempt, retry.retry_after))
                    continue
                raise error from None
            if last:
                raise error
            self.sleep(self._delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, session, method, endpoint, what, **kwargs):
        """One attempt: (status, body) of a 2xx answer; raise _Retry (retryable) or ApiError."""
        try:
            resp = session.request(
                method, self._url(endpoint), timeout=self.timeout, stream=True,
                allow_redirects=False, verify=self.verify, **kwargs
            )
        except requests.exceptions.SSLError:
            self.calls.append((method, endpoint, "SSLError"))
            raise ApiError(
                "%s: TLS handshake failed (server certificate not trusted or wrong host name; "
                "set ca_path to the CA that signed it)" % what,
                endpoint=endpoint, definitive=True,
            ) from None
        except requests.exceptions.ConnectTimeout:
            self.calls.append((method, endpoint, "ConnectTimeout"))
            raise _Retry(ApiError("%s: connection timed out after %gs" % (what, self.timeout),
                                  endpoint=endpoint, definitive=True)) from None
        except requests.exceptions.Timeout:
            self.calls.append((method, endpoint, "ReadTimeout"))
            raise _Retry(ApiError("%s: no answer within %gs" % (what, self.timeout),
                                  endpoint=endpoint, definitive=False)) from None
        except requests.exceptions.ConnectionError as exc:
            self.calls.append((method, endpoint, "ConnectionError"))
            if _not_sent(exc):
                error = ApiError("%s: cannot connect (refused or host unknown)" % what,
                                 endpoint=endpoint, definitive=True)
            else:
                error = ApiError("%s: the connection dropped before an answer arrived" % what,
                                 endpoint=endpoint, definitive=False)
            raise _Retry(error) from None
        except requests.exceptions.RequestException as exc:
            self.calls.append((method, endpoint, type(exc).__name__))
            raise ApiError("%s: request failed (%s)" % (what, type(exc).__name__),
                           endpoint=endpoint, definitive=True) from None
        with resp:
            status = resp.status_code
            self.calls.append((method, endpoint, status))
            if status == 429 or 500 <= status <= 599:
                retry_after = self._retry_after(resp)
                try:
                    reason = self._reason_of(self._read_body(resp, method, endpoint))
                except (ApiError, requests.exceptions.RequestException):
                    reason = ""
                raise _Retry(ApiError(
                    "%s: HTTP %d%s" % (what, status, (": " + reason) if reason else ""),
                    endpoint=endpoint, status=status, reason=reason, definitive=(status == 429),
                ), retry_after)
            try:
                body = self._read_body(resp, method, endpoint)
            except requests.exceptions.RequestException:
                raise ApiError("%s: the connection dropped while reading the answer" % what,
                               endpoint=endpoint, status=status,
                               definitive=not (200 <= status < 300)) from None
            if 200 <= status < 300:
                return status, body
            reason = self._reason_of(body)
            if 300 <= status < 400:
                reason = reason or "redirects are not followed; check api_url"
            raise ApiError(
                "%s: HTTP %d%s" % (what, status, (": " + reason) if reason else ""),
                endpoint=endpoint, status=status, reason=reason, definitive=True,
            )

    def _json(self, method, endpoint, status, body):
        what = self._what(method, endpoint)
        try:
            payload = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise ApiError("%s: HTTP %d but the answer is not JSON" % (what, status),
                           endpoint=endpoint, status=status, definitive=False) from None
        if not isinstance(payload, dict):
            raise ApiError("%s: HTTP %d but the answer is not a JSON object" % (what, status),
                           endpoint=endpoint, status=status, definitive=False)
        code = payload.get("statusCode")
        if isinstance(code, int) and not isinstance(code, bool) and not 200 <= code < 300:
            reason = self._reason_of(body)
            raise ApiError("%s: HTTP %d but statusCode %d%s" % (what, status, code, (": " + reason) if reason else ""),
                           endpoint=endpoint, status=code, reason=reason,
                           definitive=400 <= code < 500)
        data = payload.get("data", payload)
        if not isinstance(data, dict):
            raise ApiError("%s: HTTP %d but the answer has no data object" % (what, status),
                           endpoint=endpoint, status=status, definitive=False)
        return data

    # ------------------------------------------------------------------ the contract
    def request_id(self):
        """Reserve a new agent ID. Returns it after validation against id_pattern."""
        endpoint = self.id_endpoint
        status, body = self._request("GET", endpoint)
        data = self._json("GET", endpoint, status, body)
        if "id" not in data:
            raise ApiError("%s: HTTP %d but the answer has no id" % (self._what("GET", endpoint), status),
                           endpoint=endpoint, status=status, definitive=False)
        try:
            return check_agent_id(data["id"], self.id_pattern, source="the ID returned by %s" % endpoint)
        except ConfigError as exc:
            raise ApiError("%s: %s" % (self._what("GET", endpoint), exc.msg), endpoint=endpoint,
                           status=status, definitive=False) from None

    def _check_echoed_id(self, method, endpoint, status, data, agent_id):
        echoed = data.get("id", data.get(self.id_field))
        if echoed is not None and echoed != agent_id:
            raise ApiError("%s: HTTP %d but the answer names another ID %s" % (
                self._what(method, endpoint), status, _shown(echoed)),
                endpoint=endpoint, status=status, definitive=False)

    def upload_certificate(self, agent_id, cert_pem):
        """Register ``cert_pem`` (canonical PEM bytes, the content of client.crt) for ``agent_id``."""
        endpoint = self.upload_endpoint
        if isinstance(cert_pem, bytes):
            cert_text = cert_pem.decode("ascii")
        else:
            cert_text = cert_pem
        if "PRIVATE KEY" in cert_text:
            raise ConfigError("refusing to upload data that contains a private key")
        if self.upload_format == "json":
            kwargs = {"json": {self.id_field: agent_id, self.certificate_field: cert_text}}
        else:
            kwargs = {
                "data": {self.id_field: agent_id},
                "files": {self.certificate_field: ("client.crt", cert_text.encode("ascii"), "application/x-pem-file")},
            }
        status, body = self._request("POST", endpoint, **kwargs)
        data = self._json("POST", endpoint, status, body)
        self._check_echoed_id("POST", endpoint, status, data, agent_id)
        return status

    def enroll(self, agent_id, csr_pem):
        """Send a CSR; returns the certificate PEM text the server issued (not yet checked)."""
        endpoint = self.enroll_endpoint
        if isinstance(csr_pem, bytes):
            csr_pem = csr_pem.decode("ascii")
        status, body = self._request(
            "POST", endpoint,
            data={self.id_field: agent_id},
            files={"csr": ("client.csr", csr_pem.encode("ascii"), "application/pkcs10")},
        )
        data = self._json("POST", endpoint, status, body)
        self._check_echoed_id("POST", endpoint, status, data, agent_id)
        cert = data.get("certificate")
        if not isinstance(cert, str) or not cert.strip():
            raise ApiError("%s: HTTP %d but the answer has no certificate" % (self._what("POST", endpoint), status),
                           endpoint=endpoint, status=status, definitive=False)
        return cert

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
        """Delete ``agent_id`` on the server: ``DELETE {api_url}{endpoint}`` with ``{id}``
        replaced. Returns (status, deleted): a 404 or 410 answer means it was already gone
        (deleted False); every other non-2xx answer raises ApiError."""
        path = self.deletion_path(agent_id, endpoint)
        try:
            status, _body = self._request("DELETE", path)
        except ApiError as exc:
            if exc.status in (404, 410):
                return exc.status, False
            raise
        return status, True
