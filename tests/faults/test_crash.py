"""Fault matrix, crashes, interruptions and concurrency: SIGKILL, SIGINT (Ctrl-C, or what
ansible-playbook's interrupted worker forwards) and SIGTERM of the module at each step of the
transaction, then a re-run that must converge to a consistent registered pair; Ctrl-C of
ansible-playbook itself while the upload hangs; and two runs at once on one device.

The interruption points are exact: a hook loaded into the module's process (tests/fixtures/inject)
signals it at a given file operation, or the test signals it while the service holds the
upload (hang: the upload has not been processed yet, the service stores it a moment later;
stall: it has been stored, the answer is held back).
"""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time

import pytest

from tests.fixtures import module_runner as h
from tests.fixtures.ansible_runner import REPO, ansible_env, run_task, task_command

ID_EP = "/generate-orchestrator-id"
UPLOAD_EP = "/upload-orchestrator-certificate"
HANG_SECONDS = 3  # the held upload is processed this long after it arrived

# name -> (FLEET_FAULTS_KILL spec or a service fault, what the interruption hits)
KILL_POINTS = {
    "staged-key": "op=fsync,match=.client.key.new,nth=1,when=after",
    "journal-written": "op=rename,match=.mtls-pending.json,nth=1,when=after",
    "upload-in-flight": "service:hang",
    "upload-accepted": "service:stall",
    "between-renames": "op=rename,match=client.*,nth=2,when=before",
    "after-swap": "op=unlink,match=.mtls-pending.json,nth=1,when=before",
}
SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}


def _staged_fp(dev):
    path = dev.path / ".client.crt.new"
    try:
        return h.cert_fingerprint(path)
    except (OSError, ValueError):
        return None


def kill_at(dev, svc, point, sig="SIGKILL", **args):
    """Run the module and interrupt it with ``sig`` at ``point``. For upload-in-flight, wait
    until the service has processed the held upload: whatever the interrupted run left must
    then be reconciled with a registry that holds the new certificate."""
    spec = KILL_POINTS[point]
    signum = SIGNALS[sig]
    if spec.startswith("service:"):
        kind = spec.split(":", 1)[1]
        if kind == "hang":
            svc.inject(UPLOAD_EP, "hang", seconds=HANG_SECONDS)
        else:
            svc.inject(UPLOAD_EP, "stall", seconds=60, partial=0)
        proc = dev.start(**args)
        staged = None
        try:
            if kind == "hang":
                h.wait_for(lambda: svc.request_count(UPLOAD_EP) >= 1, what="the upload to arrive")
                staged = _staged_fp(dev)
            else:
                h.wait_for(lambda: _staged_fp(dev) is not None
                           and _staged_fp(dev) in svc.registrations().values(),
                           what="the upload to be stored")
        finally:
            proc.send_signal(signum)
            proc.communicate(timeout=60)
        assert proc.returncode == -signum, proc.returncode
        if staged is not None:
            h.wait_for(lambda: staged in svc.registrations().values(), what="the held upload to be stored")
        svc.clear_faults(keep_counters=True)
        return
    proc = dev.start(hooks={"FLEET_FAULTS_KILL": "%s,signal=%s" % (spec, sig[3:])}, **args)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signum, f"the kill point {point} was never reached: {out[-500:]} {err[-1500:]}"


@pytest.mark.parametrize("sig", list(SIGNALS))
@pytest.mark.parametrize("phase", ["create", "rotate"])
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_then_rerun_converges(device, svc, registry_delta, phase, point, sig):
    agent = device.seed() if phase == "rotate" else None
    before = device.state()
    args = {"rotate": "always"} if phase == "rotate" else {}
    kill_at(device, svc, point, sig, **args)
    device.remember_keys()
    if point != "staged-key":
        # the journal exists: whatever the signal, the interrupted run leaves it (and what it
        # staged) for the next run, which may find the new certificate in the registry
        assert h.journal_files(device.path) != [], (sig, point, h.leftovers(device.path, allow_journal=True))

    if phase == "rotate" and point in ("staged-key", "journal-written", "upload-in-flight", "upload-accepted"):
        # nothing was swapped yet: the previous identity is still on disk, byte for byte
        for name in ("client.key", "client.crt"):
            assert device.state()[name] == before[name]

    result = device.run()
    assert not result.failed, result
    assert result.result["action"] in ("created", "rotated", "repaired", "unchanged"), result
    device.assert_registered()
    assert h.journal_files(device.path) == []
    ids, regs = registry_delta()
    if phase == "rotate":
        assert device.agent_id == agent and ids == [agent]  # the same device, no new ID
    else:
        # one registration, one ID: the key exists before an ID is reserved, so an interruption
        # during keygen or staging reserves none (issue 18), and a journaled ID is reused
        assert list(regs) == [device.agent_id]
        assert ids == [device.agent_id], ids
    assert device.run().result["action"] == "unchanged"


def test_interrupted_rotation_keeps_gate_access_until_rerun(device, svc):
    """Killed after the registry stored the new certificate but before the swap: the device
    still holds the previous pair (refused by the gate now: last upload wins) and the staged
    new pair; the re-run uploads and swaps it in, and the gate lets the device in again."""
    agent = device.seed()
    kill_at(device, svc, "upload-accepted", rotate="always")
    staged = _staged_fp(device)
    assert staged is not None and svc.registrations()[agent] == staged
    result = device.run()
    assert result.result["action"] == "rotated" and "interrupted" in result.result["reason"], result
    assert device.fingerprint == staged
    device.assert_registered()


def _lock_free(path):
    """True when no process holds the identity directory's lock (an interrupted run is gone)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


@pytest.mark.parametrize("phase", ["create", "rotate"])
def test_ctrl_c_of_ansible_playbook_during_the_upload_converges(device, svc, registry_delta, tmp_path, phase):
    """SIGINT to ansible-playbook while the service holds the upload: ansible forwards it to
    its worker, which interrupts the module mid-request; the held upload is stored a moment
    later. The re-run through ansible-playbook completes the interrupted transaction: one ID
    (the creation reuses the journaled one), registry == device, the gate accepts the device."""
    agent = device.seed() if phase == "rotate" else None
    svc.inject(UPLOAD_EP, "hang", seconds=HANG_SECONDS)
    cmd, _result_file = task_command(tmp_path, "mtls_identity", device.args(
        **({"rotate": "always"} if phase == "rotate" else {})))
    proc = subprocess.Popen(cmd, cwd=REPO, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        h.wait_for(lambda: svc.request_count(UPLOAD_EP) >= 1, timeout=120, what="the upload to arrive")
        staged = _staged_fp(device)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0, out[-2000:]
    device.remember_keys()
    h.assert_no_secrets(out + err, keys=device.keys_seen, tokens=[svc.token], where="the interrupted run")
    h.wait_for(lambda: _lock_free(device.path), what="the interrupted module to exit")
    h.wait_for(lambda: staged in svc.registrations().values(), what="the held upload to be stored")
    svc.clear_faults(keep_counters=True)

    rerun = run_task(tmp_path, "mtls_identity", device.args())  # the operator runs the playbook again
    assert not rerun.failed, rerun.output[-3000:]
    assert "interrupted" in rerun.result["reason"], rerun.result
    assert rerun.result["action"] == ("created" if phase == "create" else "rotated"), rerun.result
    assert device.fingerprint == staged  # the certificate the registry already held
    device.assert_registered()  # registry == device, the gate accepts it, nothing staged
    ids, regs = registry_delta()
    assert ids == [agent or device.agent_id], ids  # no second ID
    assert list(regs) == [device.agent_id]


# ----------------------------------------------------------------------------- concurrency

@pytest.mark.parametrize("phase", ["create", "rotate"])
def test_two_concurrent_runs_one_identity(device, svc, registry_delta, phase):
    """Two runs at once (the upload held 1 s so they overlap): one does the work, the other
    waits for the lock, then finds the fresh identity and reports unchanged."""
    agent = None
    if phase == "rotate":
        agent = device.seed(days=10)  # due for rotation (renew_before_days 30)
    svc.inject(UPLOAD_EP, "hang", seconds=1)
    started = time.monotonic()
    procs = [device.start(), device.start()]
    results = [h.finish(p, started) for p in procs]
    for r in results:
        device.assert_no_secrets(r)
    actions = sorted(str(r.result.get("action")) for r in results)
    want = "created" if phase == "create" else "rotated"
    assert actions == sorted([want, "unchanged"]), results
    assert svc.request_count(UPLOAD_EP) == 1
    assert svc.request_count(ID_EP) == (1 if phase == "create" else 0)
    device.assert_registered()
    ids, regs = registry_delta()
    assert list(regs) == [device.agent_id]
    if agent:
        assert device.agent_id == agent
