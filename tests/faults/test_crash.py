"""Fault matrix, crashes and concurrency: kill -9 of the module at each step of the
transaction, then a re-run that must converge to a consistent registered pair; and two runs
at once on one device.

The kill points are exact: a hook loaded into the module's process (tests/faults/_inject)
SIGKILLs it at a given file operation, or the test SIGKILLs it while the service holds the
upload (hang: the upload has not been processed; stall: it has been stored, the answer is
held back).
"""
from __future__ import annotations

import time

import pytest

from tests.faults import helpers as h

ID_EP = "/generate-orchestrator-id"
UPLOAD_EP = "/upload-orchestrator-certificate"

# name -> (FLEET_FAULTS_KILL spec or a service fault, what the kill interrupts)
KILL_POINTS = {
    "staged-key": "op=fsync,match=.client.key.new,nth=1,when=after",
    "journal-written": "op=rename,match=.mtls-pending.json,nth=1,when=after",
    "upload-in-flight": "service:hang",
    "upload-accepted": "service:stall",
    "between-renames": "op=rename,match=client.*,nth=2,when=before",
    "after-swap": "op=unlink,match=.mtls-pending.json,nth=1,when=before",
}


def _wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _staged_fp(dev):
    path = dev.path / ".client.crt.new"
    try:
        return h.cert_fingerprint(path)
    except (OSError, ValueError):
        return None


def kill_at(dev, svc, point, **args):
    """Run the module and have it die by SIGKILL at ``point``."""
    spec = KILL_POINTS[point]
    if spec.startswith("service:"):
        kind = spec.split(":", 1)[1]
        if kind == "hang":
            svc.inject(UPLOAD_EP, "hang", seconds=60)
        else:
            svc.inject(UPLOAD_EP, "stall", seconds=60, partial=0)
        proc = dev.start(**args)
        try:
            if kind == "hang":
                _wait_for(lambda: svc.request_count(UPLOAD_EP) >= 1, what="the upload to arrive")
            else:
                _wait_for(lambda: _staged_fp(dev) is not None
                          and _staged_fp(dev) in svc.registrations().values(),
                          what="the upload to be stored")
        finally:
            proc.kill()
            proc.communicate()
        assert proc.returncode == -9
        svc.clear_faults(keep_counters=True)
        return
    proc = dev.start(hooks={"FLEET_FAULTS_KILL": spec}, **args)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -9, f"the kill point {point} was never reached: {out[-500:]} {err[-1500:]}"


@pytest.mark.parametrize("phase", ["create", "rotate"])
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_then_rerun_converges(device, svc, registry_delta, phase, point):
    agent = device.seed() if phase == "rotate" else None
    before = device.state()
    args = {"rotate": "always"} if phase == "rotate" else {}
    kill_at(device, svc, point, **args)
    device.remember_keys()

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
        # one registration only; an ID reserved before the journal existed may be lost,
        # but it never gets a certificate (an expiring reservation, not a device)
        assert list(regs) == [device.agent_id]
        if point != "staged-key":
            assert ids == [device.agent_id], ids  # the journaled ID was reused
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
