# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an API error may say, and why a request failed: the texts of ``transport``'s errors.

Apart from the HTTP plumbing (``transport``) as functions of their arguments only, without
``requests`` or I/O: the server's reason made printable, single-line, truncated and free of
secrets and key blocks; a value or URL shown safely (no userinfo, query or fragment); whether a
connection error came before the request was sent; why the TLS handshake failed (a server
certificate not yet valid or expired at the device's clock is a clock problem, not a trust
one); an HTTP ``Date``.
"""
from __future__ import annotations

import datetime
import email.utils
import re
import ssl
from urllib.parse import urlsplit, urlunsplit

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.names import setting

REASON_MAX = 200


def _shown(value, limit=80):
    text = repr(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return text


def sanitize_reason(text, secrets=(), limit=REASON_MAX):
    """Printable, single-line, truncated text with any secret value and key block removed."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    # Printable first: a marker split by a control character ("PRIVATE\0KEY") would come back.
    text = "".join(ch if 32 <= ord(ch) < 127 else " " for ch in str(text))
    text = re.sub(r"-----BEGIN[^-]*PRIVATE KEY-----.*?(-----END[^-]*PRIVATE KEY-----|$)",
                  "[private key removed]", text)
    text = re.sub(r"PRIVATE\s+KEY", "[private key removed]", text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "********")
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


def _causes(exc):
    """``exc`` and every exception it wraps (args, reason, cause, context), each once."""
    seen = set()
    stack = [exc]
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, BaseException):
            yield cur
            stack.extend(a for a in cur.args if isinstance(a, BaseException))
            stack.extend((getattr(cur, "reason", None), cur.__cause__, cur.__context__))


def never_sent(exc, not_sent_types):
    """True when a ConnectionError happened before the request could reach the server: an
    exception of ``not_sent_types`` (urllib3's NewConnectionError; () when unknown) is in its chain."""
    return bool(not_sent_types) and any(isinstance(cur, not_sent_types) for cur in _causes(exc))


# OpenSSL's verify codes that mean "the certificate is not valid at this clock's time".
_CLOCK_CODES = {9: "CERT_NOT_YET_VALID", 10: "CERT_HAS_EXPIRED"}
_HOST_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def _verification_error(exc):
    """The ssl.SSLCertVerificationError somewhere in the chain of ``exc``, or None."""
    return next((cur for cur in _causes(exc) if isinstance(cur, ssl.SSLCertVerificationError)), None)


def tls_failure(exc, now=None):
    """Why the TLS handshake failed, for the person who must fix it."""
    error = _verification_error(exc)
    code = getattr(error, "verify_code", None)
    reason = sanitize_reason(getattr(error, "verify_message", "") or "")
    if code in _CLOCK_CODES:
        now = now or datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 - Python 3.9
        return ("the server certificate is %s at this device's current time %s (verify code %s): "
                "check the device clock (NTP)" % (
                    "not valid yet" if code == 9 else "expired", now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    _CLOCK_CODES[code]))
    if code in _HOST_MISMATCH:
        return ("the server certificate is for another host name: %s; check api_url, or set %s to "
                "the CA that signed the right server's certificate" % (reason, setting("ca_path")))
    if error is not None:
        return ("server certificate not trusted: %s (verify code %s); set %s to the CA that signed it"
                % (reason, code, setting("ca_path")))
    return ("server certificate not trusted or wrong host name; set %s to the CA that signed it"
            % setting("ca_path"))


def http_date(value):
    """An HTTP ``Date`` header as an aware UTC datetime, or None when absent or unreadable."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)  # noqa: UP017 - Python 3.9
    return when.astimezone(datetime.timezone.utc)  # noqa: UP017
