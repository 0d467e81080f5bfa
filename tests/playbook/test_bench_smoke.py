"""The benchmark runs end to end over SSH on two device accounts: the private sshd comes up and
goes away, every measured playbook does its job on the devices (ours: first run, re-run,
rotation with a restart per host; the community.crypto baseline and its re-run; ping), the
device's own Python does the keygen and module-alone measurements, and the results JSON
carries every ratio, the targets and the blackout field. Timings are not asserted:
benchmarks print ratios, tests check behaviour.

The slow-device path (`--device-cpu`) runs the same way at 20 % of a core per device: the
quota is really applied (a detached CPU-bound loop on a device gets no more of a core than its
group's CFS quota lets it, read from the group's counters; every device process of every run is
in its device's group), the devices' own keygen runs on every device in its quota, and the
side-by-side table (ping, first run, re-run, ideal) is printed, its ratios never asserted.

The local mode is not run here: it drives the same playbooks through the same code with only
the inventory's connection variables changed (the local fleet itself is what the playbook
tests run on), and leaving it out keeps the smoke short."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import cpuquota  # noqa: E402
import sshfleet  # noqa: E402
import tables  # noqa: E402

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.ledger import Ledger  # noqa: E402

SSH_UNAVAILABLE = sshfleet.unavailable()
QUOTA_UNAVAILABLE = SSH_UNAVAILABLE or cpuquota.unavailable()


@pytest.mark.slow
@pytest.mark.skipif(SSH_UNAVAILABLE is not None, reason=f"SSH fleet: {SSH_UNAVAILABLE}")
def test_bench_smoke_over_ssh_produces_valid_ratios(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "bench/fleet.py", "--connection", "ssh", "--hosts", "2", "--repeat", "1",
         # 2048-bit keys, one module-alone call, no lean re-run: every measured playbook and
         # every ratio at a fraction of the CPU (timings are not the point here).
         "--key-size", "2048", "--module-calls", "1", "--skip", "rerun_lean", "--token",
         "--ledger-hosts", "200",  # a ledger that already knows other devices
         "--scratch", str(tmp_path / "scratch"), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["connection"] == "ssh"
    assert result["problems"] == [], result["problems"]
    assert result["ledger_hosts"] == 200
    ledger = Ledger(str(next((tmp_path / "scratch").rglob("identity-ledger.json"))))
    assert len(ledger.hosts()) == 200 + 2 and not ledger.duplicate_ids({})

    ssh = result["ssh"]
    assert ssh["login_checked"] and ssh["port"] not in (None, 22)
    assert ssh["sshd_exit"] is not None, "the private sshd outlived the bench"

    runs = result["runs"]
    assert [r["hosts_changed"] for r in runs["provision"]] == [2]
    assert [r["hosts_changed"] for r in runs["rotate"]] == [2]
    assert [r["agent_restarts"] for r in runs["rotate"]] == [2]
    assert [r["hosts_changed"] for r in runs["baseline"]] == [2]
    for label in ("rerun", "baseline_rerun"):
        assert [r["changed_tasks"] for r in runs[label]] == [0], label
    for label in ("provision", "rerun", "rotate", "baseline", "baseline_rerun", "ping"):
        (rec,) = runs[label]
        assert rec["connection"] == "ssh"
        # The modules ran on the devices, as the device users, not under the controller.
        assert rec["device_cpu_s"] > 0, label
        assert rec["tasks"], label
    # Ours registered 2 devices (rotation keeps their IDs), the baseline 2, the module alone 1.
    assert result["service_registrations"] == 5

    device = result["versions"]["device"]
    assert device["interpreter"] == "/usr/bin/python3"
    (keygen,) = runs["keygen"]
    assert keygen["python"] == "/usr/bin/python3" and keygen["cryptography"] == device["cryptography"]
    assert keygen["key_size"] == result["key_size"] == 2048
    assert result["module_alone"]["python"] == "/usr/bin/python3"
    assert result["module_overhead_per_host"]["module_alone_ms"] is not None

    for name in ("provision/(keygen_cpu/cores+ping)", "baseline/provision", "baseline_rerun/rerun", "rerun/ping",
                 "rotate/provision"):
        assert result["ratios"][name] > 0, name
    assert set(result["targets"]) == {t[0] for t in tables.TARGETS}
    assert all(isinstance(t["met"], bool) for t in result["targets"].values())

    blackout = result["blackout"]
    assert blackout["hosts"] == 2
    if blackout["counted"]:
        assert blackout["median_ms"] is not None and blackout["max_ms"] >= blackout["median_ms"]
    else:
        assert blackout["note"] == tables.NO_BLACKOUT
    for text in ("ratios (medians)", "baseline_rerun/rerun", "rotation blackout per host"):
        assert text in proc.stdout, text


@pytest.mark.slow
@pytest.mark.skipif(QUOTA_UNAVAILABLE is not None, reason=f"slow devices: {QUOTA_UNAVAILABLE}")
def test_bench_slow_devices_run_in_their_cpu_quota(tmp_path):
    out = tmp_path / "bench.json"
    percent = 20
    proc = subprocess.run(
        [sys.executable, "bench/fleet.py", "--connection", "ssh", "--hosts", "2", "--repeat", "1", "--forks", "1",
         "--device-cpu", str(percent), "--key-size", "2048", "--only", "provision,ping,keygen",
         "--skip", "rerun_lean,rotate", "--scratch", str(tmp_path / "scratch"), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    print(proc.stdout[proc.stdout.find("side by side"):])  # the ratios, for the log; never asserted
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["problems"] == [], result["problems"]
    assert result["device_cpu_percent"] == percent and result["forks"] == 1

    # The quota holds a job detached from its session: the kernel's CFS counters of its group.
    probe = result["ssh"]["quota_probe"]
    assert probe["in_group"] and probe["group"] == f"/{cpuquota.GROUP}/mtlsdev001"
    assert probe["detached"], "the probe's loop was not a session of its own (setsid)"
    assert probe["nr_throttled"] > 0, probe
    # At most the quota per period, plus the overrun of one CFS slice: a bound, not a timing.
    assert 0 < probe["share_percent"] <= percent * 1.25, probe

    runs = result["runs"]
    for label in ("provision", "rerun", "ping"):
        (rec,) = runs[label]
        assert rec["outside_quota"] == [], (label, rec["outside_quota"])
        assert rec["device_quota"]["cgroup_cpu_s"] > 0, label  # the modules ran in the groups
    (keygen,) = runs["device_keygen"]
    assert keygen["n"] == 2 and keygen["failed"] == [] and keygen["device_cpu_percent"] == percent
    assert keygen["python"] == "/usr/bin/python3" and keygen["key_size"] == 2048

    assert result["ideal"]["s"] > 0 and result["ideal"]["controller_cpu_from_forks"] == 1
    assert list(result["side_by_side"]) == ["ping", "provision", "rerun"]
    # The first run's own keys, from the fleet report: both made on the devices (the pass's
    # background processes at forks 1 < 2 hosts), the slowest one's making the run's own term.
    made = runs["provision"][0]["keygen"]
    assert made["hosts"] == 2 and made["background"] + made["inline"] == 2 and made["slowest_ms"] > 0, made
    assert result["side_by_side"]["provision"]["own_slowest_key_s"] == made["slowest_ms"] / 1000
    # Each host's identity call in time, within its task's span: what sets a call beside its key.
    (identity,) = [t for t in runs["provision"][0]["tasks"] if t["action"].endswith(".mtls_identity")]
    assert sorted(identity["host_spans"]) == ["dev001", "dev002"], identity
    assert all(identity["start"] <= s <= e <= identity["end"] for s, e in identity["host_spans"].values())
    for text in ("side by side", "ideal = slowest device keygen", "quota check"):
        assert text in proc.stdout, text
    # The bench removed its cgroups.
    assert not any((h / cpuquota.GROUP).exists() for h in cpuquota.hierarchies())


def test_the_latency_relay_delays_each_way_and_keeps_the_bytes():
    """bench/latency_relay.py (``--rtt``): a round trip through it costs twice its one-way delay,
    and the bytes arrive whole and in order."""
    import socket  # noqa: PLC0415
    import threading  # noqa: PLC0415
    import time  # noqa: PLC0415

    server = socket.create_server(("127.0.0.1", 0))

    def echo():
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    relay = subprocess.Popen([sys.executable, str(REPO / "bench" / "latency_relay.py"), "100", "127.0.0.1",
                              str(server.getsockname()[1])], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        payload = bytes(range(256)) * 4096  # 1 MiB
        started = time.monotonic()
        relay.stdin.write(payload)
        relay.stdin.close()
        echoed = relay.stdout.read()
        elapsed = time.monotonic() - started
    finally:
        relay.kill()
        server.close()
    assert echoed == payload
    assert elapsed >= 0.2, elapsed  # there and back, 100 ms each way: the delay is in the path

