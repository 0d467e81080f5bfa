"""Fleet provisioning benchmark: our playbook against the Ansible floor, the crypto floor and
the usual community.crypto alternative, measured side by side in one run.

Run from the repository root with the venv's Python (bench/README.md says more):

    .venv/bin/python bench/fleet.py                                   # local fleet, N=50, median of 3
    .venv/bin/python bench/fleet.py --connection ssh -n 50 --forks 20 --repeat 3
    .venv/bin/python bench/fleet.py --connection both                 # the two modes interleaved
    .venv/bin/python bench/fleet.py --connection ssh -n 30 --device-cpu 5 --forks 5,30 --repeat 1 \
        --only provision,ping,keygen --skip rerun_lean                # slow devices, two fork counts
    .venv/bin/python bench/fleet.py --hosts 2 --repeat 1              # smoke run
    .venv/bin/python bench/fleet.py --cleanup                         # remove the SSH device users

Two fleets of N hosts, driven by the same playbooks with the same variables:
  local  connection local, the controller's Python, one mtls_dir per host under a scratch dir;
  ssh    N device users on this machine behind a private sshd on 127.0.0.1 (bench/sshfleet.py):
         pipelining and ControlPersist, device Python /usr/bin/python3 with Debian's
         python3-cryptography and python3-requests.
One reference service serves both. Each repetition runs, in an order that alternates between
repetitions (and, with --connection both, the modes one after the other in alternating order):
  provision   playbooks/provision.yml on fresh identity dirs (first run)
  rerun       the same playbook again (idempotent re-run)
  rerun_lean  the same re-run with mtls_verify_unchanged=false (no handshake on unchanged hosts)
  rerun_token, rerun_confirm  (--confirm) the same re-run with the API token on the controller,
              without asking the cloud (mtls_confirm=none) and asking it (heartbeat: the
              controller asks once per host; the fleet has no agents, so the cloud says
              "unseen", which an unchanged run reports without failing)
  rotate      the same with mtls_rotate=always and a restart of a stand-in agent per host
              (bench/agents.py); the fleet report's blackout_ms is read afterwards
  baseline    bench/baseline/provision.yml on fresh dirs (community.crypto), and its re-run
  ping        bench/playbooks/ping.yml (one ansible.builtin.ping task: the Ansible floor)
  keygen      N RSA-4096 generations in one process of the device's Python (the crypto floor);
              over SSH also one generation on every device at once, each in its own session
              (and quota): the slowest device's keygen is the ideal's first term
then the module alone (bench/module_alone.py) with the device's Python. It prints medians,
the ratios against their targets (with the per-task profile of what stands in the way of a
missed one), over SSH the runs side by side against ping and the ideal (slowest device
keygen + ping + N x controller CPU per host / cores), and writes bench/results/<timestamp>.json.
With --device-cpu P every device account runs in P % of one core (bench/cpuquota.py); with
--forks 5,30 every playbook run is measured at each fork count, interleaved. Benchmarks are scripts, never timed
assertions: the exit status only says whether every run did its job (all hosts ok, re-run
unchanged), not whether a target was met.
"""
from __future__ import annotations

import argparse
import configparser
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import agents  # noqa: E402
import cpuquota  # noqa: E402
import sshfleet  # noqa: E402
import tables  # noqa: E402
from crypto_collection import ensure_community_crypto  # noqa: E402
from fleet_inventory import Inventory, write_inventory  # noqa: E402

REPO = BENCH.parent
sys.path.insert(1, str(REPO))
from tests.fixtures.collection import build_and_install  # noqa: E402

RESULTS = BENCH / "results"
PROVISION = REPO / "playbooks" / "provision.yml"
BASELINE = BENCH / "baseline" / "provision.yml"
PING = BENCH / "playbooks" / "ping.yml"
KEYGEN = BENCH / "keygen.py"
BLOCKS = ("provision", "baseline", "ping", "keygen", "micro")  # run per repetition, this order or reversed
SKIPPABLE = ("rerun", "rerun_lean", "rotate", "baseline_rerun")
HEARTBEAT = "/agent/heartbeat"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- service
class Service:
    """The reference provisioning service: tests/fixtures/servicectl.py's ProvisioningService."""

    def __init__(self, state_dir: Path, token: str):
        self.state_dir = state_dir
        self.token = token
        self._svc = None

    def start(self) -> Service:
        sys.path.insert(0, str(REPO))
        from tests.fixtures.servicectl import ProvisioningService

        self._svc = ProvisioningService(state_dir=self.state_dir, token=self.token)
        self._svc.start()
        return self

    def __getattr__(self, name):
        return getattr(self._svc, name)

    def stop(self) -> None:
        if self._svc is not None:
            self._svc.stop()


# --------------------------------------------------------------------------- fleets
class LocalFleet:
    """N hosts that are all this machine (connection local, the controller's Python), each with
    its own identity dir; every first run gets fresh dirs."""

    name = "local"
    python = sys.executable
    connection = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}

    def __init__(self, root: Path, n: int):
        self.root, self.n = root, n
        self.dirs: list[Path] = []

    def start(self) -> LocalFleet:
        return self

    def inventory(self, svc, kind: str, rep: int | str | None, settings: dict) -> Inventory:
        base = self.root / (kind if rep is None else f"{kind}-{rep}")
        width = max(3, len(str(self.n)))
        hosts = {f"dev{i:0{width}d}": {"mtls_dir": str(base / "hosts" / f"dev{i:0{width}d}" / ".mtls")}
                 for i in range(1, self.n + 1)}
        inv = write_inventory(base / "inventory.yml", svc, svc.ca_path, self.connection, hosts, settings)
        self.dirs += inv.host_dirs
        return inv

    def timer_env(self) -> dict:
        return {}

    def begin_run(self) -> None:
        pass

    def end_run(self) -> dict:
        return {}

    def ansible_path(self, scratch: Path) -> str | None:
        return None

    def describe(self) -> dict:
        return {}

    def stop(self) -> None:
        agents.stop(self.dirs)


# --------------------------------------------------------------------------- runs
def _proc_cpu(pid: int | None) -> float | None:
    """user+sys CPU of a running process (all its threads), from /proc."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Runner:
    def __init__(self, args, scratch: Path, collections_root: Path, service_pid: int | None = None):
        self.args = args
        self.service_pid = service_pid
        self.logs = scratch / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        self.env.update({
            # This tree's collection as built and installed (as an operator runs it), first: it
            # overrides ansible.cfg's collections_path.
            "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join(
                [str(build_and_install(scratch / "collections")), str(collections_root)]
                + [p for p in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep) if p]),
            "ANSIBLE_CALLBACK_PLUGINS": str(BENCH / "callback_plugins"),
            "ANSIBLE_CALLBACKS_ENABLED": "bench_timer",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_LOCAL_TEMP": str(scratch / "ansible-tmp"),
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
        })
        for kv in args.env:
            key, sep, value = kv.partition("=")
            if not sep:
                raise SystemExit(f"--env needs KEY=VALUE, got {kv!r}")
            self.env[key] = value
        self.ansible_playbook = str(Path(sys.executable).parent / "ansible-playbook")
        self.counter = 0
        self.loads: list[tuple[float, float, float]] = []

    def playbook(self, fleet, label: str, playbook: Path, inventory: Inventory, forks: int,
                 extra: list[str] | None = None) -> dict:
        self.counter += 1
        stem = f"{self.counter:03d}-{fleet.name}-{label}"
        timer = self.logs / f"{stem}.timer.json"
        logfile = self.logs / f"{stem}.log"
        env = dict(self.env, BENCH_TIMER_OUT=str(timer), **fleet.timer_env())
        cmd = [self.ansible_playbook, "-i", str(inventory.path), "-f", str(forks), str(playbook)]
        for e in extra or []:
            cmd += ["-e", e]
        self.loads.append(os.getloadavg())
        svc0 = _proc_cpu(self.service_pid)
        fleet.begin_run()
        cpu0, t0 = _children_cpu(), time.perf_counter()
        with open(logfile, "w") as out:
            rc = subprocess.call(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
        svc1 = _proc_cpu(self.service_pid)
        self.loads.append(os.getloadavg())
        outside = fleet.end_run()  # over SSH: the masters' and the devices' CPU
        controller = cpu + outside.get("masters_cpu_s", 0.0)
        device = outside.get("device_cpu_s")
        rec = {"label": label, "connection": fleet.name, "forks": forks, "wall_s": round(wall, 3),
               "cpu_s": round(controller + (device or 0.0), 3), "rc": rc,
               "service_cpu_s": round(svc1 - svc0, 3) if svc0 is not None and svc1 is not None else None,
               "load1_before": self.loads[-2][0], "load1_after": self.loads[-1][0], "log": str(logfile)}
        if device is not None:
            rec.update(controller_cpu_s=round(controller, 3), device_cpu_s=device, ssh_masters=outside["masters"])
        if "quota" in outside:  # slow devices: their cgroups' counters, and any process outside them
            rec.update(device_quota=outside["quota"], outside_quota=outside["outside_quota"])
        _add_timer(rec, timer)
        log(f"{fleet.name:<5} f{forks:<3} {label:<14} wall {wall:7.2f}s  cpu {rec['cpu_s']:7.2f}s"
            + (f" (device {device:.2f}s)" if device is not None else "")
            + f"  service cpu {rec['service_cpu_s']}s  rc={rc}"
            + (f"  changed hosts {rec.get('hosts_changed')} tasks {rec.get('changed_tasks')}"
               f"  failed hosts {rec.get('hosts_failed')}" if "tasks" in rec else "  (no timer output)"))
        return rec

    def keygen(self, fleet, n: int, key_size: int) -> dict:
        self.loads.append(os.getloadavg())
        cpu0, t0 = _children_cpu(), time.perf_counter()
        out = subprocess.run([fleet.python, str(KEYGEN), str(n), str(key_size)], check=True, capture_output=True,
                             text=True, cwd=REPO)
        wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
        self.loads.append(os.getloadavg())
        data = json.loads(out.stdout)
        per_key = data["per_key_cpu_s"]
        # cpu_s: process_time() around the N generations only; process_*: the whole child.
        rec = {"label": "keygen", "connection": fleet.name, "n": n, "key_size": key_size, "python": fleet.python,
               "cpu_s": data["cpu_s"], "wall_s": data["wall_s"],
               "process_wall_s": round(wall, 3), "process_cpu_s": round(cpu, 3),
               "per_key_median_s": round(statistics.median(per_key), 4),
               "per_key_mean_s": round(data["cpu_s"] / n, 4),
               "per_key_min_s": min(per_key), "per_key_max_s": max(per_key),
               "load1_before": self.loads[-2][0], "rc": 0, "cryptography": data["cryptography"]}
        log(f"{fleet.name:<5} {'keygen':<14} wall {wall:7.2f}s  cpu {data['cpu_s']:7.2f}s  "
            f"per key median {rec['per_key_median_s']:.3f}s ({fleet.python}, cryptography {data['cryptography']})")
        return rec

    def device_keygen(self, fleet, key_size: int) -> dict:
        """One generation on every device at once, each in its own session (and quota): the
        fleet's keygen as the devices see it. wall_s is the slowest device's keygen."""
        self.loads.append(os.getloadavg())
        t0 = time.perf_counter()
        per_device = fleet.keygen_on_devices(key_size)
        wall = time.perf_counter() - t0
        self.loads.append(os.getloadavg())
        ok = [d for d in per_device if d["rc"] == 0 and "wall_s" in d]
        walls, cpus = [d["wall_s"] for d in ok], [d["cpu_s"] for d in ok]
        rec = {"label": "device_keygen", "connection": fleet.name, "n": len(per_device), "key_size": key_size,
               "python": fleet.python, "device_cpu_percent": fleet.quota.percent if fleet.quota else None,
               "wall_s": max(walls, default=None), "cpu_s": round(sum(cpus), 3),
               "process_wall_s": round(wall, 3), "wall_median_s": statistics.median(walls) if walls else None,
               "per_key_median_s": round(statistics.median(cpus), 4) if cpus else None,
               "per_key_min_s": min(cpus, default=None), "per_key_max_s": max(cpus, default=None),
               "failed": [d["user"] for d in per_device if d not in ok], "per_device": per_device,
               "load1_before": self.loads[-2][0], "load1_after": self.loads[-1][0],
               "rc": 0 if len(ok) == len(per_device) else 1,
               "cryptography": ok[0]["cryptography"] if ok else None}
        log(f"{fleet.name:<5} {'device keygen':<19} slowest {rec['wall_s']}s of {len(ok)} devices at once "
            f"(all done in {wall:.2f}s), CPU per key median {rec['per_key_median_s']}s"
            + (f", {len(rec['failed'])} failed" if rec["failed"] else ""))
        return rec


def _add_timer(rec: dict, timer: Path) -> None:
    try:
        tdata = json.loads(timer.read_text())
    except (OSError, ValueError):
        return
    hosts = tdata["hosts"]
    rec["hosts_failed"] = sum(1 for h in hosts.values() if h["failures"] or h["unreachable"])
    rec["hosts_changed"] = sum(1 for h in hosts.values() if h["changed"])
    rec["changed_tasks"] = sum(h["changed"] for h in hosts.values())
    rec["callback_wall_s"] = tdata["wall_s"]
    rec["tasks"] = tdata["tasks"]


def check(rec: dict, n: int, *, changed: str) -> list[str]:
    """What a run must have done; returns problems (the benchmark is only valid without)."""
    problems = []
    label = f"{rec.get('connection', 'local')} {rec['label']}" + (f" (forks {rec['forks']})" if "forks" in rec else "")
    if rec["rc"] != 0:
        problems.append(f"{label}: ansible-playbook exited {rec['rc']} (see {rec['log']})")
    if "hosts_failed" not in rec:
        problems.append(f"{label}: no timer output (see {rec['log']})")
        return problems
    if rec["hosts_failed"]:
        problems.append(f"{label}: {rec['hosts_failed']} host(s) failed (see {rec['log']})")
    if changed == "all" and rec["hosts_changed"] != n:
        problems.append(f"{label}: {rec['hosts_changed']}/{n} hosts changed, expected all")
    if changed == "none" and rec["changed_tasks"]:
        problems.append(f"{label}: {rec['changed_tasks']} changed task(s), expected none")
    if rec.get("outside_quota"):
        problems.append(f"{label}: device process(es) outside their CPU quota: {rec['outside_quota'][:5]}")
    return problems


class Mode:
    """One fleet's runs and problems at one fork count across the repetitions."""

    def __init__(self, fleet, n: int, forks: int):
        self.fleet, self.n, self.forks = fleet, n, forks
        self.runs: dict[str, list[dict]] = {}
        self.problems: list[str] = []
        self.module_alone: dict | None = None
        self.ping_inventory: Inventory | None = None
        self.loads: list = [os.getloadavg()]

    def add(self, rec: dict, changed: str = "any") -> dict:
        self.runs.setdefault(rec["label"], []).append(rec)
        if rec["label"] == "device_keygen" and rec["rc"]:
            self.problems.append(f"{rec['connection']} device keygen failed on {rec['failed']}: "
                                 f"{[d.get('error') for d in rec['per_device'] if d['user'] in rec['failed']][:3]}")
        elif rec["label"] not in ("keygen", "device_keygen"):
            self.problems.extend(check(rec, self.n, changed=changed))
        return rec


def run_block(mode: Mode, block: str, rep: int, runner: Runner, svc, args, rotate_vars: Path,
              shared: dict) -> None:
    """One block of one repetition at the mode's fork count. Blocks that do not depend on the
    fork count (keygen) run once per fleet and repetition; the other modes of that fleet get
    the same records (`shared`)."""
    fleet, n, skip, forks = mode.fleet, mode.n, set(args.skip), mode.forks

    def playbook(label, path, inventory, extra=None):
        token = f"@{args.token_vars}"
        if args.token and path == PROVISION and token not in (extra or []):  # held by the controller
            extra = [token, *(extra or [])]
        return runner.playbook(fleet, label, path, inventory, forks, extra)

    if block == "provision":
        # --confirm: the controller verifies the API itself (mtls_api_ca_src), so it asks the cloud.
        settings = dict(args.settings, mtls_api_ca_src=str(svc.ca_path)) if args.confirm else args.settings
        # A first run: its own hosts and reports (the identity ledger) per repetition and fork
        # count; a ledger left by the other fork count would make it a restore with no keygen pass.
        inv = fleet.inventory(svc, "ours", f"{rep}-f{forks}", settings)
        if args.ledger_hosts:
            seed_ledger(inv.path.parent / "reports" / "identity-ledger.json", args.ledger_hosts)
        report = inv.path.parent / "reports" / "provision-report.json"
        rec = playbook("provision", PROVISION, inv)
        rec["keygen"] = tables.read_keygen(report)
        mode.add(rec, "all")
        if "rerun" not in skip:
            mode.add(playbook("rerun", PROVISION, inv), "none")
        if args.confirm:
            confirm_reruns(mode, rep, playbook, svc, inv, args.token_vars)
        if "rerun_lean" not in skip:
            # The same re-run verifying only what changed (nothing): the large-fleet setting.
            mode.add(playbook("rerun_lean", PROVISION, inv, ["mtls_verify_unchanged=false"]), "none")
        if "rotate" not in skip:
            before = sum(agents.restarts(d) for d in inv.host_dirs)
            rec = playbook("rotate", PROVISION, inv, [f"@{rotate_vars}"])
            rec["blackout"] = tables.read_blackout(report)
            rec["keygen"] = tables.read_keygen(report)
            rec["agent_restarts"] = sum(agents.restarts(d) for d in inv.host_dirs) - before
            mode.add(rec, "all")
            if rec["agent_restarts"] != n:
                mode.problems.append(f"{fleet.name} rotate: {rec['agent_restarts']} stand-in agent restart(s) "
                                     f"for {n} hosts")
    elif block == "baseline":
        inv = fleet.inventory(svc, "base", f"{rep}-f{forks}", args.settings)
        mode.add(playbook("baseline", BASELINE, inv), "all")
        if "baseline_rerun" not in skip:
            mode.add(playbook("baseline_rerun", BASELINE, inv), "none")
    elif block == "ping":
        mode.ping_inventory = mode.ping_inventory or fleet.inventory(svc, "ping", None, args.settings)
        mode.add(playbook("ping", PING, mode.ping_inventory))
    elif block == "keygen":
        key = (fleet.name, rep, block)
        if key not in shared:
            shared[key] = [runner.keygen(fleet, n, args.key_size)]
            if fleet.name == "ssh":
                shared[key].append(runner.device_keygen(fleet, args.key_size))
        for rec in shared[key]:
            mode.add(rec)
    elif block == "micro":
        mode.ping_inventory = mode.ping_inventory or fleet.inventory(svc, "ping", None, args.settings)
        for kind in tables.MICRO:
            mode.add(playbook(f"micro_{kind}", BENCH / "playbooks" / f"micro_{kind}.yml", mode.ping_inventory))
    mode.loads.append(os.getloadavg())


def seed_ledger(path: Path, hosts: int) -> None:
    """An identity ledger that already knows ``hosts`` other devices (not in the inventory, so
    they take no part in the run), as a fleet's ledger does: rendered whole by the bundle's own
    ledger code, in its version-1 format, which every version of the bundle reads."""
    from tests.fixtures.collection import import_source

    import_source()
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import ledger

    when = "2026-11-01T00:00:00Z"
    document = ledger.empty_ledger()
    document["updated_at"] = when
    for number in range(hosts):
        agent_id, fingerprint = "F%07X" % number, "%064x" % (number + 1)
        document["hosts"]["other-%06d" % number] = {
            "agent_id": agent_id, "fingerprint_sha256": fingerprint, "first_seen": when, "last_seen": when,
            "renew_after": "2027-10-01T00:00:00Z",
            "history": [{"time": when, "action": "created", "agent_id": agent_id, "fingerprint_sha256": fingerprint}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ledger.render(document))


def confirm_reruns(mode: Mode, rep: int, playbook, svc, inv: Inventory, token_vars: Path) -> None:
    """The re-run with the token on the controller, without and with the cloud's confirmation
    (alternating which goes first): the difference is what asking costs. Each host is asked at
    most once."""
    labels = ("rerun_token", "rerun_confirm") if rep % 2 == 0 else ("rerun_confirm", "rerun_token")
    for label in labels:
        svc.clear_faults()
        mode_var = "mtls_confirm=" + ("heartbeat" if label == "rerun_confirm" else "none")
        rec = mode.add(playbook(label, PROVISION, inv, [f"@{token_vars}", mode_var]), "none")
        rec["heartbeat_requests"] = svc.request_count(HEARTBEAT)
        if label == "rerun_confirm" and rec["heartbeat_requests"] > mode.n:
            mode.problems.append(f"{mode.fleet.name} rerun_confirm: {rec['heartbeat_requests']} heartbeat "
                                 f"requests for {mode.n} hosts (at most one each)")


# --------------------------------------------------------------------------- module alone
def measure_module_alone(fleet, svc, scratch: Path, k: int, key_size: int, profile: bool = False) -> dict:
    """Run the module k times on fresh dirs (create) and k times again (unchanged), each call in
    a fresh process of the device's Python without Ansible (bench/module_alone.py), sequentially."""
    import module_alone

    python, ansible_path = fleet.python, fleet.ansible_path(scratch)
    base = scratch / f"module-alone-{fleet.name}"
    # As the role calls it: the identity, the agent's files (rendered from the role's templates,
    # as the action plugin hands them over) and the agent-true check of the gate.
    from tests.fixtures.collection import PACKAGE, import_source  # noqa: PLC0415

    if PACKAGE not in sys.modules:
        import_source()
    from tests.fixtures.product import module_args_with_templates  # noqa: PLC0415

    args = [module_args_with_templates({
        "path": str(base / f"dev{i:03d}" / ".mtls"), "api_url": svc.api_url, "ca_path": str(svc.ca_path),
        "server_url": svc.gate_url, "server_ca": str(svc.ca_path), "key_size": key_size}) for i in range(1, k + 1)]
    import ansible.modules.ping  # noqa: PLC0415

    def call(a, **kw):
        return module_alone.call(a, python=python, ansible_path=ansible_path, **kw)

    create = [call(a) for a in args]
    unchanged = [call(a) for a in args]
    # The Ansible module floor: ansible.builtin.ping in the same harness (interpreter, basic, exit).
    ping = [call({}, module=ansible.modules.ping.__file__) for _ in args]
    res = {"calls": k, "python": python, "create": create, "unchanged": unchanged, "ping": ping}
    bad = [c for c in create if c["failed"] or c["action"] != "created"]
    bad += [c for c in unchanged if c["failed"] or c["action"] != "unchanged"]
    bad += [c for c in ping if c["failed"] or c["rc"] != 0]
    if bad:
        res["problems"] = bad
    if profile:
        a = {**args[0], "path": str(base / "profiled" / ".mtls")}
        res["profile"] = {}
        for name in ("create", "unchanged"):
            prof = scratch / "logs" / f"module-{fleet.name}-{name}.prof"
            call(a, profile=str(prof))
            res["profile"][name] = {"parts": module_alone.profile_parts(str(prof)),
                                    "top_tottime": module_alone.top_functions(str(prof)), "file": str(prof)}
    for name, calls in (("create", create), ("unchanged", unchanged), ("ping", ping)):
        res[f"{name}_cpu_mean_s"] = round(statistics.fmean(c["cpu_s"] for c in calls), 4)
        res[f"{name}_cpu_beyond_keygen_mean_s"] = round(statistics.fmean(c["cpu_beyond_keygen_s"] for c in calls), 4)
        res[f"{name}_wall_median_s"] = round(statistics.median(c["wall_s"] for c in calls), 4)
    res["overhead_ms"] = round((res["create_cpu_beyond_keygen_mean_s"] - res["ping_cpu_mean_s"]) * 1000, 1)
    res["overhead_incl_python_ms"] = round(res["create_cpu_beyond_keygen_mean_s"] * 1000, 1)
    res["unchanged_ms"] = round((res["unchanged_cpu_mean_s"] - res["ping_cpu_mean_s"]) * 1000, 1)
    res["formula"] = (f"module alone ({k} calls with {python}, each in a fresh process like AnsiballZ): mean CPU "
                      f"of a call creating an identity, minus the CPU inside rsa.generate_private_key in that call, "
                      f"minus the mean CPU of ansible.builtin.ping in the same harness (interpreter + "
                      f"AnsibleModule: the floor every module pays)")
    log(f"{fleet.name:<5} module alone: create cpu {res['create_cpu_mean_s']:.3f}s, beyond keygen "
        f"{res['overhead_incl_python_ms']:.0f} ms; unchanged {res['unchanged_cpu_mean_s']:.3f}s; "
        f"ping module {res['ping_cpu_mean_s']:.3f}s")
    return res


# --------------------------------------------------------------------------- main
def default_forks() -> int:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "ansible.cfg")
    return cfg.getint("defaults", "forks", fallback=5)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connection", choices=("local", "ssh", "both"), default="local",
                   help="local fleet, SSH fleet (bench/sshfleet.py, root), or both interleaved (default local)")
    p.add_argument("-n", "--hosts", type=int, default=50, help="fleet size N (default 50)")
    p.add_argument("--forks", default=str(default_forks()), type=_int_list, metavar="F[,F...]",
                   help="ansible forks, or a comma list: every playbook run at each fork count, interleaved "
                        "(default: ansible.cfg's)")
    p.add_argument("--device-cpu", type=float, metavar="P",
                   help="SSH fleet only: confine every session of each device account to P %% of one core "
                        "(1..100; a cgroup CPU quota entered at SSH login, bench/cpuquota.py): slow devices")
    p.add_argument("--repeat", type=int, default=3, help="repetitions; medians are reported (default 3)")
    p.add_argument("--quick", action="store_true", help="smoke run: --hosts 3 --repeat 1")
    p.add_argument("--only", default="provision,baseline,ping,keygen,module",
                   help="comma list of blocks: provision (incl. rerun/rotate), baseline, ping, keygen, module; "
                        "micro (opt-in: the cost of one skipped task, one set_fact, one module task per host)")
    p.add_argument("--skip", default="", type=lambda s: [x for x in s.split(",") if x],
                   help=f"comma list of runs to leave out of their block: {', '.join(SKIPPABLE)}")
    p.add_argument("--key-size", type=int, default=4096,
                   help="RSA key size of every run (default 4096, what the targets are for; the smoke test uses 2048)")
    p.add_argument("--module-calls", type=int, default=0, metavar="K",
                   help="calls of the module alone, each create and unchanged (default min(N, 10))")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for every ansible-playbook run (experiments, e.g. ANSIBLE_PIPELINING=1)")
    p.add_argument("--var", action="append", default=[], metavar="KEY=VALUE",
                   help="an inventory variable for every run's hosts, a string (e.g. "
                        "mtls_background_keygen=false: every key made inline)")
    p.add_argument("--confirm", action="store_true",
                   help="add rerun_token and rerun_confirm: the re-run with the token on the controller, without "
                        "and with the cloud's confirmation (mtls_confirm=heartbeat)")
    p.add_argument("--rtt", type=float, default=0.0, metavar="MS",
                   help="SSH only: each round trip between the controller and a device takes MS more "
                        "(bench/latency_relay.py as the playbooks' ProxyCommand), as over a WAN")
    p.add_argument("--token", action="store_true",
                   help="every run of the bundle's playbooks with the API token on the controller "
                        "(mtls_api_headers), as operators run: the devices get it only when they use it")
    p.add_argument("--ledger-hosts", type=int, default=0, metavar="K",
                   help="each first run starts with an identity ledger that already holds K other "
                        "devices (not in the inventory), as a large fleet's does")
    p.add_argument("--tasks", action="store_true", help="print the per-task breakdown of the median runs")
    p.add_argument("--profile", action="store_true",
                   help="also run the module alone under cProfile (create, unchanged) and print where its time goes")
    p.add_argument("--report", type=Path, metavar="RESULTS_JSON",
                   help="print the tables of an earlier run from its results JSON, run nothing")
    p.add_argument("--cleanup", action="store_true", help="remove the SSH fleet's device users and their homes")
    p.add_argument("--keep", action="store_true", help="keep the scratch dir (identity dirs, logs)")
    p.add_argument("--scratch", type=Path, help="scratch dir (default: a new temp dir)")
    p.add_argument("--out", type=Path, help="JSON output path (default bench/results/<timestamp>.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.hosts, args.repeat = 3, 1
    if args.hosts < 1 or args.repeat < 1 or min(args.forks) < 1:
        p.error("--hosts, --repeat and --forks must be >= 1")
    if args.device_cpu is not None:
        if args.connection != "ssh":
            p.error("--device-cpu needs --connection ssh (the local fleet is the controller itself)")
        if not 1 <= args.device_cpu <= 100:
            p.error("--device-cpu: 1..100 (% of one core)")
    if args.rtt and args.connection != "ssh":
        p.error("--rtt needs --connection ssh")
    if set(args.skip) - set(SKIPPABLE):
        p.error(f"--skip: unknown runs {sorted(set(args.skip) - set(SKIPPABLE))}")
    # Inventory settings beyond the fleet's shape: only what differs from the role's defaults.
    args.settings = {"mtls_key_size": args.key_size} if args.key_size != 4096 else {}
    for item in args.var:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("mtls_"):
            p.error(f"--var {item!r}: KEY=VALUE with a role variable (mtls_*) as KEY")
        args.settings[key] = value
    args.blocks = {b.strip() for b in args.only.split(",") if b.strip()}
    if args.blocks - {*BLOCKS, "module"}:
        p.error(f"unknown --only blocks: {sorted(args.blocks - {*BLOCKS, 'module'})}")
    return args


def _int_list(text: str) -> list[int]:
    try:
        return list(dict.fromkeys(int(x) for x in text.split(",") if x.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of integers: {text!r}") from None


def print_report(path: Path, tasks: bool) -> int:
    data = json.loads(path.read_text())
    tables.print_results(data.get("modes", [data]), tasks)
    print(f"started {data['started']}, git {data['versions'].get('git_head')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # A terminated bench still stops its sshd and service and removes its cgroups (finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.cleanup:
        return sshfleet.cleanup(log)
    if args.report:
        return print_report(args.report, args.tasks)
    if Path.cwd().resolve() != REPO:
        log(f"note: running from {Path.cwd()}; playbooks run with cwd={REPO} (its ansible.cfg)")
    if "provision" in args.blocks and not PROVISION.exists():
        raise SystemExit(f"{PROVISION} does not exist yet (use --only baseline,ping,keygen)")
    if "module" in args.blocks and not (REPO / "plugins" / "modules" / "mtls_identity.py").exists():
        raise SystemExit("plugins/modules/mtls_identity.py does not exist yet (leave out 'module' from --only)")
    names = ["local", "ssh"] if args.connection == "both" else [args.connection]
    if "ssh" in names and (why := sshfleet.unavailable()):
        raise SystemExit(f"--connection {args.connection}: the SSH fleet {why}")
    if args.device_cpu is not None and (why := cpuquota.unavailable()):
        raise SystemExit(f"--device-cpu: the device CPU quota {why}")
    n = args.hosts
    collections_root, crypto_ver = ensure_community_crypto()
    log(f"community.crypto {crypto_ver} from {collections_root}; load {os.getloadavg()[0]:.2f}")

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="fleet-mtls-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    versions = _versions(crypto_ver)  # at the start: other work may commit during a long run
    rotate_vars = scratch / "rotate-vars.json"
    rotate_vars.write_text(json.dumps(agents.ROTATE_VARS))
    # --confirm: the API token, held by the controller; the bench's (legacy) flavor has no heartbeat
    # route of its own: the reference service's is named.
    args.token_vars = scratch / "token-vars.json"
    args.token_vars.write_text(json.dumps({"mtls_api_headers": {"Authorization": "Bearer bench-token"},
                                           "mtls_confirm_endpoint": HEARTBEAT}))
    args.token_vars.chmod(0o600)
    svc = Service(scratch / "service", token="bench-token").start()
    log(f"service api={svc.api_url} gate={svc.gate_url}; scratch {scratch}")
    runner = Runner(args, scratch, collections_root, getattr(getattr(svc, "process", None), "pid", None))
    fleets: dict[str, object] = {}
    modes: list[Mode] = []  # one per fleet and fork count
    registrations = None
    try:
        for name in names:
            fleets[name] = (LocalFleet(scratch / "local", n) if name == "local"
                            else sshfleet.SshFleet(scratch / "ssh", n, log, args.device_cpu, args.rtt))
            modes += [Mode(fleets[name], n, forks) for forks in args.forks]
            fleets[name].start()
        shared: dict = {}
        for rep in range(args.repeat):
            order = list(BLOCKS) if rep % 2 == 0 else list(reversed(BLOCKS))
            mode_order = modes if rep % 2 == 0 else list(reversed(modes))
            for block in (b for b in order if b in args.blocks):
                for mode in mode_order:
                    run_block(mode, block, rep, runner, svc, args, rotate_vars, shared)
        if "module" in args.blocks:
            for fleet in fleets.values():
                calls = args.module_calls or min(n, 10)
                alone = measure_module_alone(fleet, svc, scratch, calls, args.key_size, args.profile)
                for mode in (m for m in modes if m.fleet is fleet):
                    mode.module_alone = alone
                    mode.problems.extend(f"{fleet.name} module alone: {c}" for c in alone.get("problems", []))
    finally:
        with contextlib.suppress(Exception):
            registrations = len(svc.registrations())
        for fleet in fleets.values():
            with contextlib.suppress(Exception):
                fleet.stop()
        svc.stop()

    forks = args.forks[0] if len(args.forks) == 1 else args.forks
    head = {"started": started.isoformat(timespec="seconds"), "hosts": n, "forks": forks,
            "device_cpu_percent": args.device_cpu,
            "rtt_ms": args.rtt,
            "repeat": args.repeat, "cores": len(os.sched_getaffinity(0)), "extra_env": args.env,
            "key_size": args.key_size, "skipped_runs": args.skip, "confirm": args.confirm,
            "ledger_hosts": args.ledger_hosts, "versions": versions,
            "service_registrations": registrations}
    results = [_mode_result(mode, {**head, "forks": mode.forks}) for mode in modes]
    tables.add_fleet_summaries(results)
    tables.print_results(results, args.tasks)
    out = args.out or RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}-{args.connection}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    data = results[0] if len(results) == 1 else {**head, "connection": args.connection, "modes": results}
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"results: {out}")
    problems = list(dict.fromkeys(p for r in results for p in r["problems"]))
    if problems:
        print("PROBLEMS (the numbers above are not valid):")
        for p in problems:
            print(f"  - {p}")
    if not args.keep and not args.scratch and not problems:
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        print(f"scratch kept: {scratch}")
    return 1 if problems else 0


def _mode_result(mode: Mode, head: dict) -> dict:
    fleet = mode.fleet
    summary = tables.summarise(mode.runs, mode.n, head["cores"], mode.module_alone)
    return {
        **head,
        "connection": fleet.name,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpu": _cpu_model(),
                    "loadavg_samples": [[round(x, 2) for x in s] for s in mode.loads]},
        "versions": {**head["versions"], "device": _python_versions(fleet.python)},
        **({"ssh": fleet.describe()} if fleet.name == "ssh" else {}),
        **summary,
        "module_alone": mode.module_alone,
        "problems": mode.problems,
        "runs": mode.runs,
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def _python_versions(python: str) -> dict:
    """The device Python's version and libraries (the controller's in local mode)."""
    code = ("import json, platform, cryptography, requests; print(json.dumps({'python': platform.python_version(), "
            "'cryptography': cryptography.__version__, 'requests': requests.__version__}))")
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    info = json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr.strip()[-200:]}
    return {"interpreter": python, **info}


def _versions(crypto_ver: str) -> dict:
    import ansible.release
    import cryptography

    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    dirty = git("status", "--porcelain", "--", "roles", "playbooks", "plugins")
    return {"git_head": git("rev-parse", "--short", "HEAD"), "bundle_dirty": bool(dirty),
            "ansible_core": ansible.release.__version__, "cryptography": cryptography.__version__,
            "community_crypto": crypto_ver}


if __name__ == "__main__":
    sys.exit(main())
