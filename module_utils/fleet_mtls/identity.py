# -*- coding: utf-8 -*-
"""The identity engine: assess the identity on disk, decide, and apply as one transaction.

Files in the identity directory::

    client.key            the private key (0600)          client.crt   the certificate (0644)
    .client.key.new       staged key (0600 from byte one) .client.crt.new  staged certificate
    .mtls-pending.json    journal (no secret): the registry may not hold client.crt for this ID

``assess`` reads (cheaply: no RSA validation of the key), ``decide`` is a pure function of the
assessment and the settings, ``recover`` completes a transaction a crash interrupted, and
``apply`` runs the transaction:

    keygen -> cert/CSR in memory -> stage key, stage cert, fsync -> journal -> upload/enroll
    -> (backup links) -> rename key, rename cert -> fsync -> drop journal

A failure before the registry accepted the new certificate removes the staged files and leaves
the previous identity byte-for-byte intact. When the failure is ambiguous (the registry may
have stored the new certificate) a rotation uploads the previous certificate again (rollback,
the registry's last upload wins); when that fails too, or when a creation fails ambiguously,
the journal stays so the next run converges (re-upload, or reuse of the journaled ID).
"""
from __future__ import annotations

import datetime
import json
import os
import re
import stat

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certs
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.api import DEFAULT_ID_PATTERN, check_agent_id
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import (
    ApiError,
    CertificateError,
    ConfigError,
    IdentityError,
    StateError,
    TransactionError,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.fsutil import (
    IdentityDir,
    expand_path,
    mode_str,
    resolve_group,
    resolve_owner,
    stat_facts,
)

KEY = "client.key"
CERT = "client.crt"
STAGED_KEY = ".client.key.new"
STAGED_CERT = ".client.crt.new"
JOURNAL = ".mtls-pending.json"
JOURNAL_TMP = ".mtls-pending.json.new"
AGENT_CONFIG = "agent-tls.ini"
AGENT_CONFIG_MODE = 0o644
MAX_AGENT_CONFIG = 64 * 1024
CONFIG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DIR_MODE = 0o700
KEY_MODE = 0o600
CERT_MODE = 0o644
ROTATE_CHOICES = ("auto", "always", "never")
ENROLLMENT_CHOICES = ("self_signed", "csr")
DIFF_KEYS = ("agent_id", "fingerprint_sha256", "not_after", "key_size")
FACT_KEYS = ("agent_id", "fingerprint_sha256", "serial", "not_before", "not_after", "days_left", "key_size")


# ============================================================================================
# Settings
# ============================================================================================
class Settings:
    """Validated options of one run (no network settings: those belong to the API client)."""

    def __init__(self, path=None, owner=None, group=None, agent_id=None,
                 id_pattern=DEFAULT_ID_PATTERN, enrollment="self_signed", key_size=4096,
                 subject=None, valid_days=365, rotate="auto", renew_before_days=30,
                 backup=False, lock_timeout=600.0, agent_config=None,
                 agent_config_name=AGENT_CONFIG):
        self.path = expand_path(path)
        self.uid, default_gid = resolve_owner(owner)
        self.gid = resolve_group(group, default_gid)
        self.id_pattern = id_pattern or DEFAULT_ID_PATTERN
        self.agent_id = None
        if agent_id is not None and agent_id != "":
            self.agent_id = check_agent_id(agent_id, self.id_pattern, "agent_id")
        if enrollment not in ENROLLMENT_CHOICES:
            raise ConfigError("enrollment must be one of %s" % ", ".join(ENROLLMENT_CHOICES))
        self.enrollment = enrollment
        if isinstance(key_size, bool) or not isinstance(key_size, int) or not (
            certs.MIN_KEY_SIZE <= key_size <= certs.MAX_KEY_SIZE
        ):
            raise ConfigError("key_size must be an integer between %d and %d"
                              % (certs.MIN_KEY_SIZE, certs.MAX_KEY_SIZE))
        self.key_size = key_size
        try:
            self.subject = certs.normalize_subject(subject)
        except CertificateError as exc:
            raise ConfigError(exc.msg) from None
        if not isinstance(valid_days, int) or valid_days < 1 or valid_days > 36500:
            raise ConfigError("valid_days must be between 1 and 36500")
        self.valid_days = valid_days
        if rotate not in ROTATE_CHOICES:
            raise ConfigError("rotate must be one of %s" % ", ".join(ROTATE_CHOICES))
        self.rotate = rotate
        if not isinstance(renew_before_days, int) or renew_before_days < 0:
            raise ConfigError("renew_before_days must be >= 0")
        if renew_before_days >= valid_days:
            raise ConfigError("renew_before_days (%d) must be smaller than valid_days (%d), or every "
                              "run would rotate" % (renew_before_days, valid_days))
        self.renew_before_days = renew_before_days
        self.backup = bool(backup)
        self.lock_timeout = lock_timeout
        self.agent_config = _check_agent_config(agent_config)
        if not isinstance(agent_config_name, str) or not CONFIG_NAME.match(agent_config_name) or (
            agent_config_name in (KEY, CERT)
        ):
            raise ConfigError("agent_config_name must be a plain file name (letters, digits, '.', "
                              "'_', '-'; not hidden) other than %s and %s" % (KEY, CERT))
        self.agent_config_name = agent_config_name

    @property
    def key_path(self):
        return os.path.join(self.path, KEY)

    @property
    def cert_path(self):
        return os.path.join(self.path, CERT)


# ============================================================================================
# Assessment (read-only)
# ============================================================================================
class FileState:
    def __init__(self):
        self.exists = False
        self.stat = None
        self.data = None
        self.error = None


class Assessment:
    """What is on disk. Key bytes stay in ``key.data`` and are never formatted anywhere."""

    def __init__(self):
        self.dir_exists = False
        self.dir_stat = None
        self.key = FileState()
        self.key_summary = None
        self.key_size = None
        self.key_is_rsa = None
        self.cert = FileState()
        self.cert_info = None
        self.key_matches = None
        self.journal = None          # dict, or {"id": None} when unreadable
        self.staged_key = False
        self.staged_cert = False
        self.staged_journal = False

    @property
    def staged(self):
        return self.staged_key or self.staged_cert or self.staged_journal


def _read_journal(idir):
    data, _st = idir.read(JOURNAL, limit=65536)
    if data is None:
        return None
    try:
        journal = json.loads(data.decode("utf-8"))
        if not isinstance(journal, dict):
            raise ValueError
    except (ValueError, UnicodeDecodeError):
        return {"id": None, "corrupt": True}
    if not isinstance(journal.get("id"), str):
        journal["id"] = None
    return journal


def assess(idir, now=None):
    """Read the identity in ``idir`` (an IdentityDir, or None when the directory is absent)."""
    now = now or certs.utcnow()
    a = Assessment()
    if idir is None:
        return a
    a.dir_exists = True
    a.dir_stat = idir.dir_stat()

    a.cert.data, a.cert.stat = idir.read(CERT)
    a.cert.exists = a.cert.data is not None
    if a.cert.exists:
        try:
            a.cert_info = certs.CertInfo(certs.load_certificate(a.cert.data), now)
        except CertificateError as exc:
            a.cert.error = exc.msg

    a.key.data, a.key.stat = idir.read(KEY)
    a.key.exists = a.key.data is not None
    if a.key.exists:
        try:
            a.key_summary = certs.summarize_private_key(a.key.data)
            a.key_is_rsa = a.key_summary.is_rsa
            a.key_size = a.key_summary.key_size
        except CertificateError as exc:
            a.key.error = exc.msg
    if a.key_summary is not None and a.cert_info is not None:
        public = certs.certificate_public(a.cert_info.cert)
        a.key_matches = public is not None and a.key_summary.public == public

    a.journal = _read_journal(idir)
    a.staged_key = idir.exists(STAGED_KEY)
    a.staged_cert = idir.exists(STAGED_CERT)
    a.staged_journal = idir.exists(JOURNAL_TMP)
    return a


def permission_problems(a, settings):
    """[(name, wanted mode, description)] for the directory, key and certificate."""
    problems = []
    for name, st, mode in (
        (".", a.dir_stat, DIR_MODE),
        (KEY, a.key.stat, KEY_MODE),
        (CERT, a.cert.stat, CERT_MODE),
    ):
        if st is None:
            continue
        what = "directory" if name == "." else name
        wrong = []
        if (st.st_mode & 0o7777) != mode:
            wrong.append("mode %s (want %04o)" % (mode_str(st.st_mode), mode))
        if st.st_uid != settings.uid or st.st_gid != settings.gid:
            wrong.append("owner %d:%d (want %d:%d)" % (st.st_uid, st.st_gid, settings.uid, settings.gid))
        if wrong:
            problems.append((name, mode, "%s %s" % (what, ", ".join(wrong))))
    return problems


# ============================================================================================
# Decision (pure)
# ============================================================================================
class Plan:
    def __init__(self, action, reason, agent_id=None, new_key=False, reupload=False,
                 fixes=(), notes=(), journal_id_reused=False, drop_journal=False):
        self.action = action
        self.reason = reason
        self.agent_id = agent_id
        self.new_key = new_key
        self.reupload = reupload
        self.fixes = list(fixes)
        self.notes = list(notes)
        self.journal_id_reused = journal_id_reused
        self.drop_journal = drop_journal

    def __repr__(self):  # for test failure output
        return "Plan(%s, %r, agent_id=%r)" % (self.action, self.reason, self.agent_id)


def _valid_id(value, settings):
    try:
        check_agent_id(value, settings.id_pattern, "certificate CN")
        return True
    except ConfigError:
        return False


def _broken_never(agent_id, problems, settings):
    return StateError(
        "the identity of %s in %s is broken (%s) and rotate=never forbids re-keying it; "
        "run with rotate=auto to repair it" % (agent_id, settings.path, "; ".join(problems))
    )


def decide(a, settings, now=None, rotated_already=False):
    """Plan for assessment ``a``. Raises StateError when the module must not guess."""
    now = now or certs.utcnow()
    s = settings
    fixes = permission_problems(a, s)
    journal = a.journal
    journal_id = journal.get("id") if journal else None
    if journal_id is not None and not _valid_id(journal_id, s):
        journal_id = None

    # ---- no certificate --------------------------------------------------------------
    if not a.cert.exists:
        agent_id = s.agent_id or journal_id
        if a.key.exists:
            if not agent_id:
                raise StateError(
                    "%s exists but %s is missing, so this device's agent ID cannot be recovered. "
                    "Set agent_id to the device's ID to re-key it, or move %s away to enroll it "
                    "as a new device." % (s.key_path, s.cert_path, s.path)
                )
            if s.rotate == "never":
                raise _broken_never(agent_id, ["certificate missing"], s)
            return Plan("rotated", "certificate missing: re-keying %s" % agent_id, agent_id,
                        new_key=True, fixes=fixes,
                        journal_id_reused=agent_id == journal_id and not s.agent_id)
        if agent_id and agent_id == journal_id and not s.agent_id:
            reason = ("no identity on this device; reusing ID %s reserved by an interrupted run"
                      % agent_id)
        elif agent_id:
            reason = "no identity on this device; using the pre-assigned agent_id"
        else:
            reason = "no identity on this device; requesting a new ID"
        return Plan("created", reason, agent_id, new_key=True, fixes=fixes,
                    journal_id_reused=bool(agent_id) and agent_id == journal_id,
                    drop_journal=bool(journal) and agent_id != journal_id)

    # ---- certificate present but its ID cannot be used ---------------------------------
    info = a.cert_info
    cn = info.agent_id if info is not None else None
    if info is None or cn is None or not _valid_id(cn, s):
        if info is None:
            problem = "%s cannot be read (%s)" % (s.cert_path, a.cert.error)
        else:
            problem = "the CN of %s is not a valid agent ID" % s.cert_path
        if not s.agent_id:
            raise StateError(
                "%s, so this device's agent ID is unknown. Set agent_id to the device's ID to "
                "re-key it, or move %s away to enroll it as a new device." % (problem, s.path)
            )
        if s.rotate == "never":
            raise _broken_never(s.agent_id, [problem], s)
        return Plan("rotated", "%s: re-keying %s" % (problem, s.agent_id), s.agent_id,
                    new_key=True, fixes=fixes, drop_journal=bool(journal) and journal_id != s.agent_id)

    # ---- CN vs agent_id -----------------------------------------------------------------
    if s.agent_id and s.agent_id != cn:
        if s.rotate != "always":
            raise StateError(
                "%s belongs to agent %s but agent_id is %s. Fix agent_id (quote IDs in "
                "inventories), or set rotate=always to re-key this device as %s."
                % (s.cert_path, cn, s.agent_id, s.agent_id)
            )
        return Plan("rotated", "rotate=always: re-keying as %s (the certificate was for %s)"
                    % (s.agent_id, cn), s.agent_id, new_key=True, fixes=fixes,
                    drop_journal=bool(journal) and journal_id != s.agent_id)
    agent_id = cn
    drop_journal = bool(journal) and journal_id is not None and journal_id != agent_id
    uncertain = bool(journal) and (journal_id is None or journal_id == agent_id)

    broken = []
    if not a.key.exists:
        broken.append("private key missing")
    elif a.key.error:
        broken.append("private key unusable: %s" % a.key.error)
    elif not a.key_is_rsa:
        broken.append("private key is not RSA")
    elif not a.key_matches:
        broken.append("private key does not match the certificate")
    usage = [p for p in info.client_auth_problems
             if not p.startswith("expired") and not p.startswith("not valid before")]
    if usage:
        broken.append("certificate unusable for TLS client auth (%s)" % ", ".join(usage))

    due = []
    if now >= info.not_after:
        due.append("certificate expired on %s" % certs.iso(info.not_after))
    elif now < info.not_before:
        due.append("certificate not valid before %s" % certs.iso(info.not_before))
    elif info.days_left < s.renew_before_days:
        due.append("certificate expires in %d days (renew_before_days=%d)"
                   % (info.days_left, s.renew_before_days))

    policy = []
    size = a.key_size if a.key_size else info.key_size
    if size and size != s.key_size and not broken:
        policy.append("key size %d differs from key_size %d" % (size, s.key_size))
    # A CA-issued certificate carries the subject the CA chose: only compare self-signed ones.
    differing = ["%s=%s (want %s)" % (k, info.subject.get(k), s.subject[k])
                 for k in certs.SUBJECT_KEYS if info.subject.get(k) != s.subject[k]]
    if differing and info.self_signed:
        policy.append("subject differs: %s" % ", ".join(differing))
    if s.enrollment == "csr" and info.self_signed:
        policy.append("certificate is self-signed but enrollment=csr")
    elif s.enrollment == "self_signed" and not info.self_signed:
        policy.append("certificate is CA-issued but enrollment=self_signed")

    notes = []
    if s.rotate == "never":
        if broken:
            raise _broken_never(agent_id, broken, s)
        if due or policy:
            notes.append("rotation would be due (%s) but rotate=never" % "; ".join(due + policy))
    else:
        reasons = []
        if s.rotate == "always" and not rotated_already:
            reasons.append("rotate=always")
        reasons.extend(broken + due + policy)
        if reasons:
            return Plan("rotated", "; ".join(reasons), agent_id, new_key=True, fixes=fixes,
                        notes=notes, drop_journal=drop_journal)

    if uncertain:
        why = "a previous run could not confirm that the registry holds this certificate"
        if s.enrollment == "csr" and not info.self_signed:
            if s.rotate == "never":
                raise StateError("%s (%s) and rotate=never forbids re-enrolling; run with "
                                 "rotate=auto" % (why, s.path))
            return Plan("rotated", why + ": re-enrolling", agent_id, new_key=True,
                        fixes=fixes, notes=notes)
        return Plan("repaired", why + ": uploading it again", agent_id, reupload=True,
                    fixes=fixes, notes=notes)
    if fixes:
        return Plan("repaired", "fixed " + "; ".join(f[2] for f in fixes), agent_id,
                    fixes=fixes, notes=notes, drop_journal=drop_journal)
    reason = "certificate valid for %d more days" % info.days_left
    if notes:
        reason += "; " + "; ".join(notes)
    return Plan("unchanged", reason, agent_id, notes=notes, drop_journal=drop_journal)


# ============================================================================================
# Transaction
# ============================================================================================
def _journal_write(idir, agent_id, operation, fingerprint=None, now=None):
    record = {
        "version": 1,
        "id": agent_id,
        "operation": operation,
        "registry": "uncertain",
        "since": certs.iso(now or certs.utcnow()),
    }
    if fingerprint:
        record["fingerprint_sha256"] = fingerprint
    idir.create(JOURNAL_TMP, (json.dumps(record, sort_keys=True) + "\n").encode("ascii"), 0o600)
    idir.rename(JOURNAL_TMP, JOURNAL)
    idir.fsync()


def _journal_drop(idir):
    if idir.unlink(JOURNAL):
        idir.fsync()


def _drop_staged(idir):
    removed = False
    for name in (STAGED_KEY, STAGED_CERT, JOURNAL_TMP):
        removed = idir.unlink(name) or removed
    if removed:
        idir.fsync()


def _backup(idir, stamp):
    """Hard-link the current key and certificate to ``<name>.<stamp>.bak``; return the paths."""
    made = []
    for name in (KEY, CERT):
        if not idir.exists(name):
            continue
        target = "%s.%s.bak" % (name, stamp)
        n = 1
        while idir.exists(target):
            n += 1
            target = "%s.%s-%d.bak" % (name, stamp, n)
        idir.link(name, target)
        made.append(idir.join(target))
    return made


def _swap(idir, settings, now, have_staged_key=True):
    backups = []
    if settings.backup:
        backups = _backup(idir, now.strftime("%Y%m%dT%H%M%SZ"))
    if have_staged_key:
        idir.rename(STAGED_KEY, KEY)
    idir.rename(STAGED_CERT, CERT)
    idir.fsync()
    _journal_drop(idir)
    return backups


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
    if not certs.key_matches_certificate(key, cert):
        raise CertificateError("the enrollment endpoint returned a certificate for another key")
    problems = certs.client_auth_problems(cert, now)
    if problems:
        raise CertificateError("the enrollment endpoint returned a certificate unusable for TLS "
                               "client auth: %s" % ", ".join(problems))
    return cert


class Engine:
    """One run of the module against one identity directory."""

    def __init__(self, settings, client_factory, check_mode=False, now=None, warn=None):
        self.s = settings
        self._client_factory = client_factory
        self._client = None
        self.check_mode = check_mode
        self.now = now or certs.utcnow()
        self.warnings = []
        self._warn = warn
        self._backups = None

    # ---------------------------------------------------------------- helpers
    @property
    def client(self):
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def warn(self, msg):
        self.warnings.append(msg)
        if self._warn:
            self._warn(msg)

    # ---------------------------------------------------------------- entry point
    def run(self):
        try:
            return self._run()
        except OSError as exc:
            # A full disk, a read-only mount, EIO...: the transaction already removed what it
            # staged; report the system's reason instead of a traceback.
            raise StateError(
                "cannot update the identity in %s: %s%s. Nothing was swapped in unless the "
                "registry had accepted it; the next run resumes from what is on disk."
                % (self.s.path, exc.strerror or exc.__class__.__name__,
                   " (%s)" % exc.filename if isinstance(exc.filename, str) else "")
            ) from None

    def _run(self):
        s = self.s
        idir = IdentityDir.open(s.path, s.uid, s.gid, create=not self.check_mode)
        try:
            if idir is not None:
                idir.lock(timeout=s.lock_timeout)
            result = self._converge(idir)
            # The agent's configuration rides on the same run (one module call per host): it
            # is written only once the identity it points at is in place.
            if s.agent_config is not None:
                written = self._ensure_agent_config(idir)
                result["agent_config_changed"] = written
                result["changed"] = result["changed"] or written
            result["files"] = self._file_facts(idir)
            return result
        finally:
            if idir is not None:
                idir.close()
            if self._client is not None:
                self._client.close()

    def _converge(self, idir):
        s = self.s
        a = assess(idir, self.now)
        recovered = None
        if idir is not None and a.staged and not self.check_mode:
            before = a
            recovered = self.recover(idir, a)
            a = assess(idir, self.now)
            if recovered is not None:
                plan = decide(a, s, self.now, rotated_already=True)
                if plan.action == "unchanged":
                    plan = Plan(recovered[0], recovered[1], plan.agent_id)
                    return self._result(plan, before, a, changed=True, backups=self._backups)
                plan.reason = recovered[1] + "; then " + plan.reason
                return self.apply(idir, a, plan)
        plan = decide(a, s, self.now)
        if a.staged and self.check_mode:
            plan.reason += " (an interrupted transaction is pending and would be resolved first)"
        for note in plan.notes:
            self.warn(note)
        if plan.action == "unchanged" and plan.drop_journal and not self.check_mode:
            _journal_drop(idir)  # a journal about another ID: stale, not about this identity
        if self.check_mode or plan.action == "unchanged":
            return self._result(plan, a, None, changed=plan.action != "unchanged")
        return self.apply(idir, a, plan)

    def _ensure_agent_config(self, idir):
        """Write the agent configuration when its content, mode or owner differ (atomically:
        staged under a hidden name, then renamed). Returns whether it changed (or would)."""
        s = self.s
        name = s.agent_config_name
        wanted = s.agent_config.encode("utf-8")
        current, st = (None, None) if idir is None else idir.read(name)
        if current == wanted:
            if self.check_mode:
                same = (stat.S_IMODE(st.st_mode) == AGENT_CONFIG_MODE
                        and (st.st_uid, st.st_gid) == (s.uid, s.gid))
                return not same
            return bool(idir.fix_file(name, AGENT_CONFIG_MODE))
        if self.check_mode:
            return True
        staged = "." + name + ".new"
        idir.create(staged, wanted, AGENT_CONFIG_MODE)
        idir.rename(staged, name)
        idir.fsync()
        return True

    @staticmethod
    def _file_facts(idir):
        """Mode and owner of the directory and the identity files as they are now (read from
        the file system, not assumed), so the role can check them without another module run."""
        if idir is None:
            return {}
        return {"directory": stat_facts(idir.dir_stat()), "key": stat_facts(idir.lstat(KEY)),
                "cert": stat_facts(idir.lstat(CERT))}

    # ---------------------------------------------------------------- results
    def _result(self, plan, before, after_cert, changed, backups=None):
        """Build the module result. ``after_cert`` is a CertInfo, an Assessment or None."""
        s = self.s
        before_facts = before.cert_info.facts() if before.cert_info is not None else {}
        if isinstance(after_cert, Assessment):
            after_cert = after_cert.cert_info
        if after_cert is not None:
            facts = after_cert.facts()
            after_diff = {k: facts[k] for k in DIFF_KEYS}
        else:
            # check mode, or unchanged: describe the current identity
            facts = dict(before_facts) if before_facts else dict.fromkeys(FACT_KEYS)
            if plan.action in ("created", "rotated"):
                facts["agent_id"] = plan.agent_id
                after_diff = {
                    "agent_id": plan.agent_id or "(requested from the API)",
                    "fingerprint_sha256": "(new key)",
                    "not_after": certs.iso(self.now + datetime.timedelta(days=s.valid_days)),
                    "key_size": s.key_size,
                }
            else:
                after_diff = {k: before_facts.get(k) for k in DIFF_KEYS}
        before_diff = {k: before_facts[k] for k in DIFF_KEYS} if before_facts else {}
        result = {
            "changed": changed,
            "action": plan.action,
            "reason": plan.reason,
            "cert_path": s.cert_path,
            "key_path": s.key_path,
            "diff": {"before": before_diff, "after": after_diff},
        }
        result.update(facts)
        if backups:
            result["backup_files"] = backups
        return result

    # ---------------------------------------------------------------- recovery
    def recover(self, idir, a):
        """Complete or clean up a transaction a crash interrupted.

        Returns (action, reason) when a staged identity was uploaded and swapped in, else None
        (incomplete or foreign staged files are removed).
        """
        s = self.s
        staged_cert_data, _ = idir.read(STAGED_CERT)
        staged_key_data, _ = idir.read(STAGED_KEY)
        expected = s.agent_id
        if expected is None and a.cert_info is not None and a.cert_info.agent_id and _valid_id(a.cert_info.agent_id, s):
            expected = a.cert_info.agent_id
        if expected is None and a.journal and a.journal.get("id") and _valid_id(a.journal["id"], s):
            expected = a.journal["id"]
        usable = None
        why_not = "incomplete"
        if staged_cert_data is not None:
            try:
                cert = certs.load_certificate(staged_cert_data)
                cn = certs.common_name(cert)
                if expected is not None and cn != expected:
                    why_not = "staged certificate is for another ID"
                elif expected is None and not _valid_id(cn, s):
                    why_not = "staged certificate has an invalid CN"
                elif certs.client_auth_problems(cert, self.now):
                    why_not = "staged certificate is not usable"
                elif staged_key_data is not None:
                    key = certs.load_private_key(staged_key_data, validate=True)
                    if certs.key_matches_certificate(key, cert):
                        usable = (cn, cert, True)
                    else:
                        why_not = "staged key and certificate do not match"
                elif (a.key_summary is not None and a.key_summary.public is not None
                      and a.key_summary.public == certs.certificate_public(cert)):
                    # The key was already renamed into place when the run stopped.
                    certs.load_private_key(a.key.data, validate=True)
                    usable = (cn, cert, False)
            except CertificateError as exc:
                why_not = "staged files unusable (%s)" % exc.msg
        if usable is None:
            _drop_staged(idir)
            self.warn("removed staged files of an interrupted run in %s: %s" % (s.path, why_not))
            return None
        agent_id, cert, have_staged_key = usable
        _journal_write(idir, agent_id, "recover", certs.fingerprint_sha256(cert), self.now)
        try:
            self.client.upload_certificate(agent_id, staged_cert_data)
        except ApiError as exc:
            _drop_staged(idir)
            if exc.definitive:
                # Registry unchanged by this attempt; the journal stays: a crashed upload may
                # have landed before, so the current certificate is uploaded again below.
                self.warn("could not complete the interrupted rotation of %s (%s); staged "
                          "files removed" % (agent_id, exc.msg))
                return None
            raise TransactionError(
                "%s; the staged identity of an interrupted run was removed and the registry "
                "state of %s is uncertain (recorded in %s): the next run uploads the current "
                "certificate again" % (exc.msg, agent_id, idir.join(JOURNAL)), registry_uncertain=True,
            ) from None
        self._backups = _swap(idir, s, self.now, have_staged_key)
        action = "rotated" if a.cert.exists else "created"
        return action, "completed the %s of %s interrupted in a previous run" % (
            "rotation" if action == "rotated" else "creation", agent_id)

    # ---------------------------------------------------------------- apply
    def apply(self, idir, a, plan):
        if plan.drop_journal:
            _journal_drop(idir)
        replaced = plan.new_key
        idir.fix_self(DIR_MODE)
        if not replaced:
            for name, mode, _desc in plan.fixes:
                if name != ".":
                    idir.fix_file(name, mode)
        if plan.action == "repaired" and not plan.reupload:
            return self._result(plan, a, None, changed=True)
        if plan.reupload:
            try:
                self.client.upload_certificate(plan.agent_id, a.cert.data)
            except ApiError as exc:
                raise TransactionError(
                    "%s; the registry state of %s is still uncertain (%s kept): the next run "
                    "tries again" % (exc.msg, plan.agent_id, idir.join(JOURNAL)), registry_uncertain=True,
                ) from None
            _journal_drop(idir)
            return self._result(plan, a, None, changed=True)
        return self._transaction(idir, a, plan)

    def _transaction(self, idir, a, plan):
        s = self.s
        creating = plan.action == "created"
        journal_before = a.journal is not None and not plan.drop_journal
        agent_id = plan.agent_id
        requested = False
        if agent_id is None:
            agent_id = self.client.request_id()
            requested = True
        key = certs.generate_key(s.key_size)
        accepted = False
        journal_written = False
        try:
            idir.create(STAGED_KEY, certs.private_key_pem(key), KEY_MODE)
            if s.enrollment == "self_signed":
                cert = certs.build_self_signed(key, agent_id, s.subject, s.valid_days, self.now)
                cert_pem = certs.certificate_pem(cert)
                idir.create(STAGED_CERT, cert_pem, CERT_MODE)
                idir.fsync()
                _journal_write(idir, agent_id, "create" if creating else "rotate",
                               certs.fingerprint_sha256(cert), self.now)
                journal_written = True
                self.client.upload_certificate(agent_id, cert_pem)
            else:
                csr = certs.build_csr(key, agent_id, s.subject)
                idir.fsync()
                _journal_write(idir, agent_id, "create" if creating else "rotate", None, self.now)
                journal_written = True
                issued = self.client.enroll(agent_id, certs.csr_pem(csr))
                try:
                    cert = check_issued_certificate(issued, agent_id, key, self.now)
                except CertificateError as exc:
                    raise ApiError("POST %s: %s" % (self.client.enroll_endpoint, exc.msg),
                                   endpoint=self.client.enroll_endpoint, definitive=False) from None
                cert_pem = certs.certificate_pem(cert)
                idir.create(STAGED_CERT, cert_pem, CERT_MODE)
                idir.fsync()
            accepted = True
            backups = _swap(idir, s, self.now, True)
        except ApiError as exc:
            _drop_staged(idir)
            self._failed(idir, a, plan, agent_id, exc, creating, requested, journal_before)
            raise AssertionError("unreachable")  # pragma: no cover
        except BaseException:
            if not accepted:
                _drop_staged(idir)
                if journal_written and not journal_before:
                    _journal_drop(idir)
            raise
        info = certs.CertInfo(cert, self.now)
        return self._result(plan_with_id(plan, agent_id), a, info, changed=True, backups=backups)

    def _failed(self, idir, a, plan, agent_id, exc, creating, requested, journal_before):
        s = self.s
        if exc.definitive:
            if not journal_before:
                _journal_drop(idir)
            if creating and exc.status in (404, 410) and not s.agent_id:
                _journal_drop(idir)
                raise TransactionError(
                    "%s: the registry does not know ID %s (its reservation is unknown or expired). "
                    "Nothing was written; run again to request a fresh ID." % (exc.msg, agent_id)
                ) from None
            raise TransactionError(
                "%s; nothing was changed: %s" % (
                    exc.msg, "no identity was written" if creating else
                    "the previous identity is intact")
            ) from None
        # Ambiguous: the registry may hold the new certificate now.
        can_roll_back = (
            not creating and a.cert_info is not None and a.cert_info.agent_id == agent_id
            and a.cert_info.self_signed and a.key_matches
        )
        if can_roll_back:
            try:
                self.client.upload_certificate(agent_id, a.cert.data)
            except ApiError as rb_exc:
                raise TransactionError(
                    "%s; the registry may hold the new certificate and uploading the previous one "
                    "again failed too (%s). The previous identity is intact on the device; the "
                    "registry state is recorded in %s and the next run uploads the current "
                    "certificate again." % (exc.msg, rb_exc.msg, idir.join(JOURNAL)),
                    registry_uncertain=True,
                ) from None
            if exc.status is None:
                # No answer at all: the server may still be working on the new certificate and
                # store it after the rollback. Keep the journal: the next run uploads the
                # current certificate once more.
                raise TransactionError(
                    "%s; the previous certificate was uploaded again (rollback), but the server may "
                    "still store the new one late, so %s is kept and the next run uploads the "
                    "current certificate once more. The previous identity is intact on the device."
                    % (exc.msg, idir.join(JOURNAL)), registry_uncertain=True,
                ) from None
            if not journal_before:
                _journal_drop(idir)
            raise TransactionError(
                "%s; the registry may have stored the new certificate, so the previous one was "
                "uploaded again (rollback succeeded): device and registry agree on the previous "
                "identity. Nothing was changed." % exc.msg
            ) from None
        raise TransactionError(
            "%s; the registry may have stored the new certificate for %s. Nothing was written "
            "to the device; %s records the pending ID so the next run %s." % (
                exc.msg, agent_id, idir.join(JOURNAL),
                "reuses it instead of requesting a new one" if creating else "converges"),
            registry_uncertain=True,
        ) from None


def _check_agent_config(text):
    if text is None:
        return None
    if not isinstance(text, str):
        raise ConfigError("agent_config must be a string (the file's content)")
    if len(text.encode("utf-8")) > MAX_AGENT_CONFIG:
        raise ConfigError("agent_config is larger than %d bytes" % MAX_AGENT_CONFIG)
    if "PRIVATE KEY" in text:
        # The configuration is world-readable: it may name the key, never hold one.
        raise ConfigError("agent_config must not contain a private key")
    return text


def plan_with_id(plan, agent_id):
    plan.agent_id = agent_id
    return plan


def ensure_identity(settings, client_factory, check_mode=False, now=None, warn=None):
    """Run the engine; returns (result dict, warnings)."""
    engine = Engine(settings, client_factory, check_mode=check_mode, now=now, warn=warn)
    result = engine.run()
    backups = getattr(engine, "_backups", None)
    if backups:
        result.setdefault("backup_files", backups)
    return result, engine.warnings


# ============================================================================================
# Read-only facts (mtls_identity_info)
# ============================================================================================
def identity_facts(path=None, id_pattern=DEFAULT_ID_PATTERN, renew_before_days=30, now=None):
    """Facts about the identity at ``path``; never writes, never uses the network."""
    now = now or certs.utcnow()
    path = expand_path(path)
    facts = {
        "dir_path": path,
        "cert_path": os.path.join(path, CERT),
        "key_path": os.path.join(path, KEY),
        "exists": False,
        "agent_id": None,
        "fingerprint_sha256": None,
        "serial": None,
        "not_before": None,
        "not_after": None,
        "days_left": None,
        "key_size": None,
        "key_matches": None,
        "self_signed": None,
        "subject": None,
        "due": None,
        "files": {"directory": None, "key": None, "cert": None},
        "pending": {"staged_key": False, "staged_cert": False, "journal": None},
        "problems": [],
    }
    problems = facts["problems"]
    uid = os.geteuid()
    try:
        idir = IdentityDir.open(path, uid, os.getegid(), create=False)
    except IdentityError as exc:
        problems.append(exc.msg)
        return facts
    if idir is None:
        problems.append("%s does not exist" % path)
        return facts
    with idir:
        # Read under no lock: renames are atomic, and a reader must never block a run.
        try:
            a = assess(idir, now)
        except IdentityError as exc:
            problems.append(exc.msg)
            return facts
        facts["files"] = {
            "directory": stat_facts(a.dir_stat),
            "key": stat_facts(a.key.stat),
            "cert": stat_facts(a.cert.stat),
        }
        for label, st, mode in (("directory", a.dir_stat, DIR_MODE), (KEY, a.key.stat, KEY_MODE),
                                (CERT, a.cert.stat, CERT_MODE)):
            if st is not None and (st.st_mode & 0o7777) != mode:
                problems.append("%s has mode %s (want %04o)" % (label, mode_str(st.st_mode), mode))
        facts["pending"] = {
            "staged_key": a.staged_key,
            "staged_cert": a.staged_cert,
            "journal": a.journal,
        }
        if a.staged:
            problems.append("an interrupted transaction left staged files (the next run resolves them)")
        if a.journal is not None:
            problems.append("the registry may not hold the current certificate (journal %s present)" % JOURNAL)
        if not a.cert.exists:
            problems.append("%s is missing" % CERT)
        elif a.cert_info is None:
            problems.append("%s cannot be read: %s" % (CERT, a.cert.error))
        else:
            info = a.cert_info
            facts.update(info.facts())
            facts["self_signed"] = info.self_signed
            facts["subject"] = info.subject
            facts["due"] = info.days_left < renew_before_days or now >= info.not_after
            if info.agent_id is None or not _valid_id_pattern(info.agent_id, id_pattern):
                problems.append("the certificate CN is not a valid agent ID")
            problems.extend("certificate: %s" % p for p in info.client_auth_problems)
        if not a.key.exists:
            problems.append("%s is missing" % KEY)
        elif a.key.error:
            problems.append("%s: %s" % (KEY, a.key.error))
        else:
            if a.key_size and facts["key_size"] is None:
                facts["key_size"] = a.key_size
            if a.key_matches is not None:
                facts["key_matches"] = a.key_matches
                if not a.key_matches:
                    problems.append("%s does not match %s" % (KEY, CERT))
        facts["exists"] = a.cert_info is not None and a.key_matches is True
    return facts


def _valid_id_pattern(value, pattern):
    try:
        check_agent_id(value, pattern, "certificate CN")
        return True
    except ConfigError:
        return False
