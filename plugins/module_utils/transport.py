# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP plumbing of the provisioning API client (the contract itself is in ``api``).

Retries (exponential backoff, full jitter, Retry-After honoured up to a cap) on connection
errors, timeouts, 429 and 5xx; never on other answers. Answers are streamed and refused above
1 MiB; each attempt has a total deadline. Errors name the endpoint, the status and the
server's reason, sanitized and truncated; request headers are never echoed. Each error says
whether it is definitive (the server surely did not act) or ambiguous (it may have). A TLS
failure says why the server certificate was refused: a certificate not yet valid or expired
at the device's clock is a clock problem, not a trust one. The texts are ``reasons``.
"""
from __future__ import annotations

import contextlib
import json
import random
import signal
import ssl
import threading
import time

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ApiError, ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.reasons import (
    display_url,
    http_date,
    never_sent,
    sanitize_reason,
    tls_failure,
)

# requests is imported when the first request is made: importing it costs more than the whole
# of an unchanged re-run (~100-200 ms on small devices), which makes no request at all. Whether
# it is there is api.HAS_REQUESTS (what the modules check without loading this module).
requests = None
NewConnectionError = ()

MAX_BODY = 1024 * 1024
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


_X509_V_FLAG_NO_CHECK_TIME = 0x200000


class Transport:
    """Requests to one API base URL: TLS verification, headers, retries, bounded answers."""

    def __init__(self, base, *, headers, ca_path, validate_certs, timeout, retries,
                 backoff_base=1.0, backoff_cap=30.0, retry_after_cap=30.0, sleep=time.sleep):
        """``base``, ``ca_path``, ``timeout``, ``retries``: as api.check_client_options returns
        and checks them (the client calls it first)."""
        self.base = base
        self.timeout = float(timeout)
        self.retries = int(retries)
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
        when = http_date(value)
        return None if when is None else max(0.0, when.timestamp() - time.time())

    def _request(self, method, endpoint, accept=(), **kwargs):
        """(status, body bytes) of a 2xx answer (or one whose status is in ``accept``); raise
        ApiError otherwise (after retries)."""
        what = self._what(method, endpoint)
        session = self.session  # imports requests
        attempt = 0
        while True:
            failure = None  # the _Retry of this attempt
            try:
                with _attempt_deadline(self.timeout * ATTEMPT_DEADLINE_FACTOR):
                    return self._attempt(session, method, endpoint, what, accept, **kwargs)
            except _DeadlineExpired:
                self.calls.append((method, endpoint, "Deadline"))
                failure = _Retry(ApiError("%s: no complete answer within %gs" % (
                    what, self.timeout * ATTEMPT_DEADLINE_FACTOR), endpoint=endpoint, definitive=False))
            except _Retry as retry:
                failure = retry
            if attempt >= self.retries:
                raise failure.error
            self.sleep(self._delay(attempt, failure.retry_after))
            attempt += 1

    def _send(self, session, method, endpoint, what, **kwargs):
        """One request: the response (unread), or raise _Retry (retryable) or ApiError."""
        try:
            return session.request(
                method, self._url(endpoint), timeout=self.timeout, stream=True,
                allow_redirects=False, verify=self.verify, **kwargs
            )
        except requests.exceptions.SSLError as exc:
            self.calls.append((method, endpoint, "SSLError"))
            raise ApiError("%s: TLS handshake failed (%s)" % (what, tls_failure(exc)),
                           endpoint=endpoint, definitive=True) from None
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
            if never_sent(exc, NewConnectionError):
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

    def _clock_blind_session(self):
        """A session whose TLS checks the chain and the host name but not the validity dates:
        the way to read the server's clock when this device's clock is the problem."""
        _import_requests()
        from requests.adapters import HTTPAdapter

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED
        context.verify_flags |= _X509_V_FLAG_NO_CHECK_TIME
        # urllib3 matches the host name itself when the context does not (1.26, Debian 12's, does
        # not even pass the name to the context for an IP address); both versions do it then.
        context.check_hostname = False

        class ClockBlind(HTTPAdapter):
            def init_poolmanager(self, *args, **kwargs):
                kwargs["ssl_context"] = context
                return super().init_poolmanager(*args, **kwargs)

        session = requests.Session()
        session.headers.update(self._headers)
        session.mount("https://", ClockBlind())
        return session

    def _head_date(self, endpoint):
        """The ``Date`` header of one ``HEAD`` of ``endpoint`` (any status), as an aware
        datetime, or None. One attempt within the usual deadline: never retried. The server's
        certificate and host name are verified, its validity dates not (they are judged by the
        very clock being checked)."""
        what = self._what("HEAD", endpoint)
        if self.verify is not False:
            try:  # the session of the requests that follow: its connection is kept for them
                return self._head_date_with(self.session, endpoint, what)
            except ApiError as exc:
                if "TLS handshake failed" not in exc.msg:
                    raise
            # Verified TLS failed, perhaps on the certificate's dates as this very clock sees
            # them: ask again checking the chain and the host name only.
            session = self._clock_blind_session()
        else:
            session = self.session
        try:
            return self._head_date_with(session, endpoint, what)
        finally:
            if session is not self._session:
                session.close()

    def _head_date_with(self, session, endpoint, what):
        try:
            with _attempt_deadline(self.timeout * ATTEMPT_DEADLINE_FACTOR):
                resp = self._send(session, "HEAD", endpoint, what)
                with resp:
                    self.calls.append(("HEAD", endpoint, resp.status_code))
                    value = resp.headers.get("Date")
        except _DeadlineExpired:
            self.calls.append(("HEAD", endpoint, "Deadline"))
            raise ApiError("%s: no answer within %gs" % (what, self.timeout * ATTEMPT_DEADLINE_FACTOR),
                           endpoint=endpoint, definitive=True) from None
        except _Retry as retry:
            raise retry.error from None
        return http_date(value)

    def _attempt(self, session, method, endpoint, what, accept=(), **kwargs):
        """One attempt: (status, body) of a 2xx answer; raise _Retry (retryable) or ApiError."""
        resp = self._send(session, method, endpoint, what, **kwargs)
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
            if 200 <= status < 300 or status in accept:
                return status, body
            reason = self._reason_of(body)
            if 300 <= status < 400:
                reason = reason or "redirects are not followed; check api_url"
            raise ApiError(
                "%s: HTTP %d%s" % (what, status, (": " + reason) if reason else ""),
                endpoint=endpoint, status=status, reason=reason, definitive=True,
            )
