# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether the cloud confirms the running agent, and what it says about an agent ID.

The api-service keeps the last heartbeat each agent sent over a Socket.IO session whose
``connect`` presented the registered certificate (``api.ProvisioningClient.heartbeat``). Its
``uptime`` is the seconds since the agent's process started. So, after a swap (or a restart),
"status ``active`` and uptime <= the seconds since then" means that an agent process started
after the new pair was in place connected, and the cloud validated its certificate at connect.
The seconds since then are measured where the question is asked (the device's or the
controller's monotonic clock, never one clock against another); the agent counts its uptime
from a moment after its start, which keeps the comparison safe in that direction.

``judge`` gives one of these verdicts:

==========  ======================================================================================
confirmed   active, uptime <= the seconds since the reference (the swap, the restart)
old         active, uptime > that: an agent process older than the swap, still on the old identity
inactive    the agent's session closed (the cloud's ``inactive``) since its last heartbeat
unseen      the route's 404: the cloud never heard from the agent (or forgot it: in memory only)
==========  ======================================================================================

After a change the cloud is polled (``poll``) until it confirms, within a timeout; an unchanged
run asks once and reports (``review``): only an agent on an identity older than the last swap
calls for something (a restart). The same view tells whether an agent ID is held by a device
(``holder_evidence``), before a creation claims it.
"""
from __future__ import annotations

import calendar
import time

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ApiError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.names import setting

NOT_ASKED = "not asked"
CLOUD_STATES = ("active", "inactive", "unseen", NOT_ASKED)
POLL_SECONDS = 1.0


class Confirm:
    """How the cloud is asked in one run. ``mode``: heartbeat or none; ``by``: who asks (the
    ``module`` with the device's token, or the ``controller``, which then gets the question
    handed over); ``ask(agent_id)``: the module's question (a Heartbeat); ``view``: the
    controller's answer asked before the module ran (a Heartbeat or None; ``view_error``: why
    there is none, when asking failed); ``audit``: a read-only audit, in check mode, where only
    the controller asks (the token stays there), and silent agents are flagged."""

    def __init__(self, *, mode, by, timeout, ask, view, view_error, audit, stale_minutes, interval=POLL_SECONDS,
                 sleep=time.sleep):
        self.mode = mode
        self.by = by
        self.timeout = float(timeout)
        self.ask = ask
        self.view = view
        self.view_error = view_error
        self.audit = audit
        self.stale_minutes = stale_minutes
        self.interval = interval
        self.sleep = sleep

    @property
    def enabled(self):
        return self.mode == "heartbeat"


class Verdict:
    def __init__(self, kind, heartbeat, message):
        self.kind = kind  # confirmed | old | inactive | unseen
        self.heartbeat = heartbeat
        self.message = message

    @property
    def ok(self):
        return self.kind == "confirmed"

    def __repr__(self):  # for test failure output
        return "Verdict(%s, %r)" % (self.kind, self.message)


def judge(hb, since_s, reference="the swap"):
    """The Verdict on Heartbeat ``hb`` for an agent that must have started less than
    ``since_s`` seconds ago (after ``reference``)."""
    if not hb.seen:
        return Verdict("unseen", hb, "404 never seen (%s)" % (hb.detail or "no heartbeat data"))
    if not hb.active:
        return Verdict("inactive", hb, "%s since %s" % (hb.status, hb.timestamp or "an unknown time"))
    if hb.uptime is None:
        return Verdict("old", hb, "active, but its heartbeat carries no uptime: nothing shows that it "
                                  "started after %s" % reference)
    if hb.uptime > since_s:
        return Verdict("old", hb, "active but started before %s: the agent still runs the old identity "
                                  "(uptime %ds, %s was %ds ago)" % (reference, hb.uptime, reference, since_s))
    return Verdict("confirmed", hb, "active, uptime %ds (%s was %ds ago)" % (hb.uptime, reference, since_s))


def transient(exc):
    """An ApiError that another question may not meet (no answer, 429, 5xx)."""
    return exc.status is None or exc.status == 429 or (exc.status or 0) >= 500


def poll(ask, since, timeout, reference="the swap", interval=POLL_SECONDS, sleep=time.sleep,
         clock=time.monotonic):
    """Ask until the cloud confirms, or ``timeout`` seconds are over: the last Verdict.
    ``since()``: the seconds since the reference, now (taken before each question, so the
    bound is never looser than the answer). A transient error is asked again; any other
    ApiError (a 403, a wrong route) is raised at once, as is a transient one when no question
    was ever answered."""
    deadline = clock() + timeout
    verdict, error = None, None
    while True:
        bound = since()
        try:
            verdict = judge(ask(), bound, reference)
        except ApiError as exc:
            if not transient(exc):
                raise
            error = exc
        if verdict is not None and verdict.ok:
            return verdict
        if clock() + interval > deadline:
            break
        sleep(interval)
    if verdict is None:
        raise error
    return verdict


def failure(agent_id, verdict, timeout, waited=True):
    """The message of a host whose agent the cloud does not confirm."""
    if not waited:
        return "the cloud shows agent %s %s" % (agent_id, verdict.message)
    return "the cloud does not confirm agent %s within %gs (%s): %s" % (
        agent_id, timeout, setting("confirm_timeout"), verdict.message)


def report_fields(hb):
    """The report row's view of the cloud: cloud, agent_uptime_s, heartbeat_at."""
    if hb is None:
        return {"cloud": NOT_ASKED, "agent_uptime_s": None, "heartbeat_at": ""}
    if not hb.seen:
        return {"cloud": "unseen", "agent_uptime_s": None, "heartbeat_at": ""}
    return {"cloud": "active" if hb.active else "inactive",
            "agent_uptime_s": int(hb.uptime) if hb.uptime is not None else None,
            "heartbeat_at": hb.timestamp or ""}


def epoch(timestamp):
    """Seconds since the epoch of the agent's ISO ``timestamp`` (its local time, read as UTC when
    it carries no offset, as the stock agent in its container sends it), or None."""
    import datetime

    try:
        moment = datetime.datetime.fromisoformat(str(timestamp).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc)
    return calendar.timegm(moment.timetuple()) + moment.microsecond / 1e6


def silence(hb, stale_minutes, now=None):
    """Why an audit flags the agent (silent for longer than ``stale_minutes``), or None. The
    last heartbeat's time is the agent's clock: compared with this one, so only silences far
    longer than a clock's drift are worth a flag."""
    if not hb.seen:
        return "the cloud has no heartbeat from agent %s (never seen, or not since the cloud restarted)" % hb.agent_id
    if hb.active:
        return None
    when = epoch(hb.timestamp)
    now = time.time() if now is None else now
    if when is None or now - when > stale_minutes * 60:
        return "agent %s has been silent for more than %d minutes (%s): %s since %s" % (
            hb.agent_id, stale_minutes, setting("confirm_stale_minutes"), hb.status, hb.timestamp or "an unknown time")
    return None


def review(hb, identity_age_s, audit=False, stale_minutes=None, now=None, taken_over=False):
    """What one answer means for a run that changed nothing for the agent: (``ok`` | ``heal`` |
    ``fail``, message). ``identity_age_s``: the seconds since the pair in place was swapped in.
    An agent on an older identity is owed a restart (``heal``; an audit flags it); an audit also
    flags silent agents. Anything else is reported as it is. ``taken_over``: this run took the
    ID over, so an older agent is the replaced device's (its session lasts until it
    disconnects), not this host's."""
    verdict = judge(hb, identity_age_s, "the last swap")
    if verdict.kind == "old" and taken_over:
        return "ok", "%s (the device the ID was taken from, until its session ends)" % verdict.message
    if verdict.kind == "old":
        return ("fail" if audit else "heal"), "the cloud shows agent %s %s" % (hb.agent_id, verdict.message)
    if audit:
        silent = silence(hb, stale_minutes, now)
        if silent:
            return "fail", silent
    return "ok", verdict.message


def holder_evidence(hb):
    """Why the cloud says a device holds ``hb.agent_id``, or None (it never heard from one)."""
    if not hb.seen:
        return None
    if hb.active:
        return "the cloud sees its agent active (uptime %ss, last heartbeat %s)" % (
            "?" if hb.uptime is None else int(hb.uptime), hb.timestamp or "?")
    return "the cloud has heard from its agent (%s since %s)" % (hb.status, hb.timestamp or "an unknown time")


def takeover_refusal(agent_id, evidence):
    return ("agent ID %s already belongs to a device: %s. Refusing to create an identity for it (no key "
            "made, nothing uploaded): this host would take the ID over and the registry would refuse that "
            "device from then on. Fix %s, or, if this host replaces that device (dead hardware), set %s=true"
            % (agent_id, evidence, setting("agent_id"), setting("agent_id_takeover")))
