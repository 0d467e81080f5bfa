# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One run of the engine: open and lock the directory, assess, recover what an interrupted run
left, decide, carry the plan out (unless in check mode), and describe the outcome."""
from __future__ import annotations

import datetime

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certinfo
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import HeadersNeeded, StateError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.fsutil import IdentityDir, stat_facts
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.assess import assess
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.files import CERT, KEY
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.plan import (
    CREATE,
    REPAIR,
    UNCHANGED,
    decide,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.layout import KEYGEN_FILES

DIFF_KEYS = ("agent_id", "fingerprint_sha256", "not_after", "key_size")
FACT_KEYS = ("agent_id", "fingerprint_sha256", "serial", "not_before", "not_after", "days_left", "key_size")
# The plans that make no request of the API (every other one asks it: clock, ID, upload).
OFFLINE_KINDS = (UNCHANGED, REPAIR)


# ``idir`` of a run whose engine opens (and closes) the directory itself.
OPEN = object()


def ensure_identity(settings, client_factory, check_mode=False, now=None, warn=None, idir=OPEN, held_by=None):
    """Run the engine; returns (result dict, warnings). The result is complete (action,
    agent_id, fingerprint, files...) before the caller does anything else with the device.

    ``idir``: the identity directory the caller opened and locked with ``open_locked`` (None:
    it does not exist), or OPEN for the engine to open and close it. See Engine.run.
    ``held_by(agent_id)``: why a device holds an ID this device would claim, or None."""
    engine = Engine(settings, client_factory, check_mode=check_mode, now=now, warn=warn, held_by=held_by)
    return engine.run(idir), engine.warnings


def open_locked(settings, create):
    """Open the identity directory (creating it when ``create``) and lock it: the one place a
    run does either. None when it does not exist and ``create`` is false."""
    s = settings
    idir = IdentityDir.open(s.path, s.uid, s.gid, create=create)
    if idir is not None:
        try:
            idir.lock(timeout=s.lock_timeout)
        except BaseException:
            idir.close()
            raise
    return idir


class Engine:
    """One run of the module against one identity directory."""

    def __init__(self, settings, client_factory, check_mode=False, now=None, warn=None, held_by=None,
                 headers_withheld=False):
        self.s = settings
        # The controller kept the API's headers (the ledger expects no request): a run that needs
        # the API stops before it writes anything (HeadersNeeded), and is run again with them.
        self.headers_withheld = headers_withheld
        self.held_by = held_by
        self._client_factory = client_factory
        self._client = None
        self.check_mode = check_mode
        self.now = now or certinfo.utcnow()
        self.warnings = []
        self._warn = warn
        self.idir = None  # the directory the run works in (created by it when it was missing)

    def client(self):
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def warn(self, msg):
        self.warnings.append(msg)
        if self._warn:
            self._warn(msg)

    def run(self, idir=OPEN):
        """Run on ``idir`` (see ensure_identity). A missing directory is created only once the
        decision needs it; the caller that gave the directory then finds it in ``self.idir``,
        open and locked, and closes it."""
        try:
            return self._run(idir)
        except OSError as exc:
            # A full disk, a read-only mount, EIO...: the transaction already removed what it
            # staged; report the system's reason instead of a traceback.
            raise StateError(
                "cannot update the identity in %s: %s%s. Nothing was swapped in unless the "
                "registry had accepted it; the next run resumes from what is on disk."
                % (self.s.path, exc.strerror or exc.__class__.__name__,
                   " (%s)" % exc.filename if isinstance(exc.filename, str) else "")
            ) from None

    def _run(self, given):
        owned = given is OPEN
        self.idir = open_locked(self.s, create=False) if owned else given
        try:
            result = self._converge(self.idir)
            result["files"] = file_facts(self.idir)
            return result
        finally:
            if owned and self.idir is not None:
                self.idir.close()
            if self._client is not None:
                self._client.close()

    def _converge(self, idir):
        s = self.s
        a = assess(idir, self.now)
        writes = not self.check_mode and idir is not None
        tx = None
        recovered, before = None, a
        if writes and a.staged:
            self._needs_headers("an interrupted transaction to resolve")
            tx = self._transaction(idir)
            recovered = tx.recover(a)
            a = assess(idir, self.now)
        plan = decide(a, s, self.now, rotated_already=recovered is not None)
        if not self.check_mode and plan.kind not in OFFLINE_KINDS:
            self._needs_headers(plan.action)
        if writes and tx is None and _writes_anything(idir, plan):
            tx = self._transaction(idir)
        if idir is None and not self.check_mode:
            # Only once decided: a refusal (lost_identity=fail, an ID that cannot be recovered)
            # leaves not even an empty directory behind.
            # Decide again under the lock, on what is there now: another run may have made the
            # directory, and an identity in it, between the assessment above and the lock.
            self.idir = open_locked(s, create=True)
            return self._converge(self.idir)
        if a.staged:  # check mode: nothing is resolved
            plan.reason += " (an interrupted transaction is pending and would be resolved first)"
        for note in plan.notes:
            self.warn(note)
        if recovered is not None and plan.kind == UNCHANGED:
            action, reason = recovered
            result = self._result(action, reason, None, before, a.cert_info, True, tx.backups, tx.pruned)
        else:
            if recovered is not None:
                plan.reason = recovered[1] + "; then " + plan.reason
                before = a
            info = tx.run(a, plan) if tx is not None else None
            if tx is not None and tx.replaced:  # a restore whose ID the registry had forgotten
                plan.kind, plan.reason = CREATE, (
                    "no identity on this device, and the registry no longer knows ID %s, which the identity "
                    "ledger held for it: enrolled under a new ID that replaces it" % tx.replaced)
            result = self._result(plan.action, plan.reason, plan.agent_id, before, info,
                                  plan.kind != UNCHANGED, tx.backups if tx is not None else None,
                                  tx.pruned if tx is not None else None)
        # What the device held before (for audits), and when the registry accepted a new
        # certificate (time.monotonic(): the agent's blackout starts there).
        result["audit"] = "broken" if recovered is not None else plan.audit
        result["registry_accepted_at"] = tx.accepted_at if tx is not None else None
        result["swapped_at"] = tx.swapped_at if tx is not None else None
        result["keygen_made"] = dict(tx.keygen) if tx is not None else {}
        if tx is not None and tx.replaced:
            result["replaces"] = tx.replaced
        if tx is not None and tx.takeover:
            result["takeover"] = tx.takeover
        return result

    def _needs_headers(self, why):
        if self.headers_withheld:
            raise HeadersNeeded(why)

    def _transaction(self, idir):
        # Imported here: a run that leaves the identity as it is never loads the writing code
        # (the module's import time is most of an unchanged run's device CPU).
        from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.transaction import (
            Transaction,
        )

        return Transaction(idir, self.s, self.client, self.now, self.warn, self.held_by)

    def _result(self, action, reason, agent_id, before, after, changed, backups=None, pruned=None):
        """The module result. ``after`` is the CertInfo now on disk when it changed, else None
        (check mode, or no new certificate: the current identity is described)."""
        before_facts = before.cert_info.facts() if before.cert_info is not None else {}
        if after is not None:
            facts = after.facts()
            after_diff = {k: facts[k] for k in DIFF_KEYS}
        else:
            facts = dict(before_facts) if before_facts else dict.fromkeys(FACT_KEYS)
            if action in ("created", "restored", "rotated"):
                facts["agent_id"] = agent_id
                after_diff = {
                    "agent_id": agent_id or "(requested from the API)",
                    "fingerprint_sha256": "(new key)",
                    "not_after": certinfo.iso(self.now + datetime.timedelta(days=self.s.valid_days)),
                    "key_size": self.s.key_size,
                }
            else:
                after_diff = {k: before_facts.get(k) for k in DIFF_KEYS}
        result = {
            "changed": changed,
            "action": action,
            "reason": reason,
            "cert_path": self.s.cert_path,
            "key_path": self.s.key_path,
            "diff": {"before": {k: before_facts[k] for k in DIFF_KEYS} if before_facts else {},
                     "after": after_diff},
        }
        result.update(facts)
        if backups:
            result["backup_files"] = backups
        if pruned:
            result["backups_removed"] = pruned
        return result


def _writes_anything(idir, plan):
    """Whether Transaction.run has anything to do for ``plan``: every kind but UNCHANGED writes,
    and an unchanged identity still drops a stale journal and stops a key being made for
    nothing (a keygen pass's files)."""
    if plan.kind != UNCHANGED or plan.stale_journal:
        return True
    return any(idir.lstat(name) is not None for name in KEYGEN_FILES)


def file_facts(idir):
    """Mode and owner of the directory and the identity files as they are now (read from the
    file system, not assumed), so the role can check them without another module run."""
    if idir is None:
        return {}
    return {"directory": stat_facts(idir.dir_stat()), "key": stat_facts(idir.lstat(KEY)),
            "cert": stat_facts(idir.lstat(CERT))}
