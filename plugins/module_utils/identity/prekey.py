# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The device's next key, made in the background before the run needs it.

A small board takes 5-30 s for RSA-4096, and the identity task holds one of Ansible's forks for
the whole of it, so a fleet used to cost one keygen per batch of forks. The role's first, fast
pass (the mtls_prekey module, ``start_pass``) starts the key generation on each device that will
need a new key - decided as the identity task decides, without the network - in a process
detached from the SSH session, at the lowest CPU priority, once the pass has ended, so the
devices make their keys in parallel. The identity transaction then gets its key from
``new_key``: the staged one when it is there, waiting for it (within ``keygen_timeout``) while it
is being made, else a key made inline as before. No key byte leaves the device: the process
writes the key into the identity directory, nowhere else, and prints nothing (the process
itself: keygen_process.py).

Files, in the identity directory and only through its descriptor (names: layout.py)::

    .mtls-keygen.json      the record of the process (no secret): pid, its start time and boot,
                           its uid, the key size, whether the pass made the directory; written
                           (and renamed into place) under the directory's lock before the
                           process may start
    .client.key.pre.new    the key being written: O_EXCL|O_NOFOLLOW, 0600 from its first byte
    .client.key.pre        the finished key (0600), renamed into place, then taken by the
                           transaction (or removed by a run that needs no new key)

The process is ours only when the record's pid is alive with the recorded start time, boot and uid,
and that uid is the identity's owner's: a pid reused after a reboot or by another process, or a
record naming another user's process, is never waited for nor signalled. A record naming a process
that is gone, a half-written key, or anything at those names that is not what this bundle writes (a
symbolic link, another owner, another mode, a second link, not an RSA key of ``key_size``) is
removed - the name itself, never what a link points at - with a warning; the run then goes on as if
there were none. The directory's states: journal.py.

A directory the pass made for a creation the identity task then refuses before anything of the
identity is written goes, with the background keygen (runner.py): the record says the pass made
it (``made_directory``), and the identity run reads that before its transaction takes the key.
A pass that made the directory (or follows one that did) and then starts nothing - its process
failed to start, another run made the identity meanwhile - removes it again, through its
descriptor, when nothing but its own files is in it.
"""
from __future__ import annotations

import json
import os
import signal
import stat
import time

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certinfo, names
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import IdentityError, StateError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import keygen_process
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.keygen_process import KEY_MODE
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.layout import (
    CERT,
    KEYGEN_FILES,
    KEYGEN_RECORD,
    KEYGEN_RECORD_TMP,
    PREKEY,
    PREKEY_TMP,
)

NONE, RUNNING, READY, ABANDONED = "none", "running", "ready", "abandoned"
MAX_RECORD = 4096
MAX_NOTE = 600  # characters of one warning a pass leaves in the record (notes)
PID_MAX_LIMIT = 4194304  # the largest pid_max a kernel allows
MAX_KEY = 64 * 1024
POLL = 0.2  # seconds between two looks at a key being made (a few syscalls each)
STOP_WAIT = 10.0  # seconds a killed process is given to disappear
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class KeygenTimeout(StateError):
    """The key being made in the background was not ready within keygen_timeout."""


# ------------------------------------------------------------------------------ the process
def boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as handle:
            return handle.read(64).decode("ascii", "replace").strip()
    except OSError:
        return None


def process_facts(pid):
    """(state letter, start time in clock ticks since boot, real uid) of ``pid``, or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            fields = handle.read(4096)
        with open("/proc/%d/status" % pid, "rb") as handle:
            status = handle.read(8192)
        rest = fields[fields.rindex(b")") + 2:].split()  # the name in (...) may hold spaces
        uid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith(b"Uid:"))
        return rest[0].decode("ascii"), int(rest[19]), uid
    except (OSError, ValueError, IndexError, StopIteration):
        return None


class Record:
    """What ``.mtls-keygen.json`` says about the process making the key, whether the first
    pass made the identity directory for it (``made_directory``: absent in older records, which
    never lets a directory go), and the warnings of a pass nobody heard (``notes``: a pass
    handed over, plugin_utils/lean_run.py; the identity run tells them)."""

    def __init__(self, pid, start, boot, uid, key_size, since, made_directory=False, notes=()):
        self.pid = pid
        self.start = start
        self.boot = boot
        self.uid = uid
        self.key_size = key_size
        self.since = since
        self.made_directory = made_directory
        self.notes = tuple(notes)

    def to_json(self):
        return json.dumps({"version": 1, "pid": self.pid, "start": self.start, "boot": self.boot, "uid": self.uid,
                           "key_size": self.key_size, "since": self.since,
                           "made_directory": self.made_directory, "notes": list(self.notes)}, sort_keys=True) + "\n"

    @classmethod
    def parse(cls, data):
        """The record in ``data``, or None when it is not one."""
        try:
            doc = json.loads(data.decode("utf-8"))
            values = [doc[name] for name in ("pid", "start", "boot", "uid", "key_size", "since")]
        except (ValueError, UnicodeDecodeError, TypeError, KeyError):
            return None
        pid, start, boot, uid, key_size, since = values
        made_directory = doc.get("made_directory", False)
        notes = doc.get("notes", [])
        ints = (pid, start, uid, key_size)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints) \
                or not 2 <= pid <= PID_MAX_LIMIT or not isinstance(boot, str) or not isinstance(since, str) \
                or not isinstance(made_directory, bool) \
                or not isinstance(notes, list) or not all(_fit_note(n) for n in notes):
            return None
        return cls(pid, start, boot, uid, key_size, since, made_directory, notes)

    def alive(self):
        """Whether the recorded process is still running (the same process: start time, boot
        and uid agree; a zombie has finished)."""
        facts = process_facts(self.pid)
        return (facts is not None and facts[0] not in ("Z", "X") and facts[1] == self.start
                and facts[2] == self.uid and self.boot == boot_id())

    def age(self):
        """Seconds since the process started, or None."""
        since = certinfo.parse_time(self.since)
        if since is None:
            return None
        return max(0, int((certinfo.utcnow() - since).total_seconds()))


# ------------------------------------------------------------------------------ what is there
class State:
    """The background keygen as found: ``kind`` (NONE, RUNNING, READY, ABANDONED), its record,
    and ``foreign``: {name: why} of entries that are not what this bundle writes."""

    def __init__(self, kind, record=None, foreign=None, present=()):
        self.kind = kind
        self.record = record
        self.foreign = foreign or {}
        self.present = tuple(present)


def _not_ours(st, uid, mode=None):
    """Why the entry ``st`` is not a file this bundle wrote for ``uid`` (None: it may be)."""
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_uid != uid:
        return "owned by uid %d, not %d" % (st.st_uid, uid)
    if st.st_nlink != 1:
        return "%d links" % st.st_nlink
    if mode is not None and stat.S_IMODE(st.st_mode) != mode:
        return "mode %04o, not %04o" % (stat.S_IMODE(st.st_mode), mode)
    return None


def inspect(idir, uid):
    """The background keygen in ``idir`` for the owner ``uid`` (reads only: four lstat calls
    when there is none). A process found ended is looked at once more: it may have staged its key
    and ended between the first look at the files and the look at the process (the run holds the
    directory's lock, and an ended process changes nothing more)."""
    state = _inspect(idir, uid)
    if state.kind == ABANDONED and state.record is not None:
        state = _inspect(idir, uid)
    return state


def _inspect(idir, uid):
    present = {name: idir.lstat(name) for name in KEYGEN_FILES}
    present = {name: st for name, st in present.items() if st is not None}
    if not present:
        return State(NONE)
    foreign = {}
    for name, mode in ((PREKEY, KEY_MODE), (KEYGEN_RECORD, None), (KEYGEN_RECORD_TMP, None)):
        if name in present:
            why = _not_ours(present[name], uid, mode)
            if why:
                foreign[name] = why
    record = None
    if KEYGEN_RECORD in present and KEYGEN_RECORD not in foreign:
        try:
            data, _st = idir.read(KEYGEN_RECORD, limit=MAX_RECORD)
        except IdentityError as exc:  # replaced by a link or a big file since the look above
            data, foreign[KEYGEN_RECORD] = None, exc.msg
        record = Record.parse(data) if data is not None else None
        if record is None:
            foreign.setdefault(KEYGEN_RECORD, "not a keygen record")
        elif record.uid != uid:  # the owner's process only: never wait for or signal another user's
            foreign[KEYGEN_RECORD] = "names a process of uid %d, not %d" % (record.uid, uid)
            record = None
    if PREKEY in present and PREKEY not in foreign:  # complete once renamed into place
        return State(READY, record, foreign, present)
    if record is not None and record.alive():
        # A key being written is the process's own (its mode is exact only once it is open).
        return State(RUNNING, record, foreign, present)
    if PREKEY_TMP in present:
        foreign[PREKEY_TMP] = _not_ours(present[PREKEY_TMP], uid) or "left half-written"
    return State(ABANDONED, record, foreign, present)


def _remove(idir, names_):
    removed = [name for name in names_ if idir.unlink(name)]
    if removed:
        idir.fsync()
    return removed


def _clean(idir, state, warn, also=()):
    """Remove what ``state`` found that is not ours, what a dead process left, and ``also``
    (the warning names the first two)."""
    left = state.present if state.kind == ABANDONED else ()
    unexpected = [name for name in KEYGEN_FILES if name in state.foreign or name in left]
    removed = _remove(idir, [name for name in KEYGEN_FILES if name in unexpected or name in also])
    told = [name for name in removed if name in unexpected]
    if told and warn is not None:
        why = ["%s: %s" % (name, state.foreign[name]) for name in told if name in state.foreign]
        if state.kind == ABANDONED and state.record is not None:
            why.append("its process (pid %d) is gone" % state.record.pid)
        warn("removed what a background key generation left in %s (%s): %s"
             % (idir.path, "; ".join(why) or "abandoned", ", ".join(told)))
    return removed


# ------------------------------------------------------------------------------ the transaction's side
def new_key(idir, settings, warn, made):
    """The transaction's new key: the one made in the background when there is one (waiting for
    it while it is being made, up to ``keygen_timeout``), else one made now. ``made`` (a dict) is
    told how (``keygen``: background or inline; ``keygen_ms``: the making's wall time on the
    device; ``keygen_wait_ms``: how long this run waited for a background key)."""
    key = take(idir, settings, warn, made)
    if key is None:
        began = time.monotonic()
        key = settings.key_profile.generate(settings.key_size)
        made.update(keygen="inline", keygen_ms=_ms(time.monotonic() - began), keygen_wait_ms=None)
    return key


def take(idir, settings, warn, made, clock=time.monotonic, sleep=time.sleep):
    """The key the background made for this identity (its files removed), or None (anything
    unusable removed, with a warning). Raises KeygenTimeout when it is still being made after
    ``keygen_timeout`` seconds: it is left to finish for the next run. ``made``: as new_key's."""
    s = settings
    state = inspect(idir, s.uid)
    _tell_notes(state, warn)
    began = clock()
    if state.kind == RUNNING:
        state = _wait(idir, s, state, clock, sleep)
    waited = clock() - began
    if state.kind != READY:
        _clean(idir, state, warn)
        return None
    key, why, making = _load(idir, s, state.record)
    _clean(idir, state, warn, also=(PREKEY, KEYGEN_RECORD))
    if key is None and warn is not None:
        warn("removed %s, the key made in the background (%s): making one now" % (idir.join(PREKEY), why))
    if key is not None:
        made.update(keygen="background", keygen_ms=_ms(making), keygen_wait_ms=_ms(waited))
    return key


def _ms(seconds):
    return None if seconds is None else int(round(seconds * 1000))


def making_time(record, key_mtime, boot=None, since_boot=None, now=None):
    """Seconds from the background process's start to its key's last write (``key_mtime``), or
    None when the clocks cannot tell (another boot; no boot clock). The process's start is in
    clock ticks since boot, the key's in wall time: both meet on this boot's clock."""
    try:
        boot = boot_id() if boot is None else boot
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME) if since_boot is None else since_boot
        ticks = float(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):
        return None
    if record is None or boot is None or record.boot != boot:
        return None
    started = (time.time() if now is None else now) - (since_boot - record.start / ticks)
    return max(0.0, key_mtime - started)


def _fit_note(note):
    """Whether ``note`` may be repeated as a warning: the record is the owner's file, and what
    the controller prints must be one printable line of bounded length."""
    return isinstance(note, str) and len(note) <= MAX_NOTE and note.isprintable()


def _as_note(warning):
    text = "".join(c if c.isprintable() else "?" for c in warning)
    return text if len(text) <= MAX_NOTE else text[:MAX_NOTE - 3] + "..."


def _tell_notes(state, warn):
    if warn is not None and state.record is not None:
        for note in state.record.notes:
            warn("the first pass: %s" % note)


def _staged(idir):
    """Whether the finished key is in place (a link someone put there is not: the process's
    rename replaces it)."""
    st = idir.lstat(PREKEY)
    return st is not None and stat.S_ISREG(st.st_mode)


def _wait(idir, s, state, clock, sleep):
    deadline = clock() + s.keygen_timeout
    while not _staged(idir) and state.record.alive():
        if clock() >= deadline:
            age = state.record.age()
            raise KeygenTimeout(
                "the new key this device is generating in the background (pid %d, running for %s) was not ready "
                "within %s=%d s: nothing was changed%s. The next run takes the key once it is ready; "
                "raise %s for a device this slow"
                % (state.record.pid, "%d s" % age if age is not None else "a while",
                   names.setting("keygen_timeout"), s.keygen_timeout,
                   ", the current identity is intact" if idir.exists(CERT) else "",
                   names.setting("keygen_timeout")))
        sleep(POLL)
    return inspect(idir, s.uid)


def _load(idir, s, record):
    """(key, None, seconds its making took or None) for the staged key when it is an RSA key of
    key_size, else (None, why, None)."""
    try:
        data, st = idir.read(PREKEY, limit=MAX_KEY)
        if data is None:
            return None, "gone", None
        why = _not_ours(st, s.uid, KEY_MODE)  # of the file opened, not of the name looked at
        if why:
            return None, why, None
        summary = s.key_profile.summarize(data)  # the DER's consistency checks, no OpenSSL validation
        if not summary.is_rsa or summary.key_size != s.key_size:
            return None, "not an RSA key of %s=%d" % (names.setting("key_size"), s.key_size), None
        # OpenSSL's own generation made it on this device, into a directory only its owner may
        # write; validating it again (primality tests) would cost a slow device as much as a
        # quarter of a new key.
        return s.key_profile.load(data, validate=False), None, making_time(record, st.st_mtime)
    except IdentityError as exc:
        return None, exc.msg, None


def discard(idir, uid, warn):
    """This run needs no new key (or the directory the key was made in goes): stop a background
    keygen of ours and remove what it left (a few lstat calls when there is none)."""
    state = inspect(idir, uid)
    if state.kind == NONE:
        return
    _tell_notes(state, warn)
    if state.kind == RUNNING:
        stop(state.record)
        if warn is not None:
            warn("stopped the background key generation in %s (pid %d): this run needs no new key"
                 % (idir.path, state.record.pid))
    elif state.kind == READY and warn is not None:
        warn("removed the key made in the background in %s: this run needs no new key" % idir.path)
    _clean(idir, State(READY, foreign=state.foreign), warn, also=KEYGEN_FILES)


def made_the_directory(idir, uid):
    """Whether a record of ours says the first pass made ``idir`` (read before the transaction
    takes the key and its record)."""
    record = inspect(idir, uid).record
    return record is not None and record.made_directory


def stop_running(idir, uid):
    """Stop the background keygen of ``idir`` if one of ours is running (before its files are
    removed: decommissioning)."""
    state = inspect(idir, uid)
    if state.kind == RUNNING:
        stop(state.record)


def stop(record):
    """SIGKILL the recorded process when it is ours and alive; wait (bounded) until it is gone,
    so nothing it would still write appears after its files are removed."""
    if record is None:
        return
    # A pidfd taken before the check names the process checked: a pid freed and reused between
    # the check and the signal is never signalled.
    pidfd = _pidfd(record.pid)
    try:
        if not record.alive():
            return
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        else:
            os.kill(record.pid, signal.SIGKILL)
    except OSError:  # gone meanwhile, or not ours to signal (another user's run started it)
        return
    finally:
        if pidfd is not None:
            os.close(pidfd)
    deadline = time.monotonic() + STOP_WAIT
    while record.alive() and time.monotonic() < deadline:
        time.sleep(0.05)


def _pidfd(pid):
    """A descriptor of the process ``pid`` (Linux 5.3+, Python 3.9+), or None."""
    if not hasattr(os, "pidfd_open") or not hasattr(signal, "pidfd_send_signal"):
        return None
    try:
        return os.pidfd_open(pid)
    except (OSError, OverflowError):  # gone, not a pid, or no pidfds here: the check then says
        return None


# ------------------------------------------------------------------------------ the first pass
def run_pass(params, check_mode=False, warn=None, detached=False):
    """The whole mtls_prekey run on the options ``params`` (validated, paths expanded): the
    device's libraries, its headers file and every option checked as the identity task checks
    them, then ``start_pass``. Never fails on the device's state: the identity task meets the
    same problem and reports it, once, as the host's failure."""
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.api import REQUESTS_IMPORT_ERROR
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.headers import params_headers

    names.use_role_names(params.get("option_names") == "role")
    if certinfo.CRYPTOGRAPHY_IMPORT_ERROR is not None or REQUESTS_IMPORT_ERROR is not None:
        return _result("not started", "the device lacks cryptography or requests: the identity task installs "
                                      "them, makes the key")
    try:
        params_headers(params)  # the device's headers file checked (never used: no request here)
        settings = checked_settings(params)
    except IdentityError as exc:  # the identity task refuses the same option, by its name
        return _result("not started", exc.msg)
    try:
        return start_pass(settings, check_mode=check_mode, warn=warn, detached=detached)
    except (IdentityError, OSError) as exc:
        return _result("not started", getattr(exc, "msg", None) or getattr(exc, "strerror", None) or str(exc))


def run_lean(request):
    """``run_pass`` as the action plugin runs it without AnsiballZ (plugin_utils/lean_run.py):
    ``request`` holds the options checked on the controller and the check mode. Prints the
    result, as a module does."""
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import lean
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.options import argument_spec

    module = lean.LeanModule(lean.device_params(request, argument_spec()), request["check_mode"])
    result = run_pass(module.params, check_mode=module.check_mode, warn=module.warn,
                      detached=bool(request.get("detached")))
    lean.emit(result, module)


def checked_settings(p):
    """The identity's Settings from the mtls_identity options ``p``, every option checked by that
    module's own preflight (module_utils/preflight.py), without the network: an option it would
    refuse raises here, before anything is created."""
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.preflight import preflight

    return preflight(p, lambda _agent_id: None).settings  # checked only: the first pass asks nobody


def start_pass(settings, check_mode=False, now=None, warn=None, detached=False):
    """The mtls_prekey module's run: decide as the identity task will (no network, no write),
    and when it will need a new key, start making it in the background unless one is being made
    or waits already. Returns the result: ``keygen`` (started, would start, running, ready, not
    needed), ``reason``, ``changed``. ``detached``: nobody hears this run (a pass handed over,
    plugin_utils/lean_run.py): its warnings go into the record of the key it starts."""
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.engine import open_locked

    s = settings
    notes = []  # empty unless detached: then the warnings, for the record of the key it starts
    if detached:
        warn = notes.append
    idir = open_locked(s, create=False)
    try:
        result = _pass(s, idir, check_mode, now, warn, notes)
        if result is None:  # a new key is needed and the directory is missing: make it, decide again
            idir = open_locked(s, create=True)
            result = _pass(s, idir, check_mode, now, warn, notes) or _result("not needed", "nothing to do")
            if result["keygen"] != "started" and idir.created:
                # another run made the identity meanwhile: only an empty one goes
                remove_unused_directory(idir, s.uid, s.gid, ours=())
        return result
    finally:
        if idir is not None:
            idir.close()


def _result(keygen, reason, changed=False, record=None):
    result = {"changed": changed, "keygen": keygen, "reason": reason}
    if record is not None:
        result["keygen_pid"] = record.pid
    return result


def _pass(s, idir, check_mode, now, warn, notes=()):
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.assess import assess
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.plan import decide

    a = assess(idir, now)
    if a.staged:
        return _result("not needed", "an interrupted transaction is pending: the identity task completes it first")
    try:
        plan = decide(a, s, now)
    except IdentityError as exc:
        return _result("not needed", "the identity task decides: %s" % exc.msg)
    if not plan.new_key:
        return _result("not needed", plan.reason)
    if check_mode:
        return _result("would start", plan.reason, changed=True)
    if idir is None:
        return None
    state = inspect(idir, s.uid)
    if state.kind == RUNNING:
        return _result("running", "a key for this device is being made in the background already", record=state.record)
    if state.kind == READY:
        key, why = _load(idir, s)
        if key is not None:
            return _result("ready", "a key made in the background waits for the identity task", record=state.record)
        _clean(idir, state, warn, also=KEYGEN_FILES)
        if warn is not None:
            warn("removed %s, the key made in the background (%s)" % (idir.join(PREKEY), why))
    else:
        _clean(idir, state, warn)
    # Made by this pass, or by an earlier one whose process is gone: nothing else was there.
    made = idir.created or (state.record is not None and state.record.made_directory)
    try:
        record = start(idir, s, made_directory=made, notes=notes)
    except Exception:
        if made:  # made for this key only: nothing of it may outlive the failed start
            remove_unused_directory(idir, s.uid, s.gid)
        raise
    return _result("started", plan.reason, changed=True, record=record)


def remove_unused_directory(idir, uid, gid, ours=KEYGEN_FILES, others=()):
    """Remove a directory made for a key that will not be used (a pass that started nothing, a
    creation refused before anything of the identity was written), when it holds nothing but
    the keygen's ``ours`` and ``others`` (the API's CA a run copied in). The keygen's process, if
    still there, is stopped before its files go, so nothing it would write appears after; all
    through the descriptor, nothing followed. Anything else in it (an identity, a journal,
    another pass's keygen) keeps it. Returns whether it went."""
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.decommission import (
        remove_directory_if_empty,
    )

    if not set(idir.listdir()) <= set(ours).union(others):
        return False
    discard(idir, uid, None)  # the failure says why: no warning of its own
    for name in others:
        idir.unlink(name)
    return remove_directory_if_empty(idir, uid, gid)


def start(idir, s, made_directory=False, notes=()):
    """Start the process that makes the key; it waits until its record is written (a starter
    interrupted before that leaves no process making a key nobody knows of). Returns its Record
    (``made_directory``: the pass made ``idir``, recorded for the identity run; ``notes``: the
    warnings of a pass nobody heard)."""
    uid, gid = (s.uid, s.gid) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    # A descriptor of its own for the process: the run's one holds the directory's lock, which
    # the process must not keep once the run ends.
    dir_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | _O_CLOEXEC, dir_fd=idir.fd)
    pid, go = keygen_process.launch(dir_fd, uid, gid, s.key_profile, s.key_size)
    try:
        facts = process_facts(pid) if pid > 1 else None
        if facts is None:
            raise StateError("the background key generation did not start")
        record = Record(pid, facts[1], boot_id() or "", uid, s.key_size, certinfo.iso(certinfo.utcnow()),
                        made_directory, [_as_note(n) for n in notes])
        if len(record.to_json()) > MAX_RECORD:  # warnings naming a very long path: the record must stay readable
            record.notes = ()
        idir.create(KEYGEN_RECORD_TMP, record.to_json().encode("ascii"), 0o600)
        idir.rename(KEYGEN_RECORD_TMP, KEYGEN_RECORD)
        idir.fsync()
        os.write(go, b"1")
    finally:
        os.close(go)  # without the "1", the process makes nothing and exits
    return record
