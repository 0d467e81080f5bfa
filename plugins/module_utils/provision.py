# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One device's whole job in one module run, in the order that keeps a running agent safe.

    identity     the engine: nothing to do, repair, create, rotate (one transaction)
    config       the agent's files staged beside the live ones; when they changed, checked
                 with the staged settings (the agent-true check) and swapped in only if the
                 check passed: a refused configuration leaves the live one byte-for-byte
    restart      right after this host's own swap, when the agent's pair or a file it reads
                 changed: the registry refuses the old certificate from the moment the upload
                 was accepted, so the time until the restart is the agent's blackout
    verify       the agent-true check of the live settings (unless the staged check already
                 proved exactly them)
    confirm      with ``confirm=heartbeat``, the cloud's view of the running agent (confirm.py):
                 after a swap or a restart, polled until it shows an agent started since then;
                 otherwise asked once, and an agent still on an identity older than the last
                 swap is restarted (owed) and confirmed. When the controller holds the token,
                 the question is handed over to it (``result["confirmation"]``)

A later phase failing never hides an earlier one: the identity part is reported as it
happened, the agent is restarted when its identity changed even if its configuration was
refused, and the run fails on the phase that failed, with one message.
"""
from __future__ import annotations

import datetime
import json
import time

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import confirm
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.agent_files import Staging
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.certinfo import parse_time
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.check import split_url
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ApiError, IdentityError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.layout import CERT, RESTART_OWED
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.names import setting
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.restart import RestartError

NEW_PAIR_ACTIONS = ("created", "rotated", "restored")
STATUS_KEYS = ("agent_id", "action", "reason", "fingerprint_sha256", "serial", "not_before",
               "not_after", "days_left", "key_size", "replaces")


class PhaseFailed(Exception):
    def __init__(self, phase, msg, registry_uncertain=False):
        super().__init__(msg)
        self.phase = phase
        self.msg = msg
        self.registry_uncertain = registry_uncertain  # a journal was left (see identity/journal.py)


class Job:
    """Everything one run needs. ``identity(idir, check_mode)`` runs the engine on the open
    directory (None: missing) and returns (its result, the directory it worked in, which it may
    have created); ``check`` runs the agent-true check (run_agent_check's arguments); ``runner``
    runs a command: argv -> (rc, stdout, stderr). ``agent``: agent_files.AgentConfig;
    ``restart``: restart.Restart; ``verify``: options.Verify; ``confirm``: confirm.Confirm.
    ``phases`` are the phases to run (the role maps its tags to them); the others only report."""

    def __init__(self, *, agent, restart, verify, identity, check, runner, run_as, renew_before_days, check_mode,
                 warn, phases, confirm):
        self.phases = tuple(phases)
        self.confirm = confirm
        self.accepted_at = None  # set by the identity phase when the registry took a new pair
        self.swapped_at = None  # time.monotonic() when the new pair was renamed into place
        self.restarted_at = None  # time.monotonic() when a restart that restarted the agent began
        self.idir = None  # the open identity directory, set by run()
        self.restart_owed = False  # a previous run's restart failed (RESTART_OWED in the directory)
        self.agent = agent
        self.restart = restart
        self.verify = verify
        self.identity = identity
        self.check = check
        self.runner = runner
        self.run_as = run_as
        self.renew_before_days = renew_before_days
        self.check_mode = check_mode
        self.warn = warn
        self.diffs = []  # the agent files' diffs (ansible's before/after)


def blank_status():
    status = dict.fromkeys(STATUS_KEYS, "")
    status.update({
        "days_left": None, "key_size": None, "renew_after": "", "audit": "", "config": "", "config_changed": False,
        "restarted": False, "blackout_ms": None, "verify": "not run", "verify_failure": "",
        "verify_protocol": "", "tls_version": "", "phase": "", "error": "", "takeover": "",
        "cloud": confirm.NOT_ASKED, "agent_uptime_s": None, "heartbeat_at": "",
        "keygen": "", "keygen_ms": None, "keygen_wait_ms": None,
        "checked_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    })
    return status


def run(job, idir):
    """Run the job on the open, locked identity directory ``idir`` (None in check mode when it
    does not exist yet).

    Returns (status, identity result, changed). Raises PhaseFailed after recording what
    happened in ``status`` (status is then attached to the exception as ``.status``)."""
    status = blank_status()
    result = {}
    job.idir = idir
    job.restart_owed = idir is not None and idir.exists(RESTART_OWED)
    try:
        result = _identity(job, idir, status)
        changed = bool(result.get("changed"))
        changed = _config_restart_verify(job, job.idir, status, result) or changed
        changed = _confirm(job, status, result) or changed
    except PhaseFailed as exc:
        status["phase"], status["error"] = exc.phase, exc.msg
        exc.status, exc.result = status, result
        raise
    return status, result, changed


def _identity(job, idir, status):
    skipped = "identity" not in job.phases
    try:
        result, job.idir = job.identity(idir, job.check_mode or skipped)
    except IdentityError as exc:
        raise PhaseFailed("identity", exc.msg, getattr(exc, "registry_uncertain", False)) from None
    job.accepted_at = result.pop("registry_accepted_at", None)
    job.swapped_at = result.pop("swapped_at", None)
    status.update(result.pop("keygen_made", None) or {})
    status["audit"] = result.pop("audit", "")
    status["takeover"] = result.get("takeover", "")
    if skipped and result.get("changed"):
        result["reason"] = "the identity phase was not run (tags): it would be %s (%s)" % (
            result["action"], result.get("reason", ""))
        result["action"], result["changed"] = "skipped", False
    for key in STATUS_KEYS:
        if result.get(key) is not None:
            status[key] = result[key]
    status["renew_after"] = _renew_after(result.get("not_after"), job.renew_before_days)
    return result


def _config_restart_verify(job, idir, status, result):
    new_pair = result.get("action") in NEW_PAIR_ACTIONS and not job.check_mode
    if "config" not in job.phases:
        status["config"] = "skipped"
        restarted = (new_pair or job.restart_owed) and not job.check_mode and _restart(job, status, result)
        _verify(job, status, result, False, new_pair)
        return bool(new_pair or restarted)
    staging = Staging(idir, job.agent, check_mode=job.check_mode)
    try:
        try:
            changed = staging.prepare()
        except (IdentityError, OSError) as exc:
            staging.abort()
            _restart_after_failure(job, status, result, new_pair)
            raise PhaseFailed("config", "cannot write the agent's configuration: %s%s" % (
                _reason(exc), _identity_part(result, new_pair))) from None
        job.diffs = staging.diffs
        status["config"] = "changed" if changed or staging.mode_fixes else "unchanged"
        status["config_changed"] = bool(changed)
        proven = False
        if changed and job.verify.enabled and not job.check_mode:
            failure = _check(job, status, ca_file=staging.staged_server_ca())
            if failure is not None:
                staging.abort()
                status["config"] = "refused"
                status["config_changed"] = False
                _restart_after_failure(job, status, result, new_pair)
                raise PhaseFailed("config", "the new agent configuration was not applied (%s), the live one "
                                  "is unchanged: %s%s" % (", ".join(changed), failure,
                                                          _identity_part(result, new_pair)))
            proven = True
        staging.commit()
    finally:
        staging.close()
    restarted = False
    if (new_pair or staging.restart_needed or job.restart_owed) and not job.check_mode:
        restarted = _restart(job, status, result, daemon_reload=staging.dropin_changed)
    _verify(job, status, result, proven, bool(changed) or new_pair)
    return bool(changed or staging.mode_fixes or restarted)


def _identity_part(result, new_pair):
    if not new_pair:
        return ""
    return ("; the identity part succeeded (%s %s, registered)" % (result.get("action"), result.get("agent_id")))


def _restart(job, status, result, daemon_reload=False):
    """Restart the agent; a failed restart is recorded in the identity directory, so the next
    run restarts it even when nothing changes any more (the agent still holds the old pair).
    A method that restarted nothing (no docker, no such container) fails the same way unless
    the cloud is to decide (confirm=heartbeat), restarting was switched off (none), or the
    device had no identity before (a new agent reads it when it starts)."""
    r = job.restart
    started = time.monotonic()
    try:
        outcome = r.run(job.runner, daemon_reload=daemon_reload)
    except RestartError as exc:
        _owe_restart(job, exc.msg)
        raise PhaseFailed("restart", exc.msg + "; the next run restarts the agent again") from None
    if outcome.restarted:
        job.restarted_at = started
    elif not job.confirm.enabled and r.method != "none" and result.get("action") != "created":
        _owe_restart(job, outcome.detail)
        raise PhaseFailed("restart", "%s: the running agent keeps presenting its old certificate, which the "
                          "registry now refuses. Start the agent (or set %s=none if it is restarted "
                          "otherwise); the next run restarts it again" % (
                              outcome.detail, setting("agent_restart")))
    if job.restart_owed:
        job.idir.unlink(RESTART_OWED)
        job.restart_owed = False
        result["reason"] = (result.get("reason", "") + "; the agent was restarted: a previous run's restart "
                            "had failed").lstrip("; ")
        status["reason"] = result["reason"]
    status["restarted"] = outcome.restarted
    accepted = job.accepted_at
    if outcome.restarted and accepted is not None:
        status["blackout_ms"] = int(round((time.monotonic() - accepted) * 1000))
    if not outcome.restarted:
        status["reason"] = "; ".join(part for part in (status.get("reason"), outcome.detail) if part)
        if result.get("action") == "rotated":
            job.warn("%s; it keeps presenting its old certificate, which the registry now refuses, "
                     "until it is restarted" % outcome.detail)
    return outcome.restarted


def _owe_restart(job, why):
    if job.idir is None or job.check_mode:
        return
    record = json.dumps({"since": blank_status()["checked_at"], "why": why[:300]}) + "\n"
    job.idir.create("." + RESTART_OWED + ".new", record.encode("utf-8"), 0o600)
    job.idir.rename("." + RESTART_OWED + ".new", RESTART_OWED)
    job.idir.fsync()


def _restart_after_failure(job, status, result, new_pair):
    """The identity changed but a later phase failed: the registry already refuses the old
    certificate, so the agent must pick up the new pair anyway."""
    if not new_pair:
        return
    try:
        _restart(job, status, result)
    except PhaseFailed as exc:
        job.warn("restarting the agent after its identity changed failed too: %s" % exc.msg)


def _verify(job, status, result, proven, changed):
    """Verify the live settings unless the staged check proved exactly them; a container agent's
    own configuration (mount, SSL_CERT_FILE) is inspected either way."""
    v = job.verify
    status["verify_protocol"] = v.protocol
    # In check mode the live pair and files are checked as they are; only a device without an
    # identity has nothing to check.
    would_change = job.check_mode and status.get("audit") == "missing"
    if not proven and (not v.enabled or would_change or (not changed and not v.unchanged)):
        status["verify"] = "skipped"  # off, not on the device yet (check mode), or unchanged
        return
    failure = _container_problem(job)
    if failure is not None:
        status["verify"], status["verify_failure"] = "failed", "container"
    elif not proven:
        failure = _check(job, status, ca_file=job.agent.server_ca)
    if failure is not None:
        raise PhaseFailed("verify", failure)


def _container_problem(job):
    """What the restart method's inspection finds wrong with what the agent gets (docker: its
    container's mount and environment), or None."""
    try:
        return job.restart.inspect(job.runner, job.agent)
    except RestartError as exc:
        return exc.msg


def _check(job, status, ca_file):
    """Run the check (with the retries it deserves); record it in ``status``; return None or
    the failure message (naming the live CA file, not its staged copy)."""
    v = job.verify
    status["verify_protocol"] = v.protocol
    server_url, path = split_url(job.agent.server_url, v.url)
    attempt = 0
    while True:
        try:
            outcome = job.check(
                job.agent.identity_dir, server_url, protocol=v.protocol, path=path, trust=job.agent.trust,
                ca_file=ca_file if job.agent.trust == "ca_file" else None, run_as=job.run_as,
                timeout=v.timeout, status_code=v.status_code)
        except IdentityError as exc:  # CheckError
            kind = getattr(exc, "kind", "check")
            if kind in v.RETRY_ON and attempt < v.retries:
                attempt += 1
                v.sleep(v.delay)
                continue
            status["verify"], status["verify_failure"] = "failed", kind
            msg = exc.msg
            if ca_file and job.agent.server_ca and ca_file != job.agent.server_ca:
                msg = msg.replace(ca_file, "%s (the new one)" % job.agent.server_ca)
            if kind == "refused" and status.get("action") not in NEW_PAIR_ACTIONS:
                # This run registered nothing: the registry holds another certificate for the ID
                # (rotated elsewhere, restored from a backup) or none, and a rotation heals that.
                msg += ("; the registry does not hold this device's certificate for %s: when another one "
                        "was uploaded for it (a rotation elsewhere, a restored backup), run with %s=always "
                        "to register a new pair under the same ID" % (status.get("agent_id") or "its ID",
                                                                      setting("rotate")))
            return msg
        status["verify"], status["verify_failure"] = "ok", ""
        status["tls_version"] = outcome.get("tls_version", "")
        return None


def _confirm(job, status, result):
    """The cloud's view of the running agent (see the module docstring); returns whether it
    restarted the agent (an owed restart). Records the view in ``status``; hands the question
    over to the controller when it holds the token; raises PhaseFailed("confirm")."""
    c = job.confirm
    agent_id = status.get("agent_id")
    if not c.enabled or not agent_id or "verify" not in job.phases:
        return False
    if job.check_mode and not (c.audit and c.by == "controller"):
        return False  # check mode asks nothing; an audit has the controller ask (the token stays there)
    reference, label = _reference(job, result)
    healed = False
    if reference is None:
        if not _review(job, status, result, agent_id):
            return False
        reference, label, healed = job.restarted_at, "the restart", True
    _wait(job, status, result, agent_id, reference, label)
    return healed


def _review(job, status, result, agent_id):
    """A run that changed nothing for the agent: one answer (the controller's, asked before the
    module, or the module's own), reported. Returns True when it restarted an agent the cloud
    shows on an identity older than the last swap (it must then confirm the restart)."""
    c = job.confirm
    age = _identity_age(job)
    if c.view is not None and c.view.agent_id == agent_id:
        view = c.view
    elif c.by == "controller":  # it asks once, after the module
        result["confirmation"] = {"agent_id": agent_id, "since_s": age, "wait": False, "reference": "the last swap"}
        return False
    else:
        view = _ask_once(job, agent_id)
        if view is None:
            return False
    status.update(confirm.report_fields(view))
    outcome, message = confirm.review(view, age, audit=c.audit, stale_minutes=c.stale_minutes,
                                      taken_over=bool(status.get("takeover")))
    if outcome == "fail":
        raise PhaseFailed("confirm", message)
    if outcome == "ok":
        return False
    if job.restart.method == "none":
        raise PhaseFailed("confirm", "%s; %s is none: restart it yourself" % (
            message, setting("agent_restart")))
    _restart(job, status, result)  # owed: the agent still runs the identity swapped out
    result["reason"] = status["reason"] = "; ".join(part for part in (
        result.get("reason"), "the agent was restarted: " + message) if part)
    if job.restarted_at is None:  # nothing restarted: the cloud decides
        job.restarted_at = time.monotonic()
    return True


def _wait(job, status, result, agent_id, reference, label):
    """Poll until the cloud shows an agent started after ``reference`` (or hand the question
    over to the controller); raise PhaseFailed with the cloud's last answer otherwise."""
    c = job.confirm
    if c.by == "controller":
        result["confirmation"] = {"agent_id": agent_id, "since_s": time.monotonic() - reference, "wait": True,
                                  "reference": label}
        return
    try:
        verdict = confirm.poll(lambda: c.ask(agent_id), lambda: time.monotonic() - reference, c.timeout,
                               reference=label, interval=c.interval, sleep=c.sleep)
    except ApiError as exc:
        raise PhaseFailed("confirm", "the cloud could not be asked about agent %s: %s" % (agent_id, exc.msg)) from None
    status.update(confirm.report_fields(verdict.heartbeat))
    if not verdict.ok:
        raise PhaseFailed("confirm", confirm.failure(agent_id, verdict, c.timeout))


def _reference(job, result):
    """(time.monotonic() after which the agent must have started, its name) for this run: the
    restart it made, else the swap of a pair an agent was running with; (None, "") when neither
    happened: nothing to wait for (a new device's agent, started by nobody yet, connects when it
    starts; it is reported as the cloud sees it)."""
    if job.restarted_at is not None:
        return job.restarted_at, "the restart"
    if job.swapped_at is not None and result.get("action") != "created":
        return job.swapped_at, "the swap"
    return None, ""


def _identity_age(job):
    """Seconds since the pair in place was swapped in: the certificate's mtime against this
    device's clock (one clock: the file system's and the module's)."""
    st = job.idir.lstat(CERT) if job.idir is not None else None
    if st is None:
        return 0.0
    return max(0.0, time.time() - st.st_mtime)


def _ask_once(job, agent_id):
    """The module's one question of an unchanged run: the Heartbeat, or None after a warning
    when the cloud cannot be asked (the run's own job is done; an audit fails)."""
    try:
        return job.confirm.ask(agent_id)
    except ApiError as exc:
        message = "the cloud could not be asked about agent %s: %s" % (agent_id, exc.msg)
        if job.confirm.audit:
            raise PhaseFailed("confirm", message) from None
        job.warn(message)
        return None


def _renew_after(not_after, renew_before_days):
    if not not_after:
        return ""
    moment = parse_time(not_after)
    if moment is None:
        return ""
    return (moment - datetime.timedelta(days=renew_before_days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _reason(exc):
    if isinstance(exc, IdentityError):
        return exc.msg
    return "%s%s" % (exc.strerror or exc.__class__.__name__,
                     " (%s)" % exc.filename if isinstance(getattr(exc, "filename", None), str) else "")
