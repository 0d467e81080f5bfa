"""Fault matrix, slow devices: the key made in the background (issue 22).

``mtls_prekey`` (the role's first pass) starts the new key's generation in a detached process;
``mtls_identity`` takes the staged key (identity/prekey.py). Both run as on a device, each in
its own Python process (the background process is a fork of the first one, so the fault hooks
of tests/fixtures/inject reach it: ``signal=STOP`` holds it at an exact step, as a slow device
would be, ``signal=KILL`` ends it there). The cases prove: the registered certificate's key is
the one the background made and the identity run made none of its own; a process killed
mid-way, a record of a dead or of somebody else's process, and anything at the staged key's
names that this bundle did not write (a symbolic link, another owner, a loose mode, a second
link, not a key of key_size) are removed - never followed, never signalled - and the run
converges; a device slower than ``keygen_timeout`` fails saying so with its identity intact,
and the next run takes the key; check mode and a run that needs no key start no process and
write no file; a device that becomes due between the two passes is keyed once; a start that
fails leaves no directory a pass made for it; a creation the identity run refuses (the clock,
the ID request, a pre-assigned ID a live device holds) leaves no directory the pass made, no key
and no process, while a directory there before the pass keeps its key for the next run.
"""
from __future__ import annotations

import datetime
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import keys
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.decommission import decommission
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import ensure_identity, prekey
from tests.fixtures import module_runner as h
from tests.fixtures.device import Device
from tests.fixtures.product import api_client
from tests.fixtures.product import settings as make_settings

PREKEY = ".client.key.pre"
PREKEY_TMP = ".client.key.pre.new"
RECORD = ".mtls-keygen.json"
CLOCK_EP = "/"  # the clock check's HEAD: the identity run has reached its new key
ID_EP = "/generate-orchestrator-id"
UPLOAD_EP = "/upload-orchestrator-certificate"
JSON_UPLOAD_EP = "/agent/certificate"  # the api-service's upload
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
# Hold the background process once it opened the key it writes (a slow device, mid-way), or
# just before it opens it; end it there.
HOLD_WRITING = "op=open,match=.client.key.pre.new,nth=1,when=after,signal=STOP"
HOLD_BEFORE_WRITING = "op=open,match=.client.key.pre.new,nth=1,when=before,signal=STOP"
KILL_WRITING = "op=open,match=.client.key.pre.new,nth=1,when=after,signal=KILL"
# End the background process at its first step (/dev/null as its stdin), before it tells the pass
# its pid: a start that fails, as a fork refused or a process killed at once would.
KILL_STARTING = "op=open,match=null,nth=1,when=before,signal=KILL"
NOBODY = 65534  # another user's process


# ------------------------------------------------------------------------------ helpers
def run_prekey(device, *, check=False, hooks=None, via=None, env=None, timeout=180, **overrides):
    """mtls_prekey on ``device`` (the identity's options), as on a device; its output scanned.
    ``via`` (default $FLEET_FAULTS_VIA): ``direct``, the module's main in its own process;
    ``ansible``, the module through Ansible (AnsiballZ); ``lean``, through Ansible with
    pipelining on, where the action runs the pass without AnsiballZ (plugin_utils/lean_run.py)."""
    args = device.args(**overrides)
    via = via or os.environ.get("FLEET_FAULTS_VIA", "direct")
    if via in ("ansible", "lean"):
        env = dict(env or {}, ANSIBLE_PIPELINING="1" if via == "lean" else "0")
        result = h.run_ansible_module(args, workdir=device.work, check=check, hooks=hooks, env=env,
                                      module="mtls_prekey", timeout=timeout)
    else:
        result = h.run_module(args, workdir=device.work, check=check, hooks=hooks, via="direct",
                              env=dict(env or {}, FLEET_FAULTS_MODULE="mtls_prekey"))
    device.assert_no_secrets(result)
    return result


def record_of(device):
    data = (device.path / RECORD).read_bytes()
    record = prekey.Record.parse(data)
    assert record is not None, data
    return record


def warnings_of(result) -> str:
    """The run's warnings, one text (ansible-core 2.19 returns them as summaries; an ad-hoc
    ``ansible`` run prints them, unwrapped, on stderr)."""
    texts = []
    for warning in result.result.get("warnings") or []:
        texts.append(warning if isinstance(warning, str) else str((warning.get("event") or {}).get("msg", warning)))
    if result.via == "ansible":
        texts.append(" ".join(result.stderr.split()))
    return "\n".join(texts)


def public_numbers(pem: bytes):
    return keys.load_private_key(pem).public_key().public_numbers()


def wait_for_record(device) -> prekey.Record:
    """The keygen's record once a pass wrote it (a lean pass writes it after it answered)."""
    h.wait_for(lambda: (device.path / RECORD).exists(), timeout=120, what="the keygen's record")
    return record_of(device)


def wait_for_staged_key(device, record) -> bytes:
    h.wait_for(lambda: (device.path / PREKEY).exists() or not record.alive(), timeout=120,
               what="the background key")
    return (device.path / PREKEY).read_bytes()


def processes_holding(directory: pathlib.Path) -> list[int]:
    """Pids with a descriptor open on ``directory`` (the background process keeps one on the
    identity directory for as long as it lives), whatever started them."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fds = os.listdir("/proc/%s/fd" % name)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink("/proc/%s/fd/%s" % (name, fd)) == str(directory):
                    found.append(int(name))
                    break
            except OSError:
                pass
    return found


def dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def write_record(device, pid, start=1, key_size=2048, uid=None):
    boot = prekey.boot_id() or ""
    uid = os.getuid() if uid is None else uid
    data = {"version": 1, "pid": pid, "start": start, "boot": boot, "uid": uid, "key_size": key_size,
            "since": "2026-01-01T00:00:00Z"}
    path = device.path / RECORD
    path.write_text(json.dumps(data))
    os.chmod(path, 0o600)


def write_key(path: pathlib.Path, bits=2048, mode=0o600) -> bytes:
    pem = h.key_pem(h.new_key(bits))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(path, mode)
    return pem


@pytest.fixture
def keygens(device):
    """The background processes a case starts: SIGCONT-ed and SIGKILL-ed at the end, whatever
    happened (never a stray process after the case)."""
    started = []
    yield started
    for path in [device.path / RECORD] + list(started):
        try:
            record = prekey.Record.parse(pathlib.Path(path).read_bytes()) if isinstance(path, pathlib.Path) else path
        except OSError:
            continue
        if record is not None and record.alive():
            os.kill(record.pid, signal.SIGCONT)
            prekey.stop(record)


def assert_nothing_of_the_background(device):
    left = [n for n in os.listdir(device.path) if n in (PREKEY, PREKEY_TMP, RECORD, RECORD + ".new")]
    assert left == [], left


# ------------------------------------------------------------------------------ pass-through
@pytest.mark.parametrize("operation", ["create", "rotate"])
def test_the_identity_takes_the_key_made_in_the_background(device, svc, registry_delta, keygens, operation):
    """The first pass starts the key and returns; the identity run registers a certificate for
    exactly that key (made once: the staged bytes are the device's key) and leaves nothing of it."""
    agent = device.seed() if operation == "rotate" else None
    rotate = "always" if operation == "rotate" else "auto"
    passed = time.monotonic()
    first = run_prekey(device, rotate=rotate)
    assert not first.failed and first.result["keygen"] == "started" and first.result["changed"], first
    record = record_of(device)
    keygens.append(record)
    assert record.pid == first.result["keygen_pid"] and record.key_size == 2048
    staged = wait_for_staged_key(device, record)
    assert oct(os.lstat(device.path / PREKEY).st_mode & 0o7777) == oct(0o600)
    device.remember_keys()

    made_by = time.monotonic()  # the key was staged before this
    result = device.run(rotate=rotate)
    assert not result.failed, result
    assert result.result["action"] == ("rotated" if agent else "created"), result
    assert public_numbers(device.key_path.read_bytes()) == public_numbers(staged)
    status = result.result["status"]  # how the key was made: the background's making, no wait
    assert status["keygen"] == "background", status
    assert 0 < status["keygen_ms"] <= (made_by - passed) * 1000 + 50, status
    assert 0 <= status["keygen_wait_ms"] <= result.elapsed * 1000, status
    device.assert_registered()
    assert_nothing_of_the_background(device)
    ids, regs = registry_delta()
    assert len(regs) == 1 and len(ids) == 1  # the seed's ID, or the one the creation reserved
    unchanged = device.run(rotate="auto").result
    assert unchanged["action"] == "unchanged" and unchanged["status"]["keygen"] == "", unchanged
    assert unchanged["status"]["keygen_ms"] is None and unchanged["status"]["keygen_wait_ms"] is None


def test_a_key_made_inline_is_reported_so(device, svc):
    """Without the first pass the identity run makes its key itself: the report says ``inline``
    and how long the making took, and that nothing was waited for."""
    started = time.monotonic()
    result = device.run()
    assert not result.failed and result.result["action"] == "created", result
    status = result.result["status"]
    assert status["keygen"] == "inline" and status["keygen_wait_ms"] is None, status
    assert 0 < status["keygen_ms"] <= (time.monotonic() - started) * 1000, status


@pytest.mark.parametrize("via", ["lean", "ansible"])
def test_where_ansible_pipelines_the_pass_runs_without_ansiballz(device, svc, keygens, tmp_path, via):
    """Where Ansible would pipeline the module (the role's SSH runs), the action runs the pass's
    own code on the device without AnsiballZ: the pass's process never imports
    ansible.module_utils.basic (most of a module's device CPU), expands its path options on the
    device as AnsibleModule does (``$HOME``-relative here), and starts the key the identity run
    takes. With pipelining off the module runs, as before. The lean pass answers at once and
    decides away from the session (lean_run.HANDED_OVER); the module says what it started."""
    usage = tmp_path / "usage.json"
    headers = tmp_path / "device-home" / "headers.json"
    headers.parent.mkdir()
    headers.write_text(json.dumps({"X-Fleet": "edge"}))
    os.chmod(headers, 0o600)
    first = run_prekey(device, via=via, hooks={"FLEET_FAULTS_RUSAGE": str(usage)},
                       env={"FLEET_TEST_DEVICE_HOME": str(headers.parent)},
                       headers_file="$FLEET_TEST_DEVICE_HOME/headers.json")
    assert not first.failed and first.result["changed"], first
    assert first.result["keygen"] == ("handed over" if via == "lean" else "started"), first
    record = wait_for_record(device)
    keygens.append(record)
    staged = wait_for_staged_key(device, record)
    h.wait_for(usage.exists, timeout=60, what="the pass's usage")  # the lean pass's fork writes it as it ends
    modules = json.loads(usage.read_text())["modules"]
    assert "ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.prekey" in modules
    assert ("ansible.module_utils.basic" in modules) == (via == "ansible"), via

    result = device.run()
    assert result.result["action"] == "created", result
    assert public_numbers(device.key_path.read_bytes()) == public_numbers(staged)
    device.assert_registered()
    assert_nothing_of_the_background(device)


def test_the_lean_pass_answers_before_the_device_decides(device, svc, keygens):
    """A slow board's pass session costs it one Python start: the lean pass answers, then
    decides and starts the key away from the session (lean_run.HANDED_OVER). Held as it writes
    the keygen's record, the device has started nothing yet when the answer is back; let
    go, it makes the key the identity run takes."""
    device.seed()
    before = device.key_path.read_bytes()
    hold = {"FLEET_FAULTS_KILL": "op=open,match=%s.new,nth=1,when=after,signal=STOP" % RECORD}
    try:
        first = run_prekey(device, via="lean", hooks=hold, timeout=45, rotate="always")
        assert not first.failed and first.result["keygen"] == "handed over", first
        h.wait_for(lambda: any((prekey.process_facts(pid) or ("?",))[0] == "T"
                               for pid in processes_holding(device.path)), timeout=60, what="the pass's fork held")
        assert not (device.path / RECORD).exists() and not (device.path / PREKEY).exists()
    finally:
        for pid in processes_holding(device.path):
            os.kill(pid, signal.SIGCONT)
    record = wait_for_record(device)
    keygens.append(record)
    staged = wait_for_staged_key(device, record)
    result = device.run(rotate="always")
    assert result.result["action"] == "rotated", result
    assert public_numbers(device.key_path.read_bytes()) == public_numbers(staged) != public_numbers(before)
    assert_nothing_of_the_background(device)


def test_what_a_lean_pass_removed_the_identity_run_tells(device, svc, keygens, tmp_path):
    """Nobody hears a lean pass once it answered: what it removed (here a link put at the staged
    key's name, never followed) travels in the keygen's record, and the identity run that takes
    the key warns of it."""
    device.seed()
    write_record(device, dead_pid())
    target, planted = _plant(device, tmp_path, "symlink")
    first = run_prekey(device, via="lean", rotate="always")
    assert not first.failed and first.result["keygen"] == "handed over", first
    h.wait_for(lambda: (device.path / RECORD).exists() and record_of(device).notes, timeout=120,
               what="the pass's record with its notes")
    record = record_of(device)
    keygens.append(record)
    staged = wait_for_staged_key(device, record)
    result = device.run(rotate="always")
    assert not result.failed and result.result["action"] == "rotated", result
    warnings = warnings_of(result)
    assert "the first pass: removed" in warnings and PREKEY in warnings, warnings
    assert public_numbers(device.key_path.read_bytes()) == public_numbers(staged) != public_numbers(planted)
    assert target.read_bytes() == planted  # the link's target untouched
    assert_nothing_of_the_background(device)


def rotate_with_the_key_held(device, svc, keygens, release):
    """A rotation whose identity run finds the background process held mid-write and is itself
    held right after it read the record (between its look at the files and its look at the
    process); ``release(proc, record)`` lets both go on. Asserts the key made in the background
    was taken: no warning, one upload, nothing of the background left."""
    device.seed()
    run_prekey(device, rotate="always", hooks={"FLEET_FAULTS_KILL": HOLD_WRITING})
    record = record_of(device)
    keygens.append(record)
    h.wait_for(lambda: (device.path / PREKEY_TMP).exists(), what="the background process to hold mid-write")
    held = time.monotonic()  # the process started before, and writes its key only once released
    assert processes_holding(device.path) == [record.pid]  # what the cases that start nothing look for
    started = time.monotonic()
    proc = device.start(rotate="always", keygen_timeout=120,
                        hooks={"FLEET_FAULTS_KILL": "op=open,match=%s,nth=1,when=after,signal=STOP" % RECORD})
    try:
        h.wait_for(lambda: (prekey.process_facts(proc.pid) or ("?",))[0] == "T",
                   what="the identity run to look at the background key")
        released = time.monotonic()
        release(proc, record)
        result = h.finish(proc, started)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    device.assert_no_secrets(result)
    assert not result.failed and result.result["action"] == "rotated", result
    assert "background" not in warnings_of(result), result.result
    device.assert_registered()
    h.wait_for(lambda: not record.alive(), what="the background process to end")
    assert_nothing_of_the_background(device)  # its key was taken: none made beside it, none left
    assert svc.request_count(UPLOAD_EP) == 1
    status = result.result["status"]  # the making lasted at least as long as it was held
    assert status["keygen"] == "background" and status["keygen_ms"] >= (released - held) * 1000, status
    assert 0 <= status["keygen_wait_ms"] <= result.elapsed * 1000, status


def test_the_identity_waits_for_a_key_still_being_made(device, svc, keygens):
    """A key not ready when the identity run looks is waited for (within keygen_timeout), never
    made a second time: the identity run goes on first, then the background process."""
    def release(proc, record):
        assert record.alive() and not (device.path / PREKEY).exists()
        os.kill(proc.pid, signal.SIGCONT)
        os.kill(record.pid, signal.SIGCONT)

    rotate_with_the_key_held(device, svc, keygens, release)


def test_a_key_staged_while_the_identity_run_looked_is_taken(device, svc, keygens):
    """The identity run looks at the files, then at the background process: a key staged and a
    process ended in between is the key made for it, taken (not abandoned, not made again)."""
    def release(proc, record):
        os.kill(record.pid, signal.SIGCONT)  # the key is staged and its process ends first
        h.wait_for(lambda: not record.alive(), what="the background process to end")
        assert (device.path / PREKEY).exists() and not (device.path / PREKEY_TMP).exists()
        os.kill(proc.pid, signal.SIGCONT)

    rotate_with_the_key_held(device, svc, keygens, release)


# A pass that stays alive after it started the key (its module process, as long as the test keeps
# its stdin open); it prints its result first.
STARTER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from tests.fixtures.collection import import_source
import_source()
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import prekey
from tests.fixtures.product import settings
print(json.dumps(prekey.start_pass(settings(sys.argv[2], key_size=2048))), flush=True)
sys.stdin.read()
"""


def test_the_background_key_is_made_once_the_run_that_started_it_has_ended(device, keygens):
    """A device's CPU quota is shared by the whole SSH session: the key is made only after the
    pass that started it has ended. While that run lives, its process sleeps (never runnable,
    no key); once it ends, the key is made and staged."""
    repo = pathlib.Path(__file__).resolve().parents[2]
    starter = subprocess.Popen([sys.executable, "-c", STARTER, str(repo), str(device.path)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        first = json.loads(starter.stdout.readline())
        assert first["keygen"] == "started", first
        record = record_of(device)
        keygens.append(record)

        def state():
            return (prekey.process_facts(record.pid) or ("gone",))[0]

        # Told to go before the pass printed, it is runnable until it reaches its wait (under load,
        # in the idle class, that can take a while); asleep after the go means in that wait.
        h.wait_for(lambda: state() in ("S", "gone"), timeout=60, what="the background process to settle")
        states = []
        for _ in range(20):
            states.append(state())
            time.sleep(0.05)
        assert set(states) == {"S"}, states  # alive, asleep: not making the key beside the run
        assert not (device.path / PREKEY).exists() and not (device.path / PREKEY_TMP).exists()
    finally:
        starter.stdin.close()
        assert starter.wait(timeout=30) == 0
    staged = wait_for_staged_key(device, record)
    assert keys.summarize_private_key(staged).key_size == 2048


# ------------------------------------------------------------------------------ slow beyond the bound
def test_a_device_slower_than_the_bound_fails_clearly_and_the_next_run_converges(device, svc, keygens):
    """The identity run does not wait past keygen_timeout: it fails naming the bound and the
    process, uploads nothing, leaves the identity (and the key being made) as they are; the
    next run takes the key once it is ready."""
    agent = device.seed()
    run_prekey(device, rotate="always", hooks={"FLEET_FAULTS_KILL": HOLD_WRITING})
    record = record_of(device)
    keygens.append(record)
    h.wait_for(lambda: (device.path / PREKEY_TMP).exists(), what="the background process to hold mid-write")
    before, registered = device.state(), svc.registrations()

    slow = device.run(rotate="always", keygen_timeout=1)
    assert slow.failed, slow
    assert "generating in the background (pid %d" % record.pid in slow.msg, slow.msg
    assert "keygen_timeout=1 s: nothing was changed, the current identity is intact" in slow.msg, slow.msg
    device.assert_intact(before)
    assert svc.registrations() == registered and svc.request_count(UPLOAD_EP) == 0
    assert record.alive(), "the background process must be left to finish"

    os.kill(record.pid, signal.SIGCONT)
    staged = wait_for_staged_key(device, record)
    device.remember_keys()
    again = device.run(rotate="always", keygen_timeout=1)
    assert not again.failed and again.result["action"] == "rotated", again
    assert again.result["agent_id"] == agent
    assert public_numbers(device.key_path.read_bytes()) == public_numbers(staged)
    device.assert_registered()
    assert_nothing_of_the_background(device)


# ------------------------------------------------------------------------------ abandoned
@pytest.mark.parametrize("how", ["killed-mid-write", "dead-process", "somebody-elses-process"])
def test_an_abandoned_background_keygen_is_removed_and_the_run_converges(device, svc, keygens, how):
    """What an interrupted background process left is removed with a warning naming it; a live
    process the record does not prove ours is never signalled; the run makes its own key."""
    agent = device.seed()
    bystander = None
    if how == "killed-mid-write":
        run_prekey(device, rotate="always", hooks={"FLEET_FAULTS_KILL": KILL_WRITING})
        record = record_of(device)
        h.wait_for(lambda: not record.alive(), what="the background process to die")
        assert (device.path / PREKEY_TMP).exists() and not (device.path / PREKEY).exists()
        pid = record.pid
    elif how == "dead-process":
        pid = dead_pid()
        write_record(device, pid)
        (device.path / PREKEY_TMP).write_bytes(b"-----BEGIN PRIVATE KEY-----\nMIIE")
    else:
        bystander = subprocess.Popen(["sleep", "120"])
        pid = bystander.pid
        write_record(device, pid, start=prekey.process_facts(pid)[1] + 1)  # not that process
    try:
        result = device.run(rotate="always", keygen_timeout=5)  # never waited for: 5 s would fail it
        assert not result.failed and result.result["action"] == "rotated", result
        warnings = warnings_of(result)
        assert "removed what a background key generation left in" in warnings, result.result
        assert "its process (pid %d) is gone" % pid in warnings or how == "somebody-elses-process", warnings
        assert result.result["agent_id"] == agent
        device.assert_registered()
        assert_nothing_of_the_background(device)
        if bystander is not None:
            assert bystander.poll() is None, "a process the record does not prove ours was signalled"
    finally:
        if bystander is not None:
            bystander.kill()
            bystander.wait()


@pytest.mark.parametrize("run", ["needs-no-key", "rotation"])
def test_a_record_naming_another_users_live_process_is_never_signalled_nor_waited_for(device, svc, run):
    """The record's file is the owner's, so the owner can write one naming any process: a live
    one of another user (a root daemon, when the run is root's and the owner the agent's
    account), with that process's true start time, boot and uid. It proves nothing: a run that
    needs no key would otherwise kill that process (it stops the keygen it finds), a rotation
    wait for it. The record is removed with a warning naming why; the process lives on."""
    agent = device.seed()
    other = NOBODY if os.getuid() != NOBODY else 0
    bystander = subprocess.Popen(["sleep", "120"], user=other)
    try:
        h.wait_for(lambda: (prekey.process_facts(bystander.pid) or (0, 0, None))[2] == other,
                   what="the other user's process")
        write_record(device, bystander.pid, start=prekey.process_facts(bystander.pid)[1], uid=other)
        options = {"rotate": "always", "keygen_timeout": 5} if run == "rotation" else {}
        result = device.run(**options)  # 5 s: a wait for that process would fail the rotation
        expected = "rotated" if run == "rotation" else "unchanged"
        assert not result.failed and result.result["action"] == expected, result
        assert bystander.poll() is None, "another user's process was signalled"
        assert "names a process of uid %d, not %d" % (other, os.getuid()) in warnings_of(result), result.result
        assert result.result["agent_id"] == agent
        device.assert_registered()
        assert_nothing_of_the_background(device)
    finally:
        bystander.kill()
        bystander.wait()


def test_a_finished_key_of_a_gone_process_is_reused(device, svc):
    """The background process ends once its key is staged: the next run takes that key, whatever
    happened to the run that started it."""
    device.seed()
    write_record(device, dead_pid())
    staged = write_key(device.path / PREKEY)
    device.remember_keys()
    result = device.run(rotate="always")
    assert not result.failed and result.result["action"] == "rotated", result
    assert public_numbers(device.key_path.read_bytes()) == public_numbers(staged)
    assert "background" not in warnings_of(result), result.result
    device.assert_registered()
    assert_nothing_of_the_background(device)


def _plant(device, tmp_path, kind):
    """Put ``kind`` at the staged key's name; returns (what must stay untouched, the planted key)."""
    target = tmp_path / "elsewhere.pem"
    planted = None
    path = device.path / PREKEY
    if kind == "symlink":
        planted = write_key(target)
        os.symlink(target, path)
    elif kind == "other-owner":
        planted = write_key(path)
        os.chown(path, 65534, 65534)
    elif kind == "loose-mode":
        planted = write_key(path, mode=0o644)
    elif kind == "hard-link":
        planted = write_key(target)
        os.link(target, path)
    elif kind == "not-a-key":
        path.write_bytes(b"not a key\n")
        os.chmod(path, 0o600)
    elif kind == "wrong-size":
        planted = write_key(path, bits=3072)
    return target, planted


@pytest.mark.parametrize("kind", ["symlink", "other-owner", "loose-mode", "hard-link", "not-a-key", "wrong-size"])
def test_a_foreign_file_in_place_of_the_staged_key_is_removed_never_used(device, svc, tmp_path, kind):
    """Anything at the staged key's name that this bundle did not write is removed (a link
    itself, never what it points at) with a warning, and never becomes the device's key."""
    if kind == "other-owner" and os.geteuid() != 0:
        pytest.skip("needs root to give the file to another user")
    device.seed()
    write_record(device, dead_pid())
    target, planted = _plant(device, tmp_path, kind)
    outside = h.snapshot(tmp_path, ignore=("home", "home/*", "work", "work/*"))
    result = device.run(rotate="always")
    assert not result.failed and result.result["action"] == "rotated", result
    warnings = warnings_of(result)
    assert "background" in warnings and PREKEY in warnings, result.result
    if planted is not None:
        assert public_numbers(device.key_path.read_bytes()) != public_numbers(planted)
    device.assert_registered()
    assert_nothing_of_the_background(device)
    assert h.snapshot(tmp_path, ignore=("home", "home/*", "work", "work/*")) == outside  # the target untouched


def test_a_symlink_put_where_the_key_is_being_written_is_never_followed(device, svc, tmp_path, keygens):
    """The background process writes with O_EXCL|O_NOFOLLOW: a link in its way makes it give
    up; the link's target is untouched and the identity run makes its own key."""
    device.seed()
    run_prekey(device, rotate="always", hooks={"FLEET_FAULTS_KILL": HOLD_BEFORE_WRITING})
    record = record_of(device)
    keygens.append(record)
    h.wait_for(lambda: prekey.process_facts(record.pid) is not None and prekey.process_facts(record.pid)[0] == "T",
               what="the background process to hold before writing")
    target = tmp_path / "target"
    target.write_bytes(b"precious\n")
    os.symlink(target, device.path / PREKEY_TMP)
    os.kill(record.pid, signal.SIGCONT)
    h.wait_for(lambda: not record.alive(), what="the background process to give up")
    assert target.read_bytes() == b"precious\n" and os.path.islink(device.path / PREKEY_TMP)
    result = device.run(rotate="always")
    assert not result.failed and result.result["action"] == "rotated", result
    assert "a symbolic link" in warnings_of(result), result.result
    assert target.read_bytes() == b"precious\n"
    device.assert_registered()
    assert_nothing_of_the_background(device)


# ------------------------------------------------------------------------------ nothing started
@pytest.mark.parametrize("via", [None, "lean"])
def test_check_mode_starts_nothing(device, svc, via):
    """In check mode the first pass says it would start, and starts no process and writes no file."""
    device.seed()
    before = device.tree()
    result = run_prekey(device, check=True, rotate="always", via=via)
    assert not result.failed and result.result["keygen"] == "would start", result
    assert device.tree() == before
    assert processes_holding(device.path) == []


@pytest.mark.parametrize("state", ["unchanged", "new-device-check-mode"])
def test_a_run_that_needs_no_key_starts_nothing(device, svc, state):
    """A valid identity that is not due: the first pass decides so (no process, no file), and
    the identity run costs what it cost before (unchanged, no request)."""
    if state == "unchanged":
        device.seed()
    before = device.tree()
    first = run_prekey(device, check=state != "unchanged")
    assert processes_holding(device.path) == []
    assert device.tree() == before
    if state == "unchanged":
        assert first.result["keygen"] == "not needed" and not first.result["changed"], first
        result = device.run()
        assert result.result["action"] == "unchanged" and svc.request_count(CLOCK_EP) == 0, result
        assert device.tree() == before
    else:
        assert first.result["keygen"] == "would start", first


def test_an_option_the_identity_refuses_starts_nothing_and_creates_nothing(device, svc):
    """The first pass checks the identity's options as that module's preflight does: a new device
    with an option it would refuse gets no directory, no file, no process."""
    first = run_prekey(device, server_url="ftp://agent.example.com")
    assert not first.failed and first.result["keygen"] == "not started", first
    assert "server_url" in first.result["reason"], first
    assert not device.path.exists() and processes_holding(device.path) == []
    assert device.run(server_url="ftp://agent.example.com").failed


@pytest.mark.parametrize("directory", ["made-by-the-pass", "made-by-an-abandoned-pass", "there-before"])
def test_a_start_that_fails_leaves_no_directory_the_pass_made(device, svc, directory):
    """The background process dies before it reports itself: the pass says it started nothing
    and removes the directory made for the key (by this pass, or by an earlier one whose process
    died: its record said so); a directory there before any pass stays as it was. The identity
    run then makes the key itself."""
    if directory == "there-before":
        device.path.mkdir(mode=0o700)
    elif directory == "made-by-an-abandoned-pass":
        run_prekey(device, hooks={"FLEET_FAULTS_KILL": KILL_WRITING})
        abandoned = record_of(device)
        assert abandoned.made_directory
        h.wait_for(lambda: not abandoned.alive(), what="the first background process to die")
    first = run_prekey(device, hooks={"FLEET_FAULTS_KILL": KILL_STARTING})
    assert not first.failed and first.result["keygen"] == "not started", first
    assert "did not start" in first.result["reason"], first
    assert processes_holding(device.path) == []
    if directory == "there-before":
        assert device.path.is_dir() and os.listdir(device.path) == []
    else:
        assert not device.path.exists(), sorted(p.name for p in device.path.iterdir())
        assert device.home.is_dir() and os.listdir(device.home) == []  # only what the pass made goes
    result = device.run()
    assert not result.failed and result.result["action"] == "created", result
    device.assert_registered()
    assert_nothing_of_the_background(device)


def test_a_key_made_for_a_run_that_needs_none_is_stopped_and_removed(device, svc, keygens):
    """A key being made for nothing (another run rotated meanwhile) is stopped and removed by the
    identity run that needs none."""
    device.seed()
    run_prekey(device, rotate="always", hooks={"FLEET_FAULTS_KILL": HOLD_WRITING})
    record = record_of(device)
    keygens.append(record)
    h.wait_for(lambda: (device.path / PREKEY_TMP).exists(), what="the background process to hold mid-write")
    result = device.run()
    assert result.result["action"] == "unchanged", result
    assert "stopped the background key generation" in warnings_of(result), result.result
    assert not record.alive()
    assert_nothing_of_the_background(device)


def test_decommissioning_stops_a_background_keygen_before_it_wipes(device, svc, keygens):
    """A key being made while the device is decommissioned never appears after the wipe: the
    process is stopped first, then the bundle's files (its own included) are removed."""
    agent = device.seed()
    run_prekey(device, rotate="always", hooks={"FLEET_FAULTS_KILL": HOLD_WRITING})
    record = record_of(device)
    keygens.append(record)
    h.wait_for(lambda: (device.path / PREKEY_TMP).exists(), what="the background process to hold mid-write")
    result = decommission(str(device.path), os.getuid(), os.getgid(), agent, True, None, id_pattern=r"^[0-9A-F]{8}$")
    assert result["action"] == "removed locally", result
    assert not record.alive()
    assert not device.path.exists() or os.listdir(device.path) == []


# ------------------------------------------------------------------------------ a refused creation
NEEDS_FAKETIME = pytest.mark.skipif(not os.path.exists(LIBFAKETIME), reason="libfaketime is not installed")


@pytest.fixture
def held_id(svc, tmp_path):
    """An ID a live device holds: registered, its agent (the long-lived stand-in) heartbeating on
    it, the cloud's heartbeat route saying so."""
    holder = Device(tmp_path / "holder", svc)
    agent_id = holder.seed()
    with svc.start_agent(holder.home):
        svc.wait_for_heartbeat(agent_id, until=lambda status, body: status == 200 and body["status"] == "active",
                               what="the holder's agent active")
        svc.clear_faults()
        yield agent_id


@pytest.mark.parametrize("refusal", [
    pytest.param("clock-key-being-made", marks=NEEDS_FAKETIME),
    pytest.param("clock-after-an-abandoned-pass", marks=NEEDS_FAKETIME),
    "id-refused-key-taken",
    "takeover-key-being-made",
    "takeover-key-staged",
])
def test_a_creation_refused_after_the_pass_leaves_no_directory_and_no_keygen(device, svc, keygens, request, refusal):
    """The first pass made the directory for a new device (or an earlier pass did, whose process
    died); the identity run refuses the creation before anything of the identity is written: the
    clock (the key still being made: its process is stopped), the ID request (the key taken
    already; the API's CA copied in) or a pre-assigned ID a live device holds (the cloud's
    heartbeat view, asked by the module, before any key is taken: the key being made or staged).
    Neither the directory, nor the key, nor the process outlives the refusal."""
    overrides = {}
    if refusal.startswith("takeover"):
        overrides = {"api_flavor": "api_service", "headers": svc.auth_headers(), "confirm_by": "module",
                     "agent_id": request.getfixturevalue("held_id")}
    if refusal == "clock-after-an-abandoned-pass":
        run_prekey(device, hooks={"FLEET_FAULTS_KILL": KILL_WRITING})
        abandoned = record_of(device)
        h.wait_for(lambda: not abandoned.alive(), what="the first background process to die")
    being_made = refusal.startswith("clock") or refusal.endswith("being-made")
    first = run_prekey(device, hooks={"FLEET_FAULTS_KILL": HOLD_WRITING} if being_made else None, **overrides)
    assert first.result["keygen"] == "started", first
    record = record_of(device)
    keygens.append(record)
    assert record.made_directory
    if being_made:
        h.wait_for(lambda: (device.path / PREKEY_TMP).exists(), what="the background process to hold mid-write")
    else:
        wait_for_staged_key(device, record)
        device.remember_keys()
    if refusal.startswith("clock"):
        result = device.run(env={"LD_PRELOAD": LIBFAKETIME, "FAKETIME": "+730d"})  # the device's clock only
        assert result.failed and "the device clock is" in result.msg, result
    elif refusal.startswith("takeover"):
        result = device.run(**overrides)
        assert result.failed and "agent ID %s already belongs to a device: the cloud sees its agent active" % (
            overrides["agent_id"]) in result.msg, result
        assert svc.request_count(JSON_UPLOAD_EP) == 0
    else:
        svc.inject(ID_EP, "status", status=403, count=0, message="refused by policy")
        result = device.run(ca_path=None, ca_content=svc.ca_path.read_text())
        assert result.failed and "refused by policy" in result.msg, result
    assert svc.request_count(UPLOAD_EP) == 0
    assert not device.path.exists(), sorted(p.name for p in device.path.iterdir())
    assert not record.alive(), "the background key generation outlived the refused creation"
    assert device.home.is_dir()  # only what the provisioning made goes


@NEEDS_FAKETIME
def test_a_directory_there_before_the_pass_keeps_its_key_for_the_next_run(device, svc, keygens):
    """A directory that was there before the first pass is never removed; the key being made in
    it is not the refusal's business either (bound to no ID, never sent): the next run, with the
    cause gone, takes it."""
    device.path.mkdir(mode=0o700)
    run_prekey(device, hooks={"FLEET_FAULTS_KILL": HOLD_WRITING})
    record = record_of(device)
    keygens.append(record)
    assert not record.made_directory
    h.wait_for(lambda: (device.path / PREKEY_TMP).exists(), what="the background process to hold mid-write")
    refused = device.run(env={"LD_PRELOAD": LIBFAKETIME, "FAKETIME": "+730d"})
    assert refused.failed and "the device clock is" in refused.msg, refused
    assert device.path.is_dir() and (device.path / RECORD).exists() and record.alive()

    os.kill(record.pid, signal.SIGCONT)
    staged = wait_for_staged_key(device, record)
    device.remember_keys()
    result = device.run()
    assert not result.failed and result.result["action"] == "created", result
    assert public_numbers(device.key_path.read_bytes()) == public_numbers(staged)
    device.assert_registered()
    assert_nothing_of_the_background(device)


# ------------------------------------------------------------------------------ due mid-run
def test_a_device_that_becomes_due_between_the_passes_is_keyed_once(device, svc):
    """The first pass, a moment before the certificate is due, starts nothing; the identity run
    finds it due and makes the key itself: one key, one upload (the engine in this process, its
    profile counting the keys it makes)."""
    # Valid since yesterday, due (renew_before_days=365) from 5 minutes before now on.
    device.seed(days=366, not_before_days=-1)
    settings = make_settings(device.path, key_size=2048, renew_before_days=365, valid_days=366)
    made = []
    profile = keys.PROFILES["rsa"]
    settings.key_profile = keys.KeyProfile(
        name=profile.name, min_size=profile.min_size, max_size=profile.max_size,
        generate=lambda size: made.append(size) or profile.generate(size), private_pem=profile.private_pem,
        load=profile.load, summarize=profile.summarize, certificate_public=profile.certificate_public)
    earlier = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=7)
    first = prekey.start_pass(settings, now=earlier)
    assert first["keygen"] == "not needed", first
    assert_nothing_of_the_background(device)

    def client():
        return api_client(svc.api_url, ca_path=str(svc.ca_path), retries=0, timeout=10, sleep=lambda _s: None)

    result, _warnings = ensure_identity(settings, client)
    assert result["action"] == "rotated", result
    assert made == [2048]
    assert svc.request_count(UPLOAD_EP) == 1
    device.assert_registered()
