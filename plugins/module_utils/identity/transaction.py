# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The writes of one run: one method per plan kind, and the recovery of an interrupted run.

A new identity (``create``, ``rekey``) is one transaction::

    clock check -> [takeover check] -> key (made in the background, prekey.py, or now) -> stage key
    -> [ID reservation] -> [stage cert], fsync -> journal -> upload / enroll -> (backup links)
    -> rename key, rename cert -> fsync -> drop journal -> (backups beyond backup_keep pairs removed)

The key comes before the reservation: a reservation lapses (a device needing 30 s for RSA-4096
could outlive a short one), and an interruption during keygen leaves no reserved ID unused. A
reservation whose ``expiresIn`` ran out (the device's monotonic clock, ``api.Reservation``)
before the upload is replaced once by a new one; a second lapse fails the run before anything
is uploaded. A pre-assigned ID this device did not hold (``Plan.claims``) is first asked about
(``held_by``, the cloud's view): an ID a device holds is refused before any key, unless
``agent_id_takeover`` says this host replaces that device. (The clock check comes first: it
opens the API client, which delivers the API's CA into a directory the engine just made, and
the cloud's question needs it too.)

A definitive refusal removes the staged files and leaves the previous identity byte-for-byte
intact. An ambiguous failure (the registry may hold the new certificate) of a rotation uploads
the previous certificate again (rollback: the registry's last upload wins); when that fails
too, or when a creation fails ambiguously, the journal stays so the next run converges
(re-upload, or reuse of the journaled ID). An interruption (SIGINT, SIGTERM, SIGKILL, any
exception) once the journal is written leaves everything as it is: the next run completes
the transaction from the staged files (``recover``). The journal's states: journal.py.
"""
from __future__ import annotations

import datetime
import stat
import time

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certs, confirm, keys, names
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import (
    ApiError,
    CertificateError,
    StateError,
    TransactionError,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import journal, prekey
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.clock import check_clock, describe_span
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.files import (
    CERT,
    CERT_COPY,
    JOURNAL,
    KEY,
    STAGED_CERT,
    STAGED_KEY,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.plan import (
    CREATE,
    REKEY,
    REPAIR,
    RESTORE,
    REUPLOAD,
    UNCHANGED,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.layout import backup_name, backup_of

# An issued lifetime this far from valid_days is worth a warning (the notBefore backdate of a
# CA is not).
LIFETIME_TOLERANCE = datetime.timedelta(days=1)


class ForgottenId(TransactionError):
    """The registry answered a restore with its own "unknown ID": the ledger's ID is gone."""


class Transaction:
    """Writes in one locked identity directory (never used in check mode)."""

    def __init__(self, idir, settings, client, now, warn, held_by=None):
        self.idir = idir
        self.s = settings
        self._client = client  # a callable returning the API client (opened on first use)
        self.now = now
        self.warn = warn
        # held_by(agent_id): why a device holds the ID (the cloud's view), or None
        self.held_by = held_by or (lambda agent_id: None)
        self.backups = []
        self.pruned = []  # backups removed beyond backup_keep
        self.replaced = None  # the ledger's ID a restore replaced with a new one (the registry forgot it)
        self._unused_key = None  # a key no registry accepted, for the new ID of such a restore
        self.keygen = {}  # how the new key was made (prekey.new_key): the report's keygen columns
        self.accepted_at = None  # time.monotonic() when the registry accepted a new certificate
        self.swapped_at = None  # time.monotonic() when the new pair was renamed into place
        self.takeover = ""  # the evidence overridden by agent_id_takeover

    @property
    def client(self):
        return self._client()

    def run(self, a, plan):
        """Carry out ``plan``; returns the CertInfo of a new certificate, else None."""
        if plan.stale_journal:
            journal.drop(self.idir)  # about another ID: not about this identity
        if not plan.new_key:
            prekey.discard(self.idir, self.s.uid, self.warn)  # a key being made for nothing: stopped
        kinds = {UNCHANGED: self.unchanged, REPAIR: self.repair, REUPLOAD: self.reupload,
                 CREATE: self.create, RESTORE: self.create, REKEY: self.rekey}
        return kinds[plan.kind](a, plan)

    # ---------------------------------------------------------------- one method per kind
    def unchanged(self, a, plan):
        return None

    def repair(self, a, plan):
        self._fix(a, plan.fixes)
        return None

    def reupload(self, a, plan):
        self._fix(a, plan.fixes)
        try:
            self.client.upload_certificate(plan.agent_id, a.cert.data)
        except ApiError as exc:
            raise TransactionError(
                "%s; the registry state of %s is still uncertain (%s kept): the next run "
                "tries again" % (exc.msg, plan.agent_id, self.idir.join(JOURNAL)), registry_uncertain=True,
            ) from None
        self._drop_journal_after_success()
        return None

    def create(self, a, plan):
        check_clock(self.client, self.now, self.s.max_clock_skew)
        self._check_claim(plan)
        try:
            return self._new_identity(a, plan, plan.agent_id, creating=True)
        except ForgottenId:
            pass
        # Only a restore gets here, on the registry's own "unknown ID" answer: the ID the ledger
        # remembers no longer exists, so there is nothing to give back, and asking again would
        # get the same answer on every run. The device converges as a new one (lost_identity=fail
        # is the operator's way to stop instead); the ledger records the new ID as replacing it.
        self.replaced = plan.agent_id
        info = self._new_identity(a, plan, None, creating=True)  # its key kept: a new ID reserved for it
        self.warn("the registry no longer knows ID %s, which the identity ledger held for this host (its own "
                  "unknown-ID answer): this device was enrolled under the new ID %s, which the ledger records "
                  "as replacing it (set %s=fail to stop instead)"
                  % (self.replaced, info.agent_id, names.setting("lost_identity")))
        return info

    def rekey(self, a, plan):
        check_clock(self.client, self.now, self.s.max_clock_skew)
        self._check_claim(plan)
        return self._new_identity(a, plan, plan.agent_id, creating=False)

    def _check_claim(self, plan):
        """Refuse to put a pre-assigned ID on this device when a device holds it (the cloud's
        view), unless agent_id_takeover says this host replaces that device."""
        if not plan.claims:
            return
        evidence = self.held_by(plan.agent_id)
        if evidence is None:
            return
        if not self.s.agent_id_takeover:
            raise StateError(confirm.takeover_refusal(plan.agent_id, evidence))
        self.takeover = evidence
        self.warn("taking agent ID %s over from another device (%s=true): %s; the registry refuses that "
                  "device once this host's certificate is registered" % (
                      plan.agent_id, names.setting("agent_id_takeover"), evidence))

    # ---------------------------------------------------------------- files
    def _fix(self, a, fixes):
        """Modes and owners; a hard-linked file is replaced by a fresh copy instead (a chmod
        or chown through the link would change the file behind its other name too)."""
        self.idir.fix_self(self.s.modes.directory)
        for fix in fixes:
            if fix.name == ".":
                continue
            if fix.hard_linked:  # only the certificate: the plan re-keys a hard-linked key
                self.idir.create(CERT_COPY, a.cert.data, fix.mode)
                self.idir.rename(CERT_COPY, CERT)
                self.idir.fsync()
            else:
                self.idir.fix_file(fix.name, fix.mode)

    def _drop_journal_after_success(self):
        try:
            journal.drop(self.idir)
        except OSError as exc:
            # Device and registry agree already: the stale journal only costs the next run
            # one more upload of client.crt.
            self.warn("could not remove %s (%s); the next run uploads %s once more"
                      % (self.idir.join(JOURNAL), exc.strerror, CERT))

    def _swap(self, have_staged_key=True):
        if self.s.backup:
            self.backups = _backup(self.idir, self.now.strftime("%Y%m%dT%H%M%SZ"))
        if have_staged_key:
            self.idir.rename(STAGED_KEY, KEY)
        self.idir.rename(STAGED_CERT, CERT)
        self.idir.fsync()
        self.swapped_at = time.monotonic()
        self._drop_journal_after_success()
        if self.s.backup:
            self.pruned = prune_backups(self.idir, self.s.backup_keep)

    # ---------------------------------------------------------------- a new identity
    def _new_identity(self, a, plan, agent_id, creating):
        """``agent_id`` None: a new ID is reserved once the key exists."""
        s, idir = self.s, self.idir
        registry_was_uncertain = a.journal is not None and not plan.stale_journal
        idir.fix_self(s.modes.directory)
        key, self._unused_key = self._unused_key or prekey.new_key(idir, s, self.warn, self.keygen), None
        operation = "create" if creating else "rotate"
        journaled = False
        try:
            idir.create(STAGED_KEY, s.key_profile.private_pem(key), s.modes.key)
            agent_id, cert, request = self._stage_for_an_id(key, agent_id)
            if s.enrollment == "self_signed":
                journal.write(idir, agent_id, operation, certs.fingerprint_sha256(cert), self.now)
                journaled = True
                self.client.upload_certificate(agent_id, request)
                self.accepted_at = time.monotonic()
            else:
                journal.write(idir, agent_id, operation, None, self.now)
                journaled = True
                cert = self._enroll(agent_id, key, request)
                self.accepted_at = time.monotonic()
                idir.create(STAGED_CERT, certs.certificate_pem(cert), s.modes.cert)
                idir.fsync()
            self._swap()
        except ApiError as exc:
            journal.drop_leftovers(idir)
            if not journaled:
                raise  # a reservation failed: nothing left the device but that request
            failure = self._failure(a, plan, agent_id, exc, creating, registry_was_uncertain)
            if isinstance(failure, ForgottenId):
                self._unused_key = key  # never registered anywhere: good for the new ID
            raise failure from None
        except BaseException:
            if not journaled:
                journal.drop_leftovers(idir)  # nothing has left the device
            # Else the upload may be on its way or stored already: the journal and the staged
            # files stay, as after a kill, and the next run completes the transaction.
            raise
        return certs.cert_info(cert, self.now)

    def _stage_for_an_id(self, key, agent_id):
        """(agent_id, cert or None, what to send: the staged certificate's PEM or a CSR) for
        ``agent_id``, or for a new reservation when it is None: reserved again, once, when the
        first one lapsed before the request could be sent; a second lapse raises."""
        s, lapsed = self.s, []
        while True:
            reservation = None
            if agent_id is None or lapsed:
                reservation = self.client.reserve()
                agent_id = reservation.agent_id
            if s.enrollment == "self_signed":
                cert = certs.build_self_signed(key, agent_id, s.subject, s.valid_days, self.now)
                request = certs.certificate_pem(cert)
                self.idir.create(STAGED_CERT, request, s.modes.cert)
            else:
                cert, request = None, certs.build_csr(key, agent_id, s.subject)
            self.idir.fsync()
            if reservation is None or not reservation.lapsed():
                if lapsed:
                    self.warn("the reservation of %s lapsed before the device could send its %s; reserved "
                              "%s instead" % (lapsed[0], "certificate" if cert else "CSR", agent_id))
                return agent_id, cert, request
            lapsed.append(reservation.describe())
            self.idir.unlink(STAGED_CERT)
            if len(lapsed) > 1:
                raise TransactionError(
                    "the reservations of %s both lapsed before the device could send its %s (a "
                    "reservation is used within its expiresIn, measured on this device): nothing was "
                    "uploaded and no identity was written. The device needs more time between the "
                    "reservation and the upload than the API grants" % (
                        " and ".join(lapsed), "certificate" if cert else "CSR"))

    def _enroll(self, agent_id, key, csr):
        endpoint = self.client.enroll_endpoint
        issued = self.client.enroll(agent_id, certs.csr_pem(csr))
        try:
            cert = check_issued_certificate(issued, agent_id, key, self.now)
        except CertificateError as exc:
            raise ApiError("POST %s: %s" % (endpoint, exc.msg), endpoint=endpoint, definitive=False) from None
        lifetime = certs.not_after(cert) - certs.not_before(cert)
        if abs(lifetime - datetime.timedelta(days=self.s.valid_days)) > LIFETIME_TOLERANCE:
            self.warn("the enrollment CA issued a certificate valid for %s, not the %s=%d asked for "
                      "(the CA decides): renewal follows the issued lifetime"
                      % (describe_span(lifetime), names.setting("valid_days"), self.s.valid_days))
        return cert

    def _failure(self, a, plan, agent_id, exc, creating, registry_was_uncertain):
        """The TransactionError to raise for ``exc`` (after a rollback where one is due)."""
        idir = self.idir
        if exc.definitive:
            if not registry_was_uncertain:
                journal.drop(idir)
            if creating and plan.kind == RESTORE and exc.status in (404, 410):
                journal.drop(idir)
                if exc.status == 404 and exc.unknown_id:
                    return ForgottenId(exc.msg)
                return TransactionError(
                    "%s: the registry refused ID %s, which the identity ledger holds for this host, "
                    "without its own unknown-ID answer (check %s). Nothing was written. If the registry "
                    "no longer has that ID, set %s=new to enroll this device under a new one."
                    % (exc.msg, agent_id, names.setting("enroll_endpoint" if self.s.enrollment == "csr"
                                                        else "upload_endpoint"), names.setting("lost_identity")))
            if creating and exc.status in (404, 410) and not self.s.agent_id:
                journal.drop(idir)
                return TransactionError(
                    "%s: the registry does not know ID %s (its reservation is unknown or expired). "
                    "Nothing was written; run again to request a fresh ID." % (exc.msg, agent_id))
            return TransactionError("%s; nothing was changed: %s" % (
                exc.msg, "no identity was written" if creating else "the previous identity is intact"))
        # Ambiguous: the registry may hold the new certificate now.
        if creating or not _can_roll_back(a, agent_id):
            return TransactionError(
                "%s; the registry may have stored the new certificate for %s. Nothing was written "
                "to the device; %s records the pending ID so the next run %s." % (
                    exc.msg, agent_id, idir.join(JOURNAL),
                    "reuses it instead of requesting a new one" if creating else "converges"),
                registry_uncertain=True)
        try:
            self.client.upload_certificate(agent_id, a.cert.data)
        except ApiError as rb_exc:
            return TransactionError(
                "%s; the registry may hold the new certificate and uploading the previous one "
                "again failed too (%s). The previous identity is intact on the device; the "
                "registry state is recorded in %s and the next run uploads the current "
                "certificate again." % (exc.msg, rb_exc.msg, idir.join(JOURNAL)), registry_uncertain=True)
        if exc.status is None:
            # No answer at all: the server may still be working on the new certificate and
            # store it after the rollback. The journal stays: the next run uploads the current
            # certificate once more.
            return TransactionError(
                "%s; the previous certificate was uploaded again (rollback), but the server may "
                "still store the new one late, so %s is kept and the next run uploads the "
                "current certificate once more. The previous identity is intact on the device."
                % (exc.msg, idir.join(JOURNAL)), registry_uncertain=True)
        if not registry_was_uncertain:
            journal.drop(idir)
        return TransactionError(
            "%s; the registry may have stored the new certificate, so the previous one was "
            "uploaded again (rollback succeeded): device and registry agree on the previous "
            "identity. Nothing was changed." % exc.msg)

    # ---------------------------------------------------------------- recovery
    def recover(self, a):
        """Complete or clean up a transaction an interrupted run left.

        Returns (action, reason) when a staged identity was uploaded and swapped in, else None
        (incomplete or foreign staged files are removed)."""
        s, idir = self.s, self.idir
        staged_cert_data = idir.read(STAGED_CERT)[0]
        usable, why_not = _usable_staged(a, s, staged_cert_data, idir.read(STAGED_KEY)[0], self.now)
        if usable is None:
            journal.drop_leftovers(idir)
            self.warn("removed staged files of an interrupted run in %s: %s" % (s.path, why_not))
            return None
        agent_id, cert, have_staged_key = usable
        journal.write(idir, agent_id, "recover", certs.fingerprint_sha256(cert), self.now)
        try:
            self.client.upload_certificate(agent_id, staged_cert_data)
            self.accepted_at = time.monotonic()
        except ApiError as exc:
            journal.drop_leftovers(idir)
            if exc.definitive:
                # Registry unchanged by this attempt; the journal stays: a crashed upload may
                # have landed before, so the current certificate is uploaded again.
                self.warn("could not complete the interrupted rotation of %s (%s); staged "
                          "files removed" % (agent_id, exc.msg))
                return None
            raise TransactionError(
                "%s; the staged identity of an interrupted run was removed and the registry "
                "state of %s is uncertain (recorded in %s): the next run uploads the current "
                "certificate again" % (exc.msg, agent_id, idir.join(JOURNAL)), registry_uncertain=True,
            ) from None
        self._swap(have_staged_key)
        action = "rotated" if a.cert.exists else "created"
        return action, "completed the %s of %s interrupted in a previous run" % (
            "rotation" if action == "rotated" else "creation", agent_id)


def _can_roll_back(a, agent_id):
    info = a.cert_info
    return info is not None and info.agent_id == agent_id and info.self_signed and a.key_matches


def _usable_staged(a, s, cert_data, key_data, now):
    """((agent_id, cert, have_staged_key) or None, why not) for the staged files."""
    expected = s.agent_id
    if expected is None and a.cert_info is not None and s.valid_id(a.cert_info.agent_id):
        expected = a.cert_info.agent_id
    if expected is None and a.journal and s.valid_id(a.journal.get("id")):
        expected = a.journal["id"]
    if cert_data is None:
        return None, "incomplete"
    try:
        cert = certs.load_certificate(cert_data)
        cn = certs.common_name(cert)
        if expected is not None and cn != expected:
            return None, "staged certificate is for another ID"
        if expected is None and not s.valid_id(cn):
            return None, "staged certificate has an invalid CN"
        if s.not_this_hosts(cn) and s.lost_identity != "new":
            # Whoever writes the directory can stage a pair: one for another ID than the ledger's
            # would take that ID over (a device being given a new ID stages one: lost_identity=new).
            return None, "staged certificate names %s, not %s, the ID the identity ledger holds for this host" % (
                cn, s.ledger_id)
        if certs.client_auth_problems(cert, now):
            return None, "staged certificate is not usable"
        if key_data is not None:
            key = keys.load_private_key(key_data, validate=True)
            if keys.key_matches_certificate(key, cert):
                return (cn, cert, True), None
            return None, "staged key and certificate do not match"
        if (a.key_summary is not None and a.key_summary.public is not None
                and a.key_summary.public == keys.certificate_public(cert)):
            # The key was already renamed into place when the run stopped.
            keys.load_private_key(a.key.data, validate=True)
            return (cn, cert, False), None
    except CertificateError as exc:
        return None, "staged files unusable (%s)" % exc.msg
    return None, "incomplete"


def _backup(idir, stamp):
    """Hard-link the current key and certificate to ``<name>.<stamp>.bak``; return the paths."""
    made = []
    for name in (KEY, CERT):
        if not idir.exists(name):
            continue
        n = 1
        while idir.exists(backup_name(name, stamp, n)):
            n += 1
        idir.link(name, backup_name(name, stamp, n))
        made.append(idir.join(backup_name(name, stamp, n)))
    return made


def prune_backups(idir, keep):
    """Remove the backups beyond the newest ``keep`` pairs (0: keep them all); return their
    paths. Only regular files named as this bundle names backups (``layout.BACKUP``) count,
    and each is unlinked through the directory's fd (a link is never followed)."""
    if keep <= 0:
        return []
    pairs = {}
    for name in idir.listdir():
        when = backup_of(name)
        st = idir.lstat(name) if when is not None else None
        if st is not None and stat.S_ISREG(st.st_mode):
            pairs.setdefault(when, []).append(name)
    removed = []
    for when in sorted(pairs)[:-keep]:
        for name in sorted(pairs[when]):
            if idir.unlink(name):
                removed.append(idir.join(name))
    if removed:
        idir.fsync()
    return removed


def check_issued_certificate(cert_text, agent_id, key, now=None):
    """Certificate from the enrollment endpoint: parses, CN == ID, our key, client-auth usable."""
    try:
        cert = certs.load_certificate(cert_text)
    except CertificateError as exc:
        raise CertificateError("the enrollment endpoint returned an unusable certificate: %s" % exc.msg) from None
    cn = None
    try:
        cn = certs.common_name(cert)
    except CertificateError:
        pass
    if cn != agent_id:
        raise CertificateError("the enrollment endpoint returned a certificate for another CN (want %s)" % agent_id)
    if not keys.key_matches_certificate(key, cert):
        raise CertificateError("the enrollment endpoint returned a certificate for another key")
    problems = certs.client_auth_problems(cert, now)
    if problems:
        raise CertificateError("the enrollment endpoint returned a certificate unusable for TLS "
                               "client auth: %s" % ", ".join(problems))
    return cert
