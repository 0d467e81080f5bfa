# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The decision: a pure function of the assessment and the settings.

``Plan.kind`` names what the transaction does; each kind is one function of the transaction:

==========  =========  ==================================================================
kind        action     what the transaction does
==========  =========  ==================================================================
unchanged   unchanged  nothing (a journal about another ID is dropped)
repair      repaired   fixes modes and owners (a hard-linked certificate is replaced by a
                       fresh copy, never chmod-ed through the link); no network, no key
reupload    repaired   uploads the current certificate again: a journal says the registry
                       may not hold it (after fixing modes and owners)
create      created    new key and certificate for a new ID (requested from the API), the
                       pre-assigned agent_id, or the ID a journal recorded
restore     restored   as create, for the ID the controller's identity ledger holds for a
                       device that lost its identity (lost_identity=restore)
rekey       rotated    new key and certificate for the same ID
==========  =========  ==================================================================

``Plan.claims`` says that the plan puts a pre-assigned ``agent_id`` on this device that it did
not hold (a creation with it, or re-keying a device as it): the transaction first asks whether
another device holds it (no takeover). A device completing its own interrupted creation, or
getting back the ID the ledger holds for it, claims nothing.

A certificate naming another ID than the one the controller's identity ledger holds for this
host is never uploaded again nor re-keyed (rotate, reupload) unless ``agent_id`` names it: the
device's files can name any ID, and uploading would take that ID over (the registry's last
upload wins). A run that uploads nothing only notes the difference.

``Plan.audit`` says what the device held before this run, for a read-only audit:
``missing`` (no identity), ``broken`` (unusable, wrong modes, or the registry may not hold
it), ``due`` (to be rotated: expiring, or a key size, subject or enrollment to change) or
``valid``.

Files an interrupted run left are completed or removed before any decision (recovery, see
transaction.py); the decision is then made on what recovery left.
"""
from __future__ import annotations

import datetime

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certinfo, names
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import StateError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.clock import describe_span
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.files import (
    hard_linked,
    mode_owner_problems,
)

UNCHANGED = "unchanged"
REPAIR = "repair"
REUPLOAD = "reupload"
CREATE = "create"
RESTORE = "restore"
REKEY = "rekey"
ACTIONS = {UNCHANGED: "unchanged", REPAIR: "repaired", REUPLOAD: "repaired", CREATE: "created",
           RESTORE: "restored", REKEY: "rotated"}
# When the CA issues certificates shorter than renew_before_days, renew once this fraction of
# the issued lifetime is left (instead of on every run).
RENEW_FRACTION = 1.0 / 3


class Plan:
    def __init__(self, kind, reason, agent_id=None, fixes=(), notes=(), stale_journal=False, audit="valid",
                 claims=False):
        self.kind = kind
        self.claims = claims              # a pre-assigned ID this device did not hold (no takeover)
        self.audit = audit                # missing | broken | due | valid (see the docstring)
        self.reason = reason
        self.agent_id = agent_id          # None only for a create that requests a new ID
        self.fixes = list(fixes)          # [files.Fix]
        self.notes = list(notes)          # warnings for the operator
        self.stale_journal = stale_journal  # the journal on disk is about another ID

    @property
    def action(self):
        return ACTIONS[self.kind]

    @property
    def new_key(self):
        return self.kind in (CREATE, RESTORE, REKEY)

    def __repr__(self):  # for test failure output
        return "Plan(%s, %r, agent_id=%r)" % (self.kind, self.reason, self.agent_id)


def decide(a, settings, now=None, rotated_already=False):
    """Plan for assessment ``a``. Raises StateError when the module must not guess."""
    now = now or certinfo.utcnow()
    s = settings
    fixes = mode_owner_problems(a.stats, s.modes, s.uid, s.gid)
    journal_id = a.journal.get("id") if a.journal else None
    if journal_id is not None and not s.valid_id(journal_id):
        journal_id = None

    def stale(agent_id):
        return a.journal is not None and journal_id is not None and journal_id != agent_id

    if not a.cert.exists:
        reusable = _reusable_journal_id(s, journal_id)
        agent_id = s.agent_id or reusable
        kind, reason, notes, agent_id = _without_certificate(a, s, agent_id, reusable)
        return Plan(kind, reason, agent_id=agent_id, fixes=fixes, notes=notes, stale_journal=stale(agent_id),
                    audit="broken" if a.key.exists else "missing",
                    claims=kind == CREATE and s.agent_id is not None and s.agent_id != journal_id)
    info = a.cert_info
    cn = info.agent_id if info is not None else None
    if info is None or cn is None or not s.valid_id(cn):
        agent_id = s.agent_id or _restorable(s)
        return Plan(REKEY, _unusable_certificate(a, s, agent_id), agent_id, fixes,
                    stale_journal=stale(agent_id), audit="broken")
    if s.agent_id and s.agent_id != cn:
        if s.rotate != "always":
            raise StateError(
                "%s belongs to agent %s but agent_id is %s. Fix agent_id (quote IDs in "
                "inventories), or set rotate=always to re-key this device as %s."
                % (s.cert_path, cn, s.agent_id, s.agent_id)
            )
        return Plan(REKEY, "rotate=always: re-keying as %s (the certificate was for %s)" % (s.agent_id, cn),
                    s.agent_id, fixes, stale_journal=stale(s.agent_id), claims=True)
    plan = _for_certificate(a, s, now, rotated_already, uncertain=a.journal is not None and not stale(cn))
    if plan.kind in (REKEY, REUPLOAD) and s.not_this_hosts(cn):
        raise StateError(_not_the_ledgers(s, cn))
    plan.agent_id, plan.fixes, plan.stale_journal = cn, fixes, stale(cn)
    if fixes and plan.audit == "valid":
        plan.audit = "broken"
    if plan.kind == UNCHANGED and fixes:
        plan.kind, plan.reason = REPAIR, "fixed " + "; ".join(f.describe() for f in fixes)
    if s.ledger_id and s.ledger_id != cn:
        plan.notes.append("the identity ledger holds %s for this host but the device holds %s: the "
                          "ledger now records %s (%s stays orphaned until it is decommissioned)"
                          % (s.ledger_id, cn, cn, s.ledger_id))
    return plan


def _reusable_journal_id(s, journal_id):
    """The journaled ID a creation may reuse (an interrupted run's reservation). Whoever writes the
    directory can write a journal: one naming another ID than the ledger holds for this host is
    reused only with lost_identity=new (this device was being given a new ID); else the ledger's
    rules decide (lost_identity) and that journal is dropped as stale."""
    if journal_id is not None and s.not_this_hosts(journal_id) and s.lost_identity != "new":
        return None
    return journal_id


def _not_the_ledgers(s, cn):
    """Why a certificate naming another ID than the ledger's for this host is not uploaded: the
    device's files can name any ID (whoever writes ~/.mtls), and the registry's last upload wins."""
    return ("the certificate in %s names agent %s, but the identity ledger holds %s for this host: "
            "refusing to upload a certificate for %s (nothing was changed). Uploading would take %s over "
            "from the device that holds it, whoever wrote these files. If this host is %s (the ledger is out "
            "of date), set %s=%s; if it is %s, set %s=%s and %s=always to re-key it as %s"
            % (s.cert_path, cn, s.ledger_id, cn, cn, cn, names.setting("agent_id"), cn, s.ledger_id,
               names.setting("agent_id"), s.ledger_id, names.setting("rotate"), s.ledger_id))


def _restorable(s):
    """The ledger's ID for a device whose own identity cannot tell its ID, by lost_identity."""
    if not s.ledger_id or s.lost_identity == "new":
        return None
    if s.lost_identity == "fail":
        raise StateError(
            "this device lost its identity; the identity ledger says it was %s. Set %s=restore to "
            "give it that ID back, or %s=new to enroll it as a new device"
            % (s.ledger_id, names.setting("lost_identity"), names.setting("lost_identity")))
    return s.ledger_id


def _broken_never(agent_id, problems, settings):
    return StateError(
        "the identity of %s in %s is broken (%s) and rotate=never forbids re-keying it; "
        "run with rotate=auto to repair it" % (agent_id, settings.path, "; ".join(problems))
    )


def _without_certificate(a, s, agent_id, journal_id):
    """(kind, reason, notes, the ID it is for) for a directory without client.crt."""
    restored = None if agent_id else _restorable(s)
    if a.key.exists:
        agent_id = agent_id or restored
        if not agent_id:
            raise StateError(
                "%s exists but %s is missing, so this device's agent ID cannot be recovered. "
                "Set agent_id to the device's ID to re-key it, or move %s away to enroll it "
                "as a new device." % (s.key_path, s.cert_path, s.path)
            )
        if s.rotate == "never":
            raise _broken_never(agent_id, ["certificate missing"], s)
        return REKEY, "certificate missing: re-keying %s" % agent_id, [], agent_id
    if agent_id and agent_id == journal_id and not s.agent_id:
        reason = "no identity on this device; reusing ID %s reserved by an interrupted run" % agent_id
        return CREATE, reason, [], agent_id
    if agent_id:
        return CREATE, "no identity on this device; using the pre-assigned agent_id", [], agent_id
    if restored:
        note = ("this device lost its identity: it gets back the ID %s the identity ledger holds for it "
                "(a new key and certificate, registered again)" % restored)
        reason = "no identity on this device; restoring ID %s from the identity ledger" % restored
        return RESTORE, reason, [note], restored
    notes = []
    if s.ledger_id:
        notes.append("this device lost its identity and %s=new: it gets a new ID; %s, which the "
                     "ledger held for it, stays registered (orphaned) until it is decommissioned"
                     % (names.setting("lost_identity"), s.ledger_id))
    return CREATE, "no identity on this device; requesting a new ID", notes, None


def _unusable_certificate(a, s, agent_id):
    """The reason to re-key a certificate whose ID cannot be used (only with an ID from
    agent_id or the ledger)."""
    if a.cert_info is None:
        problem = "%s cannot be read (%s)" % (s.cert_path, a.cert.error)
    else:
        problem = "the CN of %s is not a valid agent ID" % s.cert_path
    if not agent_id:
        raise StateError(
            "%s, so this device's agent ID is unknown. Set agent_id to the device's ID to "
            "re-key it, or move %s away to enroll it as a new device." % (problem, s.path)
        )
    if s.rotate == "never":
        raise _broken_never(agent_id, [problem], s)
    return "%s: re-keying %s" % (problem, agent_id)


def _for_certificate(a, s, now, rotated_already, uncertain):
    """The plan for a certificate naming a usable ID (the ID and fixes are added by decide)."""
    info = a.cert_info
    broken = _broken(a)
    due, notes = _due(info, s, now)
    policy = _policy(a, s, bool(broken))
    if s.rotate == "never":
        if broken:
            raise _broken_never(info.agent_id, broken, s)
        if due or policy:
            notes.append("rotation would be due (%s) but rotate=never" % "; ".join(due + policy))
    else:
        reasons = ["rotate=always"] if s.rotate == "always" and not rotated_already else []
        reasons.extend(broken + due + policy)
        if reasons:
            return Plan(REKEY, "; ".join(reasons), notes=notes,
                        audit="broken" if broken else ("due" if due or policy else "valid"))
    if uncertain:
        why = "a previous run could not confirm that the registry holds this certificate"
        if s.enrollment == "csr" and not info.self_signed:
            if s.rotate == "never":
                raise StateError("%s (%s) and rotate=never forbids re-enrolling; run with "
                                 "rotate=auto" % (why, s.path))
            return Plan(REKEY, why + ": re-enrolling", notes=notes, audit="broken")
        return Plan(REUPLOAD, why + ": uploading it again", notes=notes, audit="broken")
    reason = "certificate valid for %d more days" % info.days_left
    if notes:
        reason += "; " + "; ".join(notes)
    return Plan(UNCHANGED, reason, notes=notes, audit="due" if due or policy else "valid")


def _broken(a):
    broken = []
    if not a.key.exists:
        broken.append("private key missing")
    elif a.key.error:
        broken.append("private key unusable: %s" % a.key.error)
    elif hard_linked(a.key.stat):
        # Another name for the key may sit anywhere on the file system, readable by others:
        # the key is compromised, so it is replaced, never chmod-ed through the link.
        broken.append("private key has %d hard links (a copy may be readable elsewhere)" % a.key.stat.st_nlink)
    elif not a.key_is_rsa:
        broken.append("private key is not RSA")
    elif not a.key_matches:
        broken.append("private key does not match the certificate")
    usage = [p for p in a.cert_info.client_auth_problems
             if not p.startswith("expired") and not p.startswith("not valid before")]
    if usage:
        broken.append("certificate unusable for TLS client auth (%s)" % ", ".join(usage))
    return broken


def renewal_window(info, renew_before_days):
    """(renew when less than this is left, note or None).

    A CA-issued certificate carries the lifetime the CA chose, not valid_days: when
    renew_before_days is not below it, every run would re-enrol, so the renewal follows the
    issued lifetime instead."""
    window = datetime.timedelta(days=renew_before_days)
    lifetime = info.not_after - info.not_before
    if info.self_signed or window < lifetime:
        return window, None
    adapted = lifetime * RENEW_FRACTION
    return adapted, (
        "the enrollment CA issues certificates valid for %s, not more than %s=%d: renewing when %s "
        "are left instead (set %s below the issued lifetime)"
        % (describe_span(lifetime), names.setting("renew_before_days"), renew_before_days,
           describe_span(adapted), names.setting("renew_before_days")))


def _due(info, s, now):
    """([reasons to renew], [notes])."""
    window, note = renewal_window(info, s.renew_before_days)
    notes = [note] if note else []
    if now >= info.not_after:
        return ["certificate expired on %s" % certinfo.iso(info.not_after)], notes
    if now < info.not_before:
        return ["certificate not valid before %s" % certinfo.iso(info.not_before)], notes
    if info.not_after - now >= window:
        return [], notes
    if note is None:
        return ["certificate expires in %d days (renew_before_days=%d)" % (info.days_left, s.renew_before_days)], notes
    return ["certificate expires in %s (less than a third of its issued lifetime)"
            % describe_span(info.not_after - now)], notes


def _policy(a, s, broken):
    info = a.cert_info
    policy = []
    size = a.key_size if a.key_size else info.key_size
    if size and size != s.key_size and not broken:
        policy.append("key size %d differs from key_size %d" % (size, s.key_size))
    # A CA-issued certificate carries the subject the CA chose: only compare self-signed ones.
    differing = ["%s=%s (want %s)" % (k, info.subject.get(k), s.subject[k])
                 for k in certinfo.SUBJECT_KEYS if info.subject.get(k) != s.subject[k]]
    if differing and info.self_signed:
        policy.append("subject differs: %s" % ", ".join(differing))
    if s.enrollment == "csr" and info.self_signed:
        policy.append("certificate is self-signed but enrollment=csr")
    elif s.enrollment == "self_signed" and not info.self_signed:
        policy.append("certificate is CA-issued but enrollment=self_signed")
    return policy
