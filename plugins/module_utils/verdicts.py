# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent check's verdicts on what went wrong below the application protocol: a network or
TLS error classified into the check's failure classes (see ``check.py``), and the clock
questions: is a certificate outside its validity because it is, or because the device clock is
wrong? The server's clock (its HTTP ``Date``) decides, read over a second, unverified
connection that presents no certificate and sends only ``HEAD /``.

Standard library only; Python 3.9+.
"""
from __future__ import annotations

import datetime
import socket
import ssl
import time
from email.utils import parsedate_to_datetime

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import der, names, wsclient
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import CheckError

UTC = datetime.timezone.utc
PROBE_TIME = 3.0  # at most this much of the deadline to read the server's clock
CLOCK_SKEW_LIMIT = datetime.timedelta(minutes=10)

_VERIFY_NOT_YET_VALID, _VERIFY_EXPIRED = 9, 10  # X509_V_ERR_CERT_NOT_YET_VALID / _HAS_EXPIRED
_VERIFY_HOSTNAME = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH
_CERTIFICATE_ALERTS = ("BAD_CERTIFICATE", "UNKNOWN_CA", "CERTIFICATE_REQUIRED", "CERTIFICATE_UNKNOWN",
                       "CERTIFICATE_EXPIRED", "CERTIFICATE_REVOKED", "UNSUPPORTED_CERTIFICATE", "ACCESS_DENIED",
                       "DECRYPT_ERROR")


def network_error(job, exc, phase, now):
    """The ``CheckError`` for ``exc`` raised while ``phase``."""
    where = job.target.where
    if isinstance(exc, socket.timeout):
        return CheckError("timeout", "timeout: no complete answer from %s within %s s (the check's total deadline), "
                          "while %s" % (where, job.timeout, phase))
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _verification_error(job, exc, now)
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return _tls_error(job, exc)
    if isinstance(exc, socket.gaierror):
        return CheckError("connection", "connection error: cannot resolve %r (%s)" % (job.target.host, exc.strerror))
    if isinstance(exc, ConnectionRefusedError):
        return CheckError("connection", "connection error: %s refused the connection (nothing listening?)" % where)
    if isinstance(exc, (wsclient.ConnectionClosed, ssl.SSLError)):
        return CheckError("connection", "connection error: %s closed the connection without answering, while %s"
                          % (where, phase))
    return CheckError("connection", "connection error: %s, while %s: %s" % (where, phase, exc.strerror or exc))


def _tls_error(job, exc):
    reason = str(exc.reason or exc)
    if "ALERT" in reason.upper() and any(alert in reason.upper() for alert in _CERTIFICATE_ALERTS):
        return CheckError("refused", "refused by server: %s refused the client certificate in the TLS handshake "
                          "(alert %s): it does not accept this certificate (unknown, expired by its clock, or "
                          "revoked)" % (job.target.where, reason))
    return CheckError("tls_protocol", "TLS negotiation with %s failed (%s): the agent needs TLS 1.2 or later with a "
                      "shared cipher on that port" % (job.target.where, reason))


def _verification_error(job, exc, now):
    where, code = job.target.where, exc.verify_code
    detail = exc.verify_message or str(exc.reason)
    if code in _VERIFY_HOSTNAME:
        return CheckError("hostname_mismatch", "hostname mismatch: the certificate of the server at %s is not valid "
                          "for %r (%s): the agent checks the host it connects to; use the name the server "
                          "certificate was issued for in %s" % (where, job.target.host, detail,
                                                                names.setting("server_url")))
    if code in (_VERIFY_EXPIRED, _VERIFY_NOT_YET_VALID):
        return _server_validity_error(job, code, now or datetime.datetime.now(UTC))
    if job.trust == "system":
        return CheckError("untrusted_server", (
            "untrusted server: the agent trusts OpenSSL's default store (no SSL_CERT_FILE in its environment), which "
            "does not trust the certificate of the server at %s (%s): give it the server's CA (set %s; %s ca_file)"
        ) % (where, detail, names.setting("server_ca", "server_ca_src"), names.setting("agent_trust")))
    return CheckError("untrusted_server", (
        "untrusted server: the agent trusts SSL_CERT_FILE=%s (and OpenSSL's default directory), which does not trust "
        "the certificate of the server at %s (%s): that file must hold the CA that signed the server's certificate "
        "(set %s to it)"
    ) % (job.ca_file, where, detail, names.setting("server_ca", "server_ca_src")))


def check_client_validity(job, cert, now, crt):
    """Raise unless client.crt is valid at ``now``, naming the clock when it is the cause."""
    if cert["not_before"] <= now < cert["not_after"]:
        return
    server_now, _server_cert = _probe_server(job)
    clock = _clock_error(job, now, server_now, "client.crt is valid from %s to %s" % (
        cert["not_before"].isoformat(), cert["not_after"].isoformat()))
    if clock:
        raise clock
    if cert["not_after"] <= now:
        raise CheckError("client_cert_expired", "client certificate expired: %s (agent %s) expired on %s (device clock "
                         "%s%s) - rotate the identity: re-run the provisioning" % (
                             crt, cert["cn"], cert["not_after"].isoformat(), now.isoformat(),
                             ", the server's agrees" if server_now else ""))
    if server_now is None:
        raise CheckError("clock", "client certificate not yet valid: %s (agent %s) is valid from %s but the device "
                         "clock says %s: the device clock is probably behind - fix it (NTP)" % (
                             crt, cert["cn"], cert["not_before"].isoformat(), now.isoformat()))
    raise CheckError("client_cert_expired", "client certificate not yet valid: %s (agent %s) is valid from %s, and the "
                     "server's clock agrees with the device's (%s): it was made with a clock ahead - rotate it (%s "
                     "always)" % (crt, cert["cn"], cert["not_before"].isoformat(), now.isoformat(),
                                  names.setting("rotate")))


def _server_validity_error(job, code, now):
    server_now, server_cert = _probe_server(job)
    dates = "valid from %s to %s" % (server_cert["not_before"].isoformat(), server_cert["not_after"].isoformat()) \
        if server_cert else "its dates unread"
    clock = _clock_error(job, now, server_now, "the server's certificate is " + dates)
    if clock:
        return clock
    what = "expired" if code == _VERIFY_EXPIRED else "not yet valid"
    if server_now is None:
        return CheckError("clock" if code == _VERIFY_NOT_YET_VALID else "server_cert_expired", (
            "server certificate %s: the server at %s presented a certificate %s, by the device clock (%s): if that "
            "clock is wrong, fix it (NTP); otherwise the server's certificate must be renewed"
        ) % (what, job.target.where, dates, now.isoformat()))
    return CheckError("server_cert_expired", (
        "server certificate %s: the server at %s presented a certificate %s; the server's clock agrees with the "
        "device's (%s): the server's certificate must be renewed, the device is not at fault"
    ) % (what, job.target.where, dates, now.isoformat()))


def _clock_error(job, now, server_now, dates):
    if server_now is None or abs(server_now - now) <= CLOCK_SKEW_LIMIT:
        return None
    return CheckError("clock", "device clock wrong: it says %s but the server at %s says %s (%s off) and %s - fix "
                      "the device clock (NTP), then re-run" % (
                          now.isoformat(), job.target.where, server_now.isoformat(), abs(server_now - now), dates))


def _probe_server(job):
    """``(server Date, server certificate dict)`` read over an unverified connection presenting
    no client certificate, each ``None`` when unknown. Only a clock and public dates are read
    from it; nothing is sent but ``HEAD /``."""
    deadline = min(job.deadline, time.monotonic() + PROBE_TIME)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    server_cert = None
    try:
        sock = socket.create_connection((job.target.host, job.target.port),
                                        timeout=max(deadline - time.monotonic(), 0.01))
        with context.wrap_socket(sock, server_hostname=job.target.host) as tls:
            server_cert = der.parse_certificate(tls.getpeercert(binary_form=True) or b"")
            wire = wsclient.Wire(tls, deadline)
            wsclient.send_request(wire, "HEAD", "/", job.target.host_header, (("Connection", "close"),))
            date = wsclient.parse_head(wire.read_until(b"\r\n\r\n", wsclient.HEAD_LIMIT)).header("date")
            return parsedate_to_datetime(date).astimezone(UTC), server_cert
    except (OSError, ValueError, TypeError, IndexError, wsclient.ConnectionClosed, CheckError):
        return None, server_cert
