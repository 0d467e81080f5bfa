# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent-true check: prove what the stock agent will see when it connects.

The stock agent (orchestrator-agent ``src/tools/ssl.py``) reads no configuration file: it
builds ``ssl.create_default_context(Purpose.SERVER_AUTH)``, sets ``minimum_version`` TLS 1.2,
``load_cert_chain(~/.mtls/client.crt, ~/.mtls/client.key)``, ``check_hostname`` and
``CERT_REQUIRED``, and trusts OpenSSL's default store, which only ``SSL_CERT_FILE`` /
``SSL_CERT_DIR`` in its environment change. ``run_agent_check`` builds that very context in a
forked child whose environment is the agent's (its HOME; ``SSL_CERT_FILE`` = ``ca_file`` for
``trust="ca_file"``, neither variable for ``trust="system"``), running as the agent's user when
started as root, then speaks to the server where the cloud checks the certificate:
``websocket`` (RFC 6455 upgrade of ``/ws``), ``socketio`` (Engine.IO v4 + Socket.IO CONNECT, as
the agent does) or ``https`` (one GET: an HTTP status, never a certificate verdict). One total
deadline covers everything: the parent kills the child when it expires. The wire protocols are
in ``wsclient.py``, the verdicts on network and TLS errors (and the clock) in ``verdicts.py``.

Failure classes (``CheckError.kind``):

=====================  =====================================================================
``config``             an argument that cannot work (URL, trust without ca_file, run_as as a
                       non-root other user, unreadable ``ca_file``)
``client_credentials`` client.crt / client.key unreadable by the agent's user, or not a pair
``client_cert_expired`` client.crt expired (or not yet valid with the server's clock agreeing)
``clock``              the device clock is the likely cause (off from the server's ``Date``)
``connection``         DNS, refused or reset connection, server closed without answering
``timeout``            the total deadline expired
``tls_protocol``       no TLS 1.2+ on that port, no shared cipher, a non-certificate alert
``untrusted_server``   the agent's trust (default store, or ``SSL_CERT_FILE``) rejects the server
``hostname_mismatch``  the server certificate does not name the host the agent connects to
``server_cert_expired`` the server's certificate expired / is not yet valid (its clock agrees)
``refused``            the step that checks certificates refused: 401/403 on the upgrade, ``44``
                       on CONNECT, nginx ``400 The SSL certificate error``, a certificate alert
``http_status``        an HTTP status that is no certificate verdict (https 401/403, 5xx, ...)
``protocol``           the server does not speak the protocol there (404/200 to an upgrade,
                       a wrong accept key, no Engine.IO answer)
=====================  =====================================================================

Standard library only; Python 3.9+. No key byte is ever read by this code (OpenSSL loads the
key) nor put in a result or message.
"""
from __future__ import annotations

import datetime
import json
import os
import pwd
import select
import signal
import socket
import ssl
import time
from urllib.parse import urlsplit

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import der, names, verdicts, wsclient
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import CheckError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.location import DEFAULT_PATH
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.option_table import TRUSTS

PROTOCOL_PATHS = {"websocket": "/ws", "socketio": "/socket.io/", "https": "/"}
GRACE = 0.5  # seconds the parent waits past the deadline for the child's own verdict
FILE_LIMIT = 1024 * 1024
CLOSE_LISTEN = 1.0  # seconds to listen for a TLS 1.3 alert after a bare close
UTC = datetime.timezone.utc
RESULT_KEYS = ("agent_id", "protocol", "url", "trust", "ca_file", "tls_version", "cipher", "server_subject",
               "client_fingerprint_sha256", "client_not_after", "client_days_left", "status", "sid", "elapsed_ms")


class Target:
    """Where the agent connects: ``host``, ``port``, the request target and the URL shown."""

    def __init__(self, server_url, protocol, path):
        parts = urlsplit(server_url or "")
        try:
            port = parts.port or 443
        except ValueError:
            raise CheckError("config", "server_url has an invalid port: %r" % server_url)
        if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/") or parts.query:
            raise CheckError("config", "%s must be https://host[:port], where the agent connects (got %r); "
                             "give an endpoint path in %s"
                             % (names.setting("server_url"), server_url, names.setting("verify_url")))
        if path is not None and not path.startswith("/"):
            raise CheckError("config", "the path to check must start with '/' (got %r)" % path)
        target = path or PROTOCOL_PATHS[protocol]
        if protocol == "socketio" and "EIO=" not in target:
            target += ("&" if "?" in target else "?") + "EIO=4&transport=websocket"
        self.host, self.port, self.target = parts.hostname, port, target
        host = "[%s]" % self.host if ":" in self.host else self.host
        self.host_header = host if port == 443 else "%s:%d" % (host, port)
        self.where = "%s:%d" % (host, port)
        self.url = "https://%s%s" % (self.host_header, target)


class _Job:
    """Everything the child needs (it is a fork: no serialisation)."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


def split_url(server_url, url):
    """(server URL, request path): ``url``, when given, replaces both."""
    if not url:
        return server_url, None
    parts = urlsplit(url)
    return "%s://%s" % (parts.scheme, parts.netloc), (parts.path or "/") + ("?" + parts.query if parts.query else "")


def run_agent_check(identity_dir, server_url, protocol="websocket", path=None, trust="system", ca_file=None,
                    run_as=None, timeout=10, status_code=(200,), now=None):
    """Check as the agent: return the result dict (``RESULT_KEYS``) or raise ``CheckError``.

    ``identity_dir`` is the agent's ``~/.mtls`` (``~`` is the agent's HOME; default
    ``location.DEFAULT_PATH``); ``run_as`` ``(uid, gid, home)`` the agent's user; ``now`` the device
    clock (an aware datetime) for the check's own date comparisons."""
    started = time.monotonic()
    if protocol not in PROTOCOL_PATHS:
        raise CheckError("config", "%s must be one of %s"
                         % (names.setting("verify_protocol"), ", ".join(PROTOCOL_PATHS)))
    target = Target(server_url, protocol, path)
    _validate(trust, ca_file, run_as, timeout)
    result = dict.fromkeys(RESULT_KEYS, "")
    result.update(protocol=protocol, url=target.url, trust=trust, ca_file=ca_file or "",
                  client_days_left=None, status=None, elapsed_ms=None)
    job = _Job(identity_dir=identity_dir or DEFAULT_PATH, target=target, protocol=protocol, trust=trust,
               ca_file=ca_file, run_as=run_as, timeout=timeout, status_code=tuple(status_code),
               now=now, deadline=started + timeout, result=result)
    message = _run_forked(lambda report: _agent_side(job, report), job.deadline + GRACE)
    elapsed = int((time.monotonic() - started) * 1000)
    if "ok" in message:
        return dict(message["ok"], elapsed_ms=elapsed)
    if "error" in message:
        kind, text, details = message["error"]
        raise CheckError(kind, text, **dict(details, elapsed_ms=elapsed))
    partial = dict(message.get("last", {}).get("result", result), elapsed_ms=elapsed)
    phase = message.get("last", {}).get("phase", "starting")
    if "killed" in message:
        raise CheckError("timeout", "timeout: the check of %s did not finish within %s s (its total deadline); it "
                         "was %s" % (target.url, timeout, phase), **partial)
    raise CheckError("protocol", "the check failed unexpectedly while %s (%s)" % (phase, message.get("crash")),
                     **partial)


def _validate(trust, ca_file, run_as, timeout):
    trust_name, ca_name = names.setting("agent_trust"), names.setting("server_ca", "server_ca_src")
    if trust not in TRUSTS:
        raise CheckError("config", "%s must be system or ca_file (got %r)" % (trust_name, trust))
    if trust == "ca_file" and not (ca_file and os.path.isabs(ca_file)):
        raise CheckError("config", "%s ca_file needs %s: the absolute path of the server CA file the agent's "
                         "SSL_CERT_FILE names" % (trust_name, ca_name))
    if trust == "system" and ca_file:
        raise CheckError("config", "%s is set but %s is system: the agent would not use it (set %s ca_file)"
                         % (ca_name, trust_name, trust_name))
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise CheckError("config", "%s must be a positive number of seconds" % names.setting("verify_timeout"))
    if run_as is not None and os.geteuid() not in (0, run_as[0]):
        raise CheckError("config", "the check runs as uid %d but the agent's user is uid %d: run it as root "
                         "(become) or as that user, so it reads what the agent reads" % (os.geteuid(), run_as[0]))


# --------------------------------------------------------------------------- the forked child


def _run_forked(work, kill_at):
    """Run ``work(report)`` in a forked child and return its last message: ``{"ok": result}``,
    ``{"error": [kind, message, details]}``, or, with the last progress report as ``last``,
    ``{"killed": True}`` (``kill_at`` passed) / ``{"crash": text}``."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: whatever happens, it ends here and never returns to the caller
        code = 70
        try:
            os.close(read_fd)
            message = {"ok": work(lambda progress: _send(write_fd, {"progress": progress}))}
        except CheckError as exc:
            message = {"error": [exc.kind, exc.message, exc.details]}
        except BaseException as exc:  # noqa: B036 - the child must report anything, then exit
            message = {"crash": "%s: %s" % (type(exc).__name__, exc)}
        try:
            _send(write_fd, message)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        return _collect(read_fd, kill_at)
    finally:
        os.close(read_fd)
        try:
            os.kill(pid, signal.SIGKILL)  # a no-op on a child that already exited (not yet reaped)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


def _send(fd, message):
    data = (json.dumps(message, default=str) + "\n").encode("utf-8")
    while data:
        data = data[os.write(fd, data):]


def _collect(fd, kill_at):
    buffer, last = b"", {}
    while True:
        remaining = kill_at - time.monotonic()
        if remaining <= 0:
            return {"killed": True, "last": last}
        if not select.select([fd], [], [], remaining)[0]:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return {"crash": "the child process ended without a verdict", "last": last}
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            message = json.loads(line.decode("utf-8"))
            if "progress" not in message:
                return dict(message, last=last)
            last = message["progress"]


def _agent_side(job, report):
    """The child's work: become the agent, read its identity, connect as it does."""
    result, state = job.result, {"phase": "becoming the agent's user"}

    def step(phase):
        state["phase"] = phase
        report({"phase": phase, "result": result})

    try:
        _become_agent(job)
        step("reading the identity")
        crt, key = _identity_files(job)
        cert = _read_client_certificate(crt, key)
        now = job.now or datetime.datetime.now(UTC)
        result.update(agent_id=cert["cn"], client_fingerprint_sha256=cert["fingerprint_sha256"],
                      client_not_after=cert["not_after"].isoformat(),
                      client_days_left=int((cert["not_after"] - now).total_seconds() // 86400))
        verdicts.check_client_validity(job, cert, now, crt)
        context = agent_context(crt, key)
        step("connecting to %s" % job.target.where)
        tls = _connect(job, context, step)
        with tls:
            step("in the %s exchange with %s" % (job.protocol, job.target.url))
            wire = wsclient.Wire(tls, job.deadline)
            result.update(wsclient.exchange(job.protocol, wire, job.target.target, job.target.host_header,
                                            job.target.url, job.status_code))
        return result
    except CheckError as exc:
        error = exc
    except (OSError, wsclient.ConnectionClosed) as exc:
        error = verdicts.network_error(job, exc, state["phase"], job.now)
        if error.kind == "connection" and result["tls_version"] == "TLSv1.3":
            error = _alert_after_handshake(job, context, state["phase"]) or error
    error.details = dict(result, **error.details)
    raise error


def _alert_after_handshake(job, context, phase):
    """With TLS 1.3 a server refuses the client certificate after the client's side of the
    handshake is done; when the request was already on its way, the server's reset discards its
    alert and the client sees a bare close. Connect again and listen before sending anything:
    the verdict for that alert, or None."""
    try:
        with _connect(job, context, lambda _phase: None) as tls:
            tls.settimeout(min(_remaining(job), CLOSE_LISTEN))
            tls.recv(1)
    except ssl.SSLError as exc:
        if not isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            return verdicts.network_error(job, exc, phase, job.now)
    except (OSError, wsclient.ConnectionClosed):
        pass
    return None


def _become_agent(job):
    """The agent's environment and user: only its own trust variables, its HOME, its uid."""
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        os.environ.pop(name, None)
    if job.trust == "ca_file":
        os.environ["SSL_CERT_FILE"] = job.ca_file
    if job.run_as is None:
        return
    uid, gid, home = job.run_as
    os.environ["HOME"] = home
    if os.geteuid() == 0:
        try:
            os.setgroups(_groups_of(uid, gid))
            os.setgid(gid)
            os.setuid(uid)
        except OSError as exc:
            raise CheckError("config", "cannot become the agent's user (uid %d, gid %d): %s" % (uid, gid, exc.strerror))


def _groups_of(uid, gid):
    try:
        return os.getgrouplist(pwd.getpwuid(uid).pw_name, gid)
    except (KeyError, OSError):
        return [gid]


def _whoami():
    try:
        return "uid %d (%s)" % (os.geteuid(), pwd.getpwuid(os.geteuid()).pw_name)
    except KeyError:
        return "uid %d" % os.geteuid()


def _identity_files(job):
    directory = os.path.expanduser(job.identity_dir)
    if not os.path.isabs(directory):
        raise CheckError("config", "%s must be an absolute path or start with ~ (got %r)"
                         % (names.setting("path"), job.identity_dir))
    if job.trust == "ca_file":
        _check_ca_file(job.ca_file)
    return os.path.join(directory, "client.crt"), os.path.join(directory, "client.key")


def _check_ca_file(path):
    """OpenSSL silently ignores an unreadable SSL_CERT_FILE: say so instead of 'untrusted'."""
    try:
        with open(path, encoding="latin-1") as handle:
            der.pem_certificate_der(handle.read(FILE_LIMIT))
    except OSError as exc:
        raise CheckError("config", "the agent (%s) cannot read SSL_CERT_FILE=%s (%s): OpenSSL would ignore it and "
                         "trust only its default store" % (_whoami(), path, exc.strerror))
    except ValueError:
        raise CheckError("config", "SSL_CERT_FILE=%s holds no PEM certificate: the agent would trust only "
                         "OpenSSL's default store" % path)


def _read_client_certificate(crt, key):
    for path in (crt, key):  # open only: OpenSSL reads the key, this code never does
        try:
            os.close(os.open(path, os.O_RDONLY))
        except OSError as exc:
            raise CheckError("client_credentials", "cannot read %s as %s (%s): the agent running as that user "
                             "cannot either - re-run the provisioning (it repairs the identity)"
                             % (path, _whoami(), exc.strerror))
    try:
        with open(crt, encoding="latin-1") as handle:
            return der.parse_certificate(handle.read(FILE_LIMIT))
    except (OSError, ValueError) as exc:
        raise CheckError("client_credentials", "the client certificate %s is not a valid certificate (%s) - "
                         "re-run the provisioning (it repairs the identity)" % (crt, getattr(exc, "strerror", exc)))


def agent_context(crt, key):
    """The stock agent's SSLContext (``src/tools/ssl.py``), step for step."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(crt, key)
    except (ssl.SSLError, OSError) as exc:
        mismatch = "KEY_VALUES_MISMATCH" in str(getattr(exc, "reason", "")) or "mismatch" in str(exc).lower()
        detail = "the private key does not belong to the certificate" if mismatch else "not valid PEM (%s)" % (
            getattr(exc, "reason", None) or getattr(exc, "strerror", None) or "unreadable")
        raise CheckError("client_credentials", "cannot load the client credentials %s / %s: %s - re-run the "
                         "provisioning (it repairs the identity)" % (crt, key, detail))
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _connect(job, context, step):
    sock = socket.create_connection((job.target.host, job.target.port), timeout=_remaining(job))
    try:
        step("in the TLS handshake with %s" % job.target.where)
        sock.settimeout(_remaining(job))
        tls = context.wrap_socket(sock, server_hostname=job.target.host)
    except BaseException:
        sock.close()
        raise
    peer = tls.getpeercert() or {}
    job.result.update(tls_version=tls.version() or "", cipher=(tls.cipher() or ("",))[0],
                      server_subject=_common_name(peer.get("subject", ())))
    return tls


def _remaining(job):
    remaining = job.deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout("deadline")
    return remaining


def _common_name(subject):
    found = ""
    for rdn in subject:
        for key, value in rdn:
            if key == "commonName":
                found = value
    return found
