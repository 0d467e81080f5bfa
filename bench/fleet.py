"""Fleet provisioning benchmark: our playbook against the Ansible floor, the crypto floor and
the usual community.crypto alternative, measured side by side in one run (issue 7).

Run from the repository root with the venv's Python:

    .venv/bin/python bench/fleet.py                    # N=50, median of 3
    .venv/bin/python bench/fleet.py --hosts 2 --repeat 1   # smoke run (CI)
    .venv/bin/python bench/fleet.py --quick            # same, small N

What it does: builds a local fleet of N hosts (connection local, one mtls_dir per host under a
scratch dir), starts the reference provisioning service, then for each repetition runs, in an
order that alternates between repetitions:
  provision   playbooks/provision.yml on fresh identity dirs (first run)
  rerun       the same playbook again (idempotent re-run)
  rerun_lean  the same re-run with mtls_verify_unchanged=false (no handshake on unchanged hosts)
  rotate      the same playbook with -e mtls_rotate=always
  baseline    bench/baseline/provision.yml on fresh dirs (community.crypto), and its re-run
  ping        bench/playbooks/ping.yml (one ansible.builtin.ping task: the Ansible floor)
  keygen      N RSA-4096 generations in one Python process (bench/keygen.py: the crypto floor)
It prints a table of medians and the ratios of issue 7 and writes bench/results/<ts>.json.
Benchmarks are scripts, never timed assertions: the exit status only says whether every run
did its job (all hosts ok, re-run unchanged), not whether a target was met.
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
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
LOCAL_COLLECTIONS = BENCH / ".collections"

# community.crypto comes from the PyPI `ansible` wheel (no Galaxy here): pinned release.
ANSIBLE_WHEEL_VERSION = "12.3.0"
ANSIBLE_WHEEL = f"ansible-{ANSIBLE_WHEEL_VERSION}-py3-none-any.whl"
CRYPTO_PREFIX = "ansible_collections/community/crypto/"

PROVISION = REPO / "playbooks" / "provision.yml"
BASELINE = BENCH / "baseline" / "provision.yml"
PING = BENCH / "playbooks" / "ping.yml"
KEYGEN = BENCH / "keygen.py"
MICRO = ("empty", "skipped", "set_fact", "module")  # bench/playbooks/micro_<kind>.yml; 10 tasks each
MODULE_ALONE = BENCH / "module_alone.py"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- community.crypto
def _cache_dir() -> Path:
    env = os.environ.get("FLEET_MTLS_CACHE")
    candidates = [Path(env)] if env else []
    candidates += [Path("/var/cache/fleet-mtls"), Path.home() / ".cache" / "fleet-mtls"]
    for cand in candidates:
        try:
            (cand / "wheels").mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(cand / "wheels", os.W_OK):
            return cand
    raise SystemExit("no writable cache dir for the ansible wheel (set FLEET_MTLS_CACHE)")


def _collection_roots() -> list[Path]:
    roots = [Path(p) for p in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep) if p]
    roots += [Path.home() / ".ansible" / "collections", Path("/usr/share/ansible/collections")]
    roots += [Path(p) for p in sys.path if p]  # ansible scans sys.path for ansible_collections
    return roots


def crypto_version(root: Path) -> str | None:
    manifest = root / CRYPTO_PREFIX / "MANIFEST.json"
    try:
        return json.loads(manifest.read_text())["collection_info"]["version"]
    except (OSError, ValueError, KeyError):
        return None


def ensure_community_crypto() -> tuple[Path, str]:
    """Find community.crypto where ansible looks, or extract it from the `ansible` wheel into
    bench/.collections (wheel cached outside the repo). Returns (collections root, version)."""
    for root in _collection_roots():
        version = crypto_version(root)
        if version:
            return root, version
    version = crypto_version(LOCAL_COLLECTIONS)
    if version:
        return LOCAL_COLLECTIONS, version
    wheel = _cache_dir() / "wheels" / ANSIBLE_WHEEL
    if not wheel.exists():
        log(f"downloading {ANSIBLE_WHEEL} (~54 MB, once) into {wheel.parent}")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", f"ansible=={ANSIBLE_WHEEL_VERSION}", "-d", str(wheel.parent)],
            check=True, stdout=subprocess.DEVNULL,
        )
    log(f"extracting community.crypto from {wheel.name} into {LOCAL_COLLECTIONS}")
    LOCAL_COLLECTIONS.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=LOCAL_COLLECTIONS, prefix=".extract-"))
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.namelist() if m.startswith(CRYPTO_PREFIX)]
            if not members:
                raise SystemExit(f"{wheel} holds no {CRYPTO_PREFIX}")
            for member in members:
                zf.extract(member, staging)
        target = LOCAL_COLLECTIONS / "ansible_collections" / "community"
        target.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target / "crypto", ignore_errors=True)
        os.replace(staging / CRYPTO_PREFIX, target / "crypto")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    version = crypto_version(LOCAL_COLLECTIONS)
    if not version:
        raise SystemExit("community.crypto extraction failed")
    return LOCAL_COLLECTIONS, version


# --------------------------------------------------------------------------- service
class Service:
    """The reference provisioning service: tests/servicectl.py's ProvisioningService."""

    def __init__(self, state_dir: Path, token: str):
        self.state_dir = state_dir
        self.token = token
        self._svc = None

    def start(self) -> Service:
        sys.path.insert(0, str(REPO))
        from tests.servicectl import ProvisioningService

        self._svc = ProvisioningService(state_dir=self.state_dir, token=self.token)
        self._svc.start()
        return self

    def __getattr__(self, name):
        return getattr(self._svc, name)

    def stop(self) -> None:
        if self._svc is not None:
            self._svc.stop()


# --------------------------------------------------------------------------- fleet
def write_inventory(path: Path, hosts_root: Path, n: int, svc) -> Path:
    """A local fleet in the shape of inventory/demo: connection local, the controller's Python,
    one mtls_dir per host; the service's URLs and CA in the group vars. The same file drives
    our playbook, the baseline (which reads mtls_dir, mtls_api_url, mtls_api_ca) and ping."""
    hosts_root.mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(n)))
    q = json.dumps
    lines = [
        "---",
        "# Generated by bench/fleet.py: a local benchmark fleet (no SSH, no containers).",
        "all:",
        "  vars:",
        "    ansible_connection: local",
        '    ansible_python_interpreter: "{{ ansible_playbook_python }}"',
        f"    mtls_api_url: {q(svc.api_url)}",
        f"    mtls_api_ca: {q(str(svc.ca_path))}",
        f"    mtls_server_url: {q(svc.gate_url)}",
        f"    mtls_server_ca: {q(str(svc.ca_path))}",
        f"    mtls_verify_url: {q(svc.gate_url + '/whoami')}",
        "    mtls_install_prerequisites: false",
        "    mtls_agent_restart: none",
        f"    mtls_report_dir: {q(str(path.parent / 'reports'))}",
        "    mtls_report_print: false",
        "  hosts:",
    ]
    for i in range(1, n + 1):
        name = f"dev{i:0{width}d}"
        lines.append(f"    {name}:")
        lines.append(f"      mtls_dir: {q(str(hosts_root / name / '.mtls'))}")
    path.write_text("\n".join(lines) + "\n")
    return path


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
        self.scratch = scratch
        self.logs = scratch / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        self.env.update({
            # The repository's own collection first (it overrides ansible.cfg's collections_path).
            "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join(
                [str(REPO / "collections"), str(collections_root)]
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

    def playbook(self, label: str, playbook: Path, inventory: Path, extra: list[str] | None = None) -> dict:
        self.counter += 1
        stem = f"{self.counter:03d}-{label}"
        timer = self.logs / f"{stem}.timer.json"
        logfile = self.logs / f"{stem}.log"
        env = dict(self.env, BENCH_TIMER_OUT=str(timer))
        cmd = [self.ansible_playbook, "-i", str(inventory), "-f", str(self.args.forks), str(playbook)]
        for e in extra or []:
            cmd += ["-e", e]
        load = os.getloadavg()[0]
        svc0 = _proc_cpu(self.service_pid)
        cpu0, t0 = _children_cpu(), time.perf_counter()
        with open(logfile, "w") as out:
            rc = subprocess.call(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
        svc1 = _proc_cpu(self.service_pid)
        rec = {"label": label, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "rc": rc,
               "service_cpu_s": round(svc1 - svc0, 3) if svc0 is not None and svc1 is not None else None,
               "load1_before": load, "log": str(logfile)}
        try:
            tdata = json.loads(timer.read_text())
        except (OSError, ValueError):
            tdata = None
        if tdata:
            hosts = tdata["hosts"]
            rec["hosts_failed"] = sum(1 for h in hosts.values() if h["failures"] or h["unreachable"])
            rec["hosts_changed"] = sum(1 for h in hosts.values() if h["changed"])
            rec["changed_tasks"] = sum(h["changed"] for h in hosts.values())
            rec["callback_wall_s"] = tdata["wall_s"]
            rec["tasks"] = tdata["tasks"]
        log(f"{label:<16} wall {wall:7.2f}s  cpu {cpu:7.2f}s  service cpu {rec['service_cpu_s']}s  rc={rc}"
            + (f"  changed hosts {rec.get('hosts_changed')} tasks {rec.get('changed_tasks')}"
               f"  failed hosts {rec.get('hosts_failed')}" if tdata else "  (no timer output)"))
        return rec

    def keygen(self, n: int) -> dict:
        load = os.getloadavg()[0]
        cpu0, t0 = _children_cpu(), time.perf_counter()
        out = subprocess.run([sys.executable, str(KEYGEN), str(n)], check=True, capture_output=True, text=True,
                             cwd=REPO)
        wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
        data = json.loads(out.stdout)
        per_key = data["per_key_cpu_s"]
        # cpu_s: process_time() around the N generations only; process_*: the whole child.
        rec = {"label": "keygen", "n": n, "cpu_s": data["cpu_s"], "wall_s": data["wall_s"],
               "process_wall_s": round(wall, 3), "process_cpu_s": round(cpu, 3),
               "per_key_median_s": round(statistics.median(per_key), 4),
               "per_key_mean_s": round(data["cpu_s"] / n, 4),
               "per_key_min_s": min(per_key), "per_key_max_s": max(per_key), "load1_before": load, "rc": 0,
               "cryptography": data["cryptography"]}
        log(f"{'keygen':<16} wall {wall:7.2f}s  cpu {data['cpu_s']:7.2f}s  "
            f"per key median {rec['per_key_median_s']:.3f}s")
        return rec


def check(rec: dict, n: int, *, changed: str) -> list[str]:
    """What a run must have done; returns problems (the benchmark is only valid without)."""
    problems = []
    label = rec["label"]
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
    return problems


# --------------------------------------------------------------------------- report
def med(recs: list[dict], key: str = "wall_s") -> float | None:
    vals = [r[key] for r in recs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarise(runs: dict[str, list[dict]], n: int, cores: int, module_alone: dict | None) -> dict:
    m = {k: med(v) for k, v in runs.items()}
    c = {k: med(v, "cpu_s") for k, v in runs.items()}
    kg_cpu = c.get("keygen")
    ratios, ratios_cpu, notes = {}, {}, {}

    def ratio(name, key_num, key_den, note, floor=None):
        """Wall ratio (the issue's targets) and the same on CPU medians (robust to other load)."""
        for table, src, fl in ((ratios, m, floor and floor[0]), (ratios_cpu, c, floor and floor[1])):
            num, den = src.get(key_num), (fl if floor else src.get(key_den))
            if num is not None and den:
                table[name] = round(num / den, 3)
        notes[name] = note

    floor = (kg_cpu / cores + m["ping"]) if kg_cpu is not None and m.get("ping") is not None else None
    floor_cpu = (kg_cpu + c["ping"]) if kg_cpu is not None and c.get("ping") is not None else None
    ratio("provision/(keygen_cpu/cores+ping)", "provision", None,
          "target <= 1.3: first run against the Ansible floor plus the crypto floor spread on all cores "
          "(cpu column: provision_cpu / (keygen_cpu + ping_cpu))", floor=(floor, floor_cpu) if floor else None)
    ratio("provision/baseline", "provision", "baseline",
          "target <= 0.5 (>= 2x faster than the community.crypto playbook)")
    ratio("baseline/provision", "baseline", "provision", "how many times faster we are")
    ratio("rerun/ping", "rerun", "ping", "target <= 1.5")
    ratio("rerun_lean/ping", "rerun_lean", "ping",
          "target <= 1.5, with mtls_verify_unchanged=false (unchanged hosts skip the handshake)")
    ratio("baseline_rerun/rerun", "baseline_rerun", "rerun", "re-run against re-run")
    ratio("rotate/provision", "rotate", "provision", "a rotation is a first run that keeps the ID")
    overhead = {}
    if None not in (m.get("provision"), m.get("ping"), kg_cpu):
        overhead["wall_formula_ms"] = round((m["provision"] - m["ping"] - kg_cpu / cores) * cores / n * 1000, 1)
        overhead["wall_formula"] = ("(provision_wall - ping_wall - keygen_cpu/cores) * cores / N: wall time the "
                                    "first run spends beyond the Ansible floor and the key generations, "
                                    "converted to core-seconds per host (assumes all cores busy)")
    if None not in (c.get("provision"), c.get("ping"), kg_cpu):
        overhead["cpu_formula_ms"] = round((c["provision"] - c["ping"] - kg_cpu) / n * 1000, 1)
        overhead["cpu_formula"] = ("(provision_cpu - ping_cpu - keygen_cpu) / N: CPU (user+sys, controller and "
                                   "module processes) the first run spends per host beyond the ping playbook and "
                                   "the key generation; robust to other load on the machine")
    if module_alone:
        overhead["module_alone_ms"] = module_alone.get("overhead_ms")
        overhead["module_alone"] = module_alone.get("formula")
        overhead["module_unchanged_ms"] = module_alone.get("unchanged_ms")
        overhead["module_unchanged"] = ("module alone on an unchanged identity minus the ping module: what a re-run "
                                        "costs a device beyond any module (not part of the < 50 ms target)")
        overhead["module_alone_incl_python_ms"] = module_alone.get("overhead_incl_python_ms")
        overhead["module_alone_incl_python"] = ("module alone creating an identity minus its keygen, the Python "
                                                "start-up and AnsibleModule included")
    micro = {}
    if m.get("micro_empty") is not None:
        for kind in MICRO[1:]:
            if m.get(f"micro_{kind}") is not None:
                micro[kind] = {
                    "wall_ms_per_host_task": round((m[f"micro_{kind}"] - m["micro_empty"]) / (10 * n) * 1000, 1),
                    "cpu_ms_per_host_task": round((c[f"micro_{kind}"] - c["micro_empty"]) / (10 * n) * 1000, 1),
                }
    notes = {k: v for k, v in notes.items() if k in ratios or k in ratios_cpu}
    return {"median_wall_s": m, "median_cpu_s": c, "ratios": ratios, "ratios_cpu": ratios_cpu, "ratio_notes": notes,
            "micro": micro,
            "module_overhead_per_host": overhead, "floor_s": floor}


def print_table(summary: dict, runs: dict[str, list[dict]], n: int, forks: int, cores: int, repeat: int) -> None:
    order = ["provision", "rerun", "rerun_lean", "rotate", "baseline", "baseline_rerun", "ping", "keygen"]
    order += [f"micro_{kind}" for kind in MICRO]
    print()
    print(f"fleet-mtls benchmark: N={n} hosts, forks={forks}, cores={cores}, "
          f"repeat={repeat}")
    print(f"{'run':<16}{'median s':>10}{'min s':>9}{'max s':>9}{'cpu s':>9}{'svc cpu s':>10}{'ms/host':>10}")
    for k in order:
        recs = runs.get(k)
        if not recs:
            continue
        walls = [r["wall_s"] for r in recs]
        mw = summary["median_wall_s"][k]
        mc = summary["median_cpu_s"][k]
        sc = med(recs, "service_cpu_s")
        sc_txt = f"{sc:>10.2f}" if sc is not None else f"{'-':>10}"
        print(f"{k:<16}{mw:>10.2f}{min(walls):>9.2f}{max(walls):>9.2f}{mc:>9.2f}{sc_txt}{mw / n * 1000:>10.0f}")
    kg = runs.get("keygen")
    if kg:
        print(f"keygen per key (CPU, median of all keys): {statistics.median(r['per_key_median_s'] for r in kg):.3f} s;"
              f" keygen CPU / cores = {summary['median_cpu_s']['keygen'] / cores:.2f} s")
    if summary["floor_s"] is not None:
        print(f"floor = keygen_cpu/cores + ping = {summary['floor_s']:.2f} s")
    if summary.get("micro"):
        print("cost of one task on one host ((micro run - empty play) / (10 * N)):")
        for kind, v in summary["micro"].items():
            print(f"  {kind:<10} {v['wall_ms_per_host_task']:>7.1f} ms wall {v['cpu_ms_per_host_task']:>7.1f} ms CPU")
    print()
    if summary["ratio_notes"]:
        print(f"ratios (medians){'':<22}{'wall':>8}{'cpu':>8}")
    for name, note in summary["ratio_notes"].items():
        w, cp = summary["ratios"].get(name), summary["ratios_cpu"].get(name)
        w_txt = f"{w:>8.2f}" if w is not None else f"{'-':>8}"
        c_txt = f"{cp:>8.2f}" if cp is not None else f"{'-':>8}"
        print(f"  {name:<36}{w_txt}{c_txt}   {note}")
    oh = summary["module_overhead_per_host"]
    if oh:
        print()
        print("per-host overhead of the module beyond key generation (target < 50 ms):")
        for key in ("module_alone", "module_alone_incl_python", "module_unchanged", "cpu_formula", "wall_formula"):
            if oh.get(key + "_ms") is not None:
                print(f"  {oh[key + '_ms']:>8.1f} ms  {oh[key]}")
        if n < 20:
            print(f"  (N={n}: the formulas spread the runs' fixed costs, start-up and report, over few hosts;"
                  " use N >= 20)")
    print()


def median_run(recs: list[dict]) -> dict:
    ordered = sorted(recs, key=lambda r: r["wall_s"])
    return ordered[(len(ordered) - 1) // 2]


def print_breakdown(runs: dict[str, list[dict]], n: int) -> None:
    """Where the time of the median run of each playbook went, task by task (bench_timer)."""
    for label in ("provision", "rerun", "rerun_lean", "rotate", "baseline", "baseline_rerun", "ping"):
        if not runs.get(label):
            continue
        rec = median_run(runs[label])
        if "tasks" not in rec:
            continue
        print(f"{label}: wall {rec['wall_s']:.2f}s; ansible start-up and play setup outside tasks "
              f"{rec['wall_s'] - sum(t['span_s'] for t in rec['tasks']):.2f}s")
        print(f"  {'task':<66}{'span s':>8}{'cpu s':>8}{'cpu ms/host':>12}{'ran':>5}{'chg':>5}")
        for t in rec["tasks"]:
            ran = t["hosts"] - t["skipped"]
            if ran == 0 and t["span_s"] < 0.05:
                continue
            cpu = t.get("cpu_s", 0.0)
            name = t["name"][:66]
            print(f"  {name:<66}{t['span_s']:>8.2f}{cpu:>8.2f}{cpu / n * 1000:>12.0f}{ran:>5}{t['changed']:>5}")
        print()


def print_profile(profile: dict) -> None:
    for name, data in profile.items():
        parts = data["parts"]
        total = parts["total"]
        print(f"module alone under cProfile, {name}: {total:.3f}s profiled ({data['file']})")
        for part, secs in parts.items():
            if part != "total" and secs:
                print(f"  {part:<20}{secs:>8.3f}s {secs / total * 100:>5.0f}%")
        print("  most own time:")
        for row in data["top_tottime"][:10]:
            print(f"    {row}")
        print()


# --------------------------------------------------------------------------- main
def default_forks() -> int:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "ansible.cfg")
    return cfg.getint("defaults", "forks", fallback=5)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", type=int, default=50, help="fleet size N (default 50)")
    p.add_argument("--forks", type=int, default=default_forks(), help="ansible forks (default: ansible.cfg's)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions; medians are reported (default 3)")
    p.add_argument("--quick", action="store_true", help="smoke run: --hosts 3 --repeat 1")
    p.add_argument("--only", default="provision,baseline,ping,keygen,module",
                   help="comma list of blocks: provision (incl. rerun/rotate), baseline, ping, keygen, module; "
                        "micro (opt-in: the cost of one skipped task, one set_fact, one module task per host)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for every ansible-playbook run (experiments, e.g. ANSIBLE_PIPELINING=1)")
    p.add_argument("--tasks", action="store_true", help="print the per-task breakdown of the median runs")
    p.add_argument("--profile", action="store_true",
                   help="also run the module alone under cProfile (create, unchanged) and print where its time goes")
    p.add_argument("--report", type=Path, metavar="RESULTS_JSON",
                   help="print the tables of an earlier run from its results JSON, run nothing")
    p.add_argument("--keep", action="store_true", help="keep the scratch dir (identity dirs, logs)")
    p.add_argument("--scratch", type=Path, help="scratch dir (default: a new temp dir)")
    p.add_argument("--out", type=Path, help="JSON output path (default bench/results/<timestamp>.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.hosts, args.repeat = 3, 1
    if args.hosts < 1 or args.repeat < 1 or args.forks < 1:
        p.error("--hosts, --repeat and --forks must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.report:
        old = json.loads(args.report.read_text())
        summary = summarise(old["runs"], old["hosts"], old["cores"], old.get("module_alone"))
        if args.tasks:
            print_breakdown(old["runs"], old["hosts"])
        if old.get("module_alone") and old["module_alone"].get("profile"):
            print_profile(old["module_alone"]["profile"])
        print_table(summary, old["runs"], old["hosts"], old["forks"], old["cores"], old["repeat"])
        loads = old["machine"]["loadavg_samples"]
        print(f"started {old['started']}, git {old['versions'].get('git_head')}, load (1 min) during the run: "
              f"{min(x[0] for x in loads):.1f}..{max(x[0] for x in loads):.1f}")
        return 0
    if Path.cwd().resolve() != REPO:
        log(f"note: running from {Path.cwd()}; playbooks run with cwd={REPO} (its ansible.cfg)")
    blocks = {b.strip() for b in args.only.split(",") if b.strip()}
    unknown = blocks - {"provision", "baseline", "ping", "keygen", "module", "micro"}
    if unknown:
        raise SystemExit(f"unknown --only blocks: {sorted(unknown)}")
    if "provision" in blocks and not PROVISION.exists():
        raise SystemExit(f"{PROVISION} does not exist yet (use --only baseline,ping,keygen)")
    if "module" in blocks and not (REPO / "library" / "mtls_identity.py").exists():
        raise SystemExit("library/mtls_identity.py does not exist yet (leave out 'module' from --only)")
    n, cores = args.hosts, len(os.sched_getaffinity(0))
    collections_root, crypto_ver = ensure_community_crypto()
    log(f"community.crypto {crypto_ver} from {collections_root}; load {os.getloadavg()[0]:.2f}")

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="fleet-mtls-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    versions = _versions(crypto_ver)  # at the start: other work may commit during a long run
    svc = Service(scratch / "service", token="bench-token").start()
    log(f"service api={svc.api_url} gate={svc.gate_url}; scratch {scratch}")
    runner = Runner(args, scratch, collections_root, getattr(getattr(svc, "process", None), "pid", None))
    runs: dict[str, list[dict]] = {}
    problems: list[str] = []
    module_alone = None
    loads = [os.getloadavg()]
    registrations = None

    def add(rec, changed="any"):
        runs.setdefault(rec["label"], []).append(rec)
        problems.extend(check(rec, n, changed=changed) if rec["label"] != "keygen" else [])

    try:
        ping_inv = write_inventory(scratch / "ping" / "inventory.yml", scratch / "ping" / "hosts", n, svc)
        for rep in range(args.repeat):
            order = ["provision", "baseline", "ping", "keygen", "micro"]
            if rep % 2:
                order.reverse()
            for block in order:
                if block not in blocks:
                    continue
                if block == "provision":
                    inv = write_inventory(scratch / f"ours-{rep}" / "inventory.yml", scratch / f"ours-{rep}" / "hosts",
                                          n, svc)
                    add(runner.playbook("provision", PROVISION, inv), "all")
                    add(runner.playbook("rerun", PROVISION, inv), "none")
                    # The same re-run verifying only what changed (nothing): the large-fleet setting.
                    add(runner.playbook("rerun_lean", PROVISION, inv, ["mtls_verify_unchanged=false"]), "none")
                    add(runner.playbook("rotate", PROVISION, inv, ["mtls_rotate=always"]), "all")
                elif block == "baseline":
                    inv = write_inventory(scratch / f"base-{rep}" / "inventory.yml", scratch / f"base-{rep}" / "hosts",
                                          n, svc)
                    add(runner.playbook("baseline", BASELINE, inv), "all")
                    add(runner.playbook("baseline_rerun", BASELINE, inv), "none")
                elif block == "ping":
                    add(runner.playbook("ping", PING, ping_inv))
                elif block == "keygen":
                    add(runner.keygen(n))
                elif block == "micro":
                    for kind in MICRO:
                        add(runner.playbook(f"micro_{kind}", BENCH / "playbooks" / f"micro_{kind}.yml", ping_inv))
                loads.append(os.getloadavg())
        if "module" in blocks:
            module_alone = measure_module_alone(svc, scratch, min(n, 10), args.profile)
            problems.extend(f"module alone: {c}" for c in module_alone.get("problems", []))
    finally:
        with contextlib.suppress(Exception):
            registrations = len(svc.registrations())
        svc.stop()

    summary = summarise(runs, n, cores, module_alone)
    if args.tasks:
        print_breakdown(runs, n)
    if module_alone and module_alone.get("profile"):
        print_profile(module_alone["profile"])
    print_table(summary, runs, n, args.forks, cores, args.repeat)
    result = {
        "started": started.isoformat(timespec="seconds"),
        "hosts": n, "forks": args.forks, "repeat": args.repeat, "cores": cores, "extra_env": args.env,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpu": _cpu_model(), "loadavg_samples": [[round(x, 2) for x in s] for s in loads]},
        "versions": versions,
        **summary,
        "module_alone": module_alone,
        "service_registrations": registrations,
        "problems": problems,
        "runs": runs,
    }
    out = args.out or RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"results: {out}")
    if problems:
        print("PROBLEMS (the numbers above are not valid):")
        for p in problems:
            print(f"  - {p}")
    if not args.keep and not args.scratch and not problems:
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        print(f"scratch kept: {scratch}")
    return 1 if problems else 0


def measure_module_alone(svc, scratch: Path, k: int, profile: bool = False) -> dict:
    """Run the module k times on fresh dirs (create) and k times again (unchanged), each call in
    a fresh Python process without Ansible (bench/module_alone.py), sequentially."""
    sys.path.insert(0, str(BENCH))
    import module_alone

    base = scratch / "module-alone"
    args = [{"path": str(base / f"dev{i:03d}" / ".mtls"), "api_url": svc.api_url, "ca_path": str(svc.ca_path)}
            for i in range(1, k + 1)]
    import ansible.modules.ping  # noqa: PLC0415

    create = [module_alone.call(a) for a in args]
    unchanged = [module_alone.call(a) for a in args]
    # The Ansible module floor: ansible.builtin.ping in the same harness (interpreter, basic, exit).
    ping = [module_alone.call({}, module=ansible.modules.ping.__file__) for _ in args]
    res = {"calls": k, "create": create, "unchanged": unchanged, "ping": ping}
    bad = [c for c in create if c["failed"] or c["action"] != "created"]
    bad += [c for c in unchanged if c["failed"] or c["action"] != "unchanged"]
    bad += [c for c in ping if c["failed"] or c["rc"] != 0]
    if bad:
        res["problems"] = bad
    if profile:
        a = {"path": str(base / "profiled" / ".mtls"), "api_url": svc.api_url, "ca_path": str(svc.ca_path)}
        res["profile"] = {}
        for name in ("create", "unchanged"):
            prof = scratch / "logs" / f"module-{name}.prof"
            module_alone.call(a, profile=str(prof))
            res["profile"][name] = {"parts": module_alone.profile_parts(str(prof)),
                                    "top_tottime": module_alone.top_functions(str(prof)), "file": str(prof)}
    for name, calls in (("create", create), ("unchanged", unchanged), ("ping", ping)):
        res[f"{name}_cpu_mean_s"] = round(statistics.fmean(c["cpu_s"] for c in calls), 4)
        res[f"{name}_cpu_beyond_keygen_mean_s"] = round(statistics.fmean(c["cpu_beyond_keygen_s"] for c in calls), 4)
        res[f"{name}_wall_median_s"] = round(statistics.median(c["wall_s"] for c in calls), 4)
    res["overhead_ms"] = round((res["create_cpu_beyond_keygen_mean_s"] - res["ping_cpu_mean_s"]) * 1000, 1)
    res["overhead_incl_python_ms"] = round(res["create_cpu_beyond_keygen_mean_s"] * 1000, 1)
    res["unchanged_ms"] = round((res["unchanged_cpu_mean_s"] - res["ping_cpu_mean_s"]) * 1000, 1)
    res["formula"] = (f"module alone ({k} calls, each in a fresh Python process like AnsiballZ): mean CPU of a call "
                      f"creating an identity, minus the CPU inside rsa.generate_private_key in that call, minus the "
                      f"mean CPU of ansible.builtin.ping in the same harness (interpreter + AnsibleModule: the floor "
                      f"every module pays)")
    log(f"module alone: create cpu {res['create_cpu_mean_s']:.3f}s, beyond keygen "
        f"{res['overhead_incl_python_ms']:.0f} ms; unchanged {res['unchanged_cpu_mean_s']:.3f}s; "
        f"ping module {res['ping_cpu_mean_s']:.3f}s")
    return res


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def _versions(crypto_ver: str) -> dict:
    import ansible.release
    import cryptography

    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    dirty = git("status", "--porcelain", "--", "roles", "playbooks", "library", "module_utils")
    return {"git_head": git("rev-parse", "--short", "HEAD"), "bundle_dirty": bool(dirty),
            "ansible_core": ansible.release.__version__, "cryptography": cryptography.__version__,
            "community_crypto": crypto_ver}


if __name__ == "__main__":
    sys.exit(main())
