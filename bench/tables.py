"""What bench/fleet.py prints and summarises: medians, ratios against their targets, the
per-task profile of the runs that miss one, the module's overhead, the rotation's blackout and,
over SSH, the runs side by side against ping and the ideal (slow devices)."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

MICRO = ("empty", "skipped", "set_fact", "module")  # bench/playbooks/micro_<kind>.yml; 10 tasks each
RUN_ORDER = ("provision", "rerun", "rerun_lean", "rerun_token", "rerun_confirm", "rotate", "baseline",
             "baseline_rerun", "ping")
FLEET_RUNS = ("ping", "provision", "rerun", "rerun_lean", "rotate")  # the side-by-side table, this order

# The targets at N = 50, forks 20, in both modes: (ratio, comparison, target, the run whose
# per-task profile shows what stands in the way when the target is missed).
TARGETS = (
    ("provision/(keygen_cpu/cores+ping)", "<=", 1.3, "provision"),
    ("rerun/ping", "<=", 1.5, "rerun"),
    ("baseline/provision", ">=", 3.0, "provision"),
    ("baseline_rerun/rerun", ">=", 5.0, "rerun"),
)
MODULE_OVERHEAD_TARGET_MS = 50.0
BLACKOUT_TARGETS_MS = {"median_ms": 1000.0, "max_ms": 3000.0}
NO_BLACKOUT = "n/a (the report has no blackout_ms)"


# --------------------------------------------------------------------------- summary
def med(recs: list[dict], key: str = "wall_s") -> float | None:
    vals = [r[key] for r in recs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarise(runs: dict[str, list[dict]], n: int, cores: int, module_alone: dict | None) -> dict:
    m = {k: med(v) for k, v in runs.items()}
    c = {k: med(v, "cpu_s") for k, v in runs.items()}
    kg_cpu = c.get("keygen")
    ratios, ratios_cpu, notes = {}, {}, {}

    def ratio(name, key_num, key_den, note, floor=None):
        """Wall ratio (the targets) and the same on CPU medians (robust to other load)."""
        for table, src, fl in ((ratios, m, floor and floor[0]), (ratios_cpu, c, floor and floor[1])):
            num, den = src.get(key_num), (fl if floor else src.get(key_den))
            if num is not None and den:
                table[name] = round(num / den, 3)
        notes[name] = note

    floor = (kg_cpu / cores + m["ping"]) if kg_cpu is not None and m.get("ping") is not None else None
    floor_cpu = (kg_cpu + c["ping"]) if kg_cpu is not None and c.get("ping") is not None else None
    ratio("provision/(keygen_cpu/cores+ping)", "provision", None,
          "first run against the Ansible floor plus the crypto floor spread on all cores "
          "(cpu column: provision_cpu / (keygen_cpu + ping_cpu))", floor=(floor, floor_cpu) if floor else None)
    ratio("baseline/provision", "baseline", "provision", "first run: times faster than community.crypto")
    ratio("baseline_rerun/rerun", "baseline_rerun", "rerun", "re-run: times faster than community.crypto's re-run")
    ratio("rerun/ping", "rerun", "ping", "an idempotent re-run against one ping task")
    ratio("rerun_lean/ping", "rerun_lean", "ping",
          "the same with mtls_verify_unchanged=false (unchanged hosts skip the handshake)")
    ratio("rerun_confirm/rerun_token", "rerun_confirm", "rerun_token",
          "the re-run asking the cloud once per host (mtls_confirm=heartbeat, the controller asks) against the "
          "same without asking (target <= 1.1)")
    ratio("provision/baseline", "provision", "baseline", "the inverse of baseline/provision")
    ratio("rotate/provision", "rotate", "provision", "a rotation is a first run that keeps the ID")
    notes = {k: v for k, v in notes.items() if k in ratios or k in ratios_cpu}
    return {"median_wall_s": m, "median_cpu_s": c, "ratios": ratios, "ratios_cpu": ratios_cpu, "ratio_notes": notes,
            "micro": _micro(m, c, n), "module_overhead_per_host": _overhead(m, c, kg_cpu, n, cores, module_alone),
            "floor_s": floor, "blackout": blackout_summary(runs.get("rotate", [])), "targets": targets(ratios)}


def _overhead(m: dict, c: dict, kg_cpu: float | None, n: int, cores: int, module_alone: dict | None) -> dict:
    overhead = {}
    if None not in (m.get("provision"), m.get("ping"), kg_cpu):
        overhead["wall_formula_ms"] = round((m["provision"] - m["ping"] - kg_cpu / cores) * cores / n * 1000, 1)
        overhead["wall_formula"] = ("(provision_wall - ping_wall - keygen_cpu/cores) * cores / N: wall time the "
                                    "first run spends beyond the Ansible floor and the key generations, "
                                    "converted to core-seconds per host (assumes all cores busy)")
    if None not in (c.get("provision"), c.get("ping"), kg_cpu):
        overhead["cpu_formula_ms"] = round((c["provision"] - c["ping"] - kg_cpu) / n * 1000, 1)
        overhead["cpu_formula"] = ("(provision_cpu - ping_cpu - keygen_cpu) / N: CPU (user+sys, controller and "
                                   "device processes) the first run spends per host beyond the ping playbook and "
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
    return overhead


def _micro(m: dict, c: dict, n: int) -> dict:
    micro = {}
    if m.get("micro_empty") is not None:
        for kind in MICRO[1:]:
            if m.get(f"micro_{kind}") is not None:
                micro[kind] = {
                    "wall_ms_per_host_task": round((m[f"micro_{kind}"] - m["micro_empty"]) / (10 * n) * 1000, 1),
                    "cpu_ms_per_host_task": round((c[f"micro_{kind}"] - c["micro_empty"]) / (10 * n) * 1000, 1),
                }
    return micro


def targets(ratios: dict) -> dict:
    out = {}
    for name, op, target, _run in TARGETS:
        value = ratios.get(name)
        met = None if value is None else (value <= target if op == "<=" else value >= target)
        out[name] = {"target": f"{op} {target:g}", "value": value, "met": met}
    return out


# --------------------------------------------------------------------------- blackout
def _report_rows(report: Path) -> tuple[list[dict], str | None]:
    """The host rows of the fleet report the role wrote, or ([], why not)."""
    try:
        return json.loads(report.read_text())["hosts"], None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [], f"{report}: {exc}"


def read_blackout(report: Path) -> dict:
    """The per-host blackout_ms of the fleet report the role wrote (after a rotation run)."""
    rows, error = _report_rows(report)
    if error:
        return {"hosts": 0, "values_ms": [], "field_present": False, "error": error}
    values = [r["blackout_ms"] for r in rows if isinstance(r.get("blackout_ms"), (int, float))]
    return {"hosts": len(rows), "values_ms": values, "field_present": any("blackout_ms" in r for r in rows)}


def read_keygen(report: Path) -> dict:
    """How the run's keys were made, from the fleet report the role wrote (its keygen columns):
    how many in the background and inline, the slowest making (the run's own first term of the
    ideal) and the longest wait of an identity call for one."""
    rows, error = _report_rows(report)
    if error:
        return {"hosts": 0, "error": error}
    made = [r for r in rows if r.get("keygen")]
    walls = [r["keygen_ms"] for r in made if isinstance(r.get("keygen_ms"), (int, float))]
    waits = [r["keygen_wait_ms"] for r in made if isinstance(r.get("keygen_wait_ms"), (int, float))]
    return {"hosts": len(rows), "background": sum(r["keygen"] == "background" for r in made),
            "inline": sum(r["keygen"] == "inline" for r in made),
            "slowest_ms": max(walls) if walls else None,
            "median_ms": statistics.median(walls) if walls else None, "wait_max_ms": max(waits) if waits else None}


def blackout_summary(rotate_runs: list[dict]) -> dict:
    """median / p90 / max of every host's blackout over all rotation runs (nearest-rank p90)."""
    values = sorted(v for r in rotate_runs for v in (r.get("blackout") or {}).get("values_ms", []))
    hosts = sum((r.get("blackout") or {}).get("hosts", 0) for r in rotate_runs)
    out = {"counted": len(values), "hosts": hosts, "median_ms": None, "p90_ms": None, "max_ms": None}
    if not values:
        out["note"] = NO_BLACKOUT
        return out
    out.update(median_ms=round(statistics.median(values), 1), p90_ms=values[math.ceil(0.9 * len(values)) - 1],
               max_ms=values[-1])
    return out


# --------------------------------------------------------------------------- printing
def _cell(value, fmt: str, width: int) -> str:
    return f"{value:>{width}{fmt}}" if value is not None else f"{'-':>{width}}"


def print_table(summary: dict, runs: dict[str, list[dict]], head: dict) -> None:
    n, cores = head["hosts"], head["cores"]
    print()
    slow = f", each device {head['device_cpu_percent']:g} % of a core" if head.get("device_cpu_percent") else ""
    print(f"fleet-mtls benchmark ({head.get('connection', 'local')}): N={n} hosts, forks={head['forks']}, "
          f"cores={cores}, repeat={head['repeat']}, RSA-{head.get('key_size', 4096)}{slow}")
    if head.get("key_size", 4096) != 4096:
        print("  (the targets are for RSA-4096: these ratios are not the targets' figures)")
    print(f"{'run':<16}{'median s':>10}{'min s':>9}{'max s':>9}{'cpu s':>9}{'device s':>10}{'svc cpu s':>10}"
          f"{'ms/host':>10}")
    for k in (*RUN_ORDER, "keygen", "device_keygen", *(f"micro_{kind}" for kind in MICRO)):
        recs = runs.get(k)
        if not recs:
            continue
        walls = [r["wall_s"] for r in recs]
        mw, mc = summary["median_wall_s"][k], summary["median_cpu_s"][k]
        print(f"{k:<16}{mw:>10.2f}{min(walls):>9.2f}{max(walls):>9.2f}{mc:>9.2f}"
              f"{_cell(med(recs, 'device_cpu_s'), '.2f', 10)}{_cell(med(recs, 'service_cpu_s'), '.2f', 10)}"
              f"{mw / n * 1000:>10.0f}")
    device = head.get("versions", {}).get("device")
    if device and "python" in device:
        print(f"device Python {device['interpreter']} {device['python']}: cryptography {device['cryptography']}, "
              f"requests {device['requests']}")
    kg = runs.get("keygen")
    if kg:
        print(f"keygen per key (CPU, median of all keys): {statistics.median(r['per_key_median_s'] for r in kg):.3f} s"
              f" with {kg[0].get('python')} (cryptography {kg[0].get('cryptography')});"
              f" keygen CPU / cores = {summary['median_cpu_s']['keygen'] / cores:.2f} s")
    if summary["floor_s"] is not None:
        print(f"floor = keygen_cpu/cores + ping = {summary['floor_s']:.2f} s")
    if summary.get("micro"):
        print("cost of one task on one host ((micro run - empty play) / (10 * N)):")
        for kind, v in summary["micro"].items():
            print(f"  {kind:<10} {v['wall_ms_per_host_task']:>7.1f} ms wall {v['cpu_ms_per_host_task']:>7.1f} ms CPU")
    print()
    _print_ratios(summary)
    _print_overhead(summary["module_overhead_per_host"], n)
    _print_blackout(summary["blackout"])
    _print_obstacles(summary, runs, n)


def _print_ratios(summary: dict) -> None:
    if not summary["ratio_notes"]:
        return
    goals = summary.get("targets") or targets(summary["ratios"])
    print(f"ratios (medians){'':<22}{'wall':>8}{'cpu':>8}  {'target':<9}")
    for name, note in summary["ratio_notes"].items():
        goal = goals.get(name)
        verdict = "" if not goal else f"{goal['target']:<7}{' met' if goal['met'] else ' MISSED':<8}"
        print(f"  {name:<36}{_cell(summary['ratios'].get(name), '.2f', 8)}"
              f"{_cell(summary['ratios_cpu'].get(name), '.2f', 8)}  {verdict:<16}{note}")
    print()


def _print_overhead(oh: dict, n: int) -> None:
    if not oh:
        return
    print(f"per-host overhead of the module beyond key generation (target < {MODULE_OVERHEAD_TARGET_MS:g} ms):")
    for key in ("module_alone", "module_alone_incl_python", "module_unchanged", "cpu_formula", "wall_formula"):
        if oh.get(key + "_ms") is not None:
            verdict = ""
            if key == "module_alone":
                verdict = " met" if oh[key + "_ms"] < MODULE_OVERHEAD_TARGET_MS else " MISSED"
            print(f"  {oh[key + '_ms']:>8.1f} ms{verdict:<8} {oh[key]}")
    if n < 20:
        print(f"  (N={n}: the formulas spread the runs' fixed costs, start-up and report, over few hosts; use N >= 20)")
    print()


def _print_blackout(b: dict) -> None:
    if not b["hosts"]:
        return
    print("rotation blackout per host (upload accepted -> agent restarted with the new pair; "
          "target median < 1 s, max < 3 s):")
    if not b["counted"]:
        print(f"  {b.get('note', NO_BLACKOUT)} ({b['hosts']} host rows read)")
    else:
        verdicts = ", ".join(f"{k.split('_')[0]} {'met' if b[k] < t else 'MISSED'}"
                             for k, t in BLACKOUT_TARGETS_MS.items())
        print(f"  median {b['median_ms']:.0f} ms, p90 {b['p90_ms']:.0f} ms, max {b['max_ms']:.0f} ms "
              f"({b['counted']} of {b['hosts']} host rows counted; {verdicts})")
    print()


def _print_obstacles(summary: dict, runs: dict[str, list[dict]], n: int) -> None:
    """Where a target is missed, the tasks of the run in question that cost the most."""
    shown: set[str] = set()
    printed = False
    for name, _op, _target, label in TARGETS:
        goal = summary["targets"].get(name) if summary.get("targets") else None
        if not goal or goal["met"] is not False or not runs.get(label):
            continue
        printed = True
        print(f"{name} missed ({goal['value']:.2f}, target {goal['target']}): what stands in the way, "
              f"the costliest tasks of the median {label} run:")
        if label in shown:
            print("  (see above)")
            continue
        shown.add(label)
        _print_tasks(median_run(runs[label]), n, limit=8)
    oh = summary["module_overhead_per_host"].get("module_alone_ms")
    if oh is not None and oh >= MODULE_OVERHEAD_TARGET_MS and runs.get("provision"):
        print(f"module overhead missed ({oh:.0f} ms): the module tasks of the median provision run "
              "(bench/fleet.py --only module --profile splits a call into imports, keygen, HTTP, signing):")
        rec = median_run(runs["provision"])
        _print_tasks(rec, n, only=lambda t: t.get("action", "").endswith(("mtls_identity", "mtls_check")))
        printed = True
    if printed:
        print()


def median_run(recs: list[dict]) -> dict:
    ordered = sorted(recs, key=lambda r: r["wall_s"])
    return ordered[(len(ordered) - 1) // 2]


def _print_tasks(rec: dict, n: int, limit: int | None = None, only=None) -> None:
    tasks = rec.get("tasks")
    if not tasks:
        print("  (no per-task timings)")
        return
    outside = rec["wall_s"] - sum(t["span_s"] for t in tasks)
    chosen = [t for t in tasks if only is None or only(t)]
    if limit:
        chosen = sorted(chosen, key=lambda t: t["span_s"], reverse=True)[:limit]
        print(f"  {'ansible start-up and play set-up outside tasks':<66}{outside:>8.2f}")
    print(f"  {'task':<66}{'span s':>8}{'cpu s':>8}{'cpu ms/host':>12}{'ran':>5}{'chg':>5}")
    for t in chosen:
        ran = t["hosts"] - t["skipped"]
        if limit is None and only is None and ran == 0 and t["span_s"] < 0.05:
            continue
        cpu = t.get("cpu_s", 0.0)
        print(f"  {t['name'][:66]:<66}{t['span_s']:>8.2f}{cpu:>8.2f}{cpu / n * 1000:>12.0f}{ran:>5}{t['changed']:>5}")


def print_breakdown(runs: dict[str, list[dict]], n: int) -> None:
    """Where the time of the median run of each playbook went, task by task (bench_timer)."""
    for label in RUN_ORDER:
        if not runs.get(label):
            continue
        rec = median_run(runs[label])
        if "tasks" not in rec:
            continue
        print(f"{label}: wall {rec['wall_s']:.2f}s; ansible start-up and play setup outside tasks "
              f"{rec['wall_s'] - sum(t['span_s'] for t in rec['tasks']):.2f}s")
        _print_tasks(rec, n)
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


# --------------------------------------------------------------------------- side by side, the ideal
def add_fleet_summaries(results: list[dict]) -> None:
    """Give every result that has the devices' own keygen (SSH) its `ideal` and `side_by_side`."""
    for result, summary in zip(_with_device_keygen(results), fleet_summaries(results), strict=True):
        result.update(summary)


def _with_device_keygen(results: list[dict]) -> list[dict]:
    return [r for r in results if r["runs"].get("device_keygen")]


def fleet_summaries(results: list[dict]) -> list[dict]:
    """Per result (fork count) with the devices' keygen: the ideal and each run against ping and it.

    ideal = slowest device keygen (all devices at once, each in its quota; median over the
    repetitions) + ping (at that fork count) + N x c / cores, where c, the controller's CPU per
    host, is the lowest of the median first runs' over the fork counts measured: at few forks
    the controller also burns CPU while its workers wait on slow devices, which is not its own
    cost per host."""
    rows = _with_device_keygen(results)
    per_host = {}
    for r in rows:
        ctrl = med(r["runs"].get("provision", []), "controller_cpu_s")
        if ctrl is not None:
            per_host[r["forks"]] = ctrl / r["hosts"]
    c_forks = min(per_host, key=per_host.get) if per_host else None
    c = per_host.get(c_forks)
    out = []
    for r in rows:
        n, cores, runs = r["hosts"], r["cores"], r["runs"]
        keygen, ping = med(runs["device_keygen"]), med(runs.get("ping", []))
        ideal = keygen + ping + n * c / cores if None not in (keygen, ping, c) else None
        side = {}
        for label in FLEET_RUNS:
            recs = runs.get(label)
            if not recs:
                continue
            wall, ctrl = med(recs), med(recs, "controller_cpu_s")
            throttled = [x["device_quota"]["throttled_s"] for x in recs if x.get("device_quota")]
            own = [(x["wall_s"], x["keygen"]["slowest_ms"] / 1000) for x in recs
                   if (x.get("keygen") or {}).get("slowest_ms")]
            side[label] = {"wall_s": wall, "x_ping": _div(wall, ping), "x_ideal": _div(wall, ideal),
                           "own_slowest_key_s": statistics.median(k for _w, k in own) if own else None,
                           "beyond_own_key_s": statistics.median(w - k for w, k in own) if own else None,
                           "controller_cpu_per_host_s": _div(ctrl, n), "device_cpu_s": med(recs, "device_cpu_s"),
                           "device_throttled_s": statistics.median(throttled) if throttled else None}
        per_key = [d["cpu_s"] for x in runs["device_keygen"] for d in x["per_device"] if "cpu_s" in d]
        out.append({"ideal": {"s": ideal, "device_keygen_slowest_s": keygen, "ping_s": ping,
                              "controller_cpu_per_host_s": c, "controller_cpu_from_forks": c_forks,
                              "hosts": n, "cores": cores,
                              "device_keygen_cpu_per_key_s": [statistics.median(per_key), min(per_key), max(per_key)]
                              if per_key else None,
                              "formula": "slowest device keygen + ping + N x controller CPU per host / cores"},
                    "side_by_side": side})
    return out


def _div(a, b):
    return round(a / b, 3) if a is not None and b else None


def print_fleet_table(results: list[dict]) -> None:
    """ping, first run, re-run(s), rotation and the ideal at each fork count, side by side."""
    rows = _with_device_keygen(results)
    if not rows:
        return
    summaries = fleet_summaries(rows)
    first, ideal0 = rows[0], summaries[0]["ideal"]
    quota = first.get("device_cpu_percent")
    print()
    print(f"side by side: N={first['hosts']}, "
          + (f"each device {quota:g} % of a core (cgroup CPU quota)" if quota else "devices without a CPU quota")
          + f", cores={first['cores']}, RSA-{first.get('key_size', 4096)}, median of {first['repeat']}")
    kg = first["runs"]["device_keygen"][0]
    per_key = ideal0["device_keygen_cpu_per_key_s"] or [0.0, 0.0, 0.0]
    print(f"device keygen, all {first['hosts']} devices at once{' in their quotas' if quota else ''}: slowest "
          f"{_cell(ideal0['device_keygen_slowest_s'], '.1f', 0)} s wall; CPU per key median {per_key[0]:.2f} s "
          f"({per_key[1]:.2f}-{per_key[2]:.2f}) with {kg['python']} (cryptography {kg['cryptography']})")
    c = ideal0["controller_cpu_per_host_s"]
    if c is not None:
        print(f"ideal = slowest device keygen + ping + N x controller CPU per host / cores, with {c:.3f} s CPU per "
              f"host (the first run's at forks {ideal0['controller_cpu_from_forks']}, the lowest measured)")
    print("own key = the run's own slowest key (the fleet report's keygen_ms: the device's making, "
          "background or inline); the run's wall beyond it is what the run adds to its slowest device")
    print(f"{'forks':>6}  {'run':<12}{'median s':>10}{'x ping':>9}{'x ideal':>9}{'own key s':>11}{'beyond s':>10}"
          f"{'ctrl cpu/host s':>17}{'device cpu s':>14}{'throttled s':>13}")
    for r, summary in zip(rows, summaries, strict=True):
        for label, v in summary["side_by_side"].items():
            print(f"{r['forks']:>6}  {label:<12}{v['wall_s']:>10.2f}{_cell(v['x_ping'], '.2f', 9)}"
                  f"{_cell(v['x_ideal'], '.2f', 9)}{_cell(v.get('own_slowest_key_s'), '.1f', 11)}"
                  f"{_cell(v.get('beyond_own_key_s'), '.1f', 10)}"
                  f"{_cell(v['controller_cpu_per_host_s'], '.3f', 17)}"
                  f"{_cell(v['device_cpu_s'], '.2f', 14)}{_cell(v['device_throttled_s'], '.1f', 13)}")
        i = summary["ideal"]
        if i["s"] is not None:
            terms = (f"= {i['device_keygen_slowest_s']:.1f} + {i['ping_s']:.1f} + {i['hosts']} x "
                     f"{i['controller_cpu_per_host_s']:.3f} / {i['cores']}")
            print(f"{r['forks']:>6}  {'ideal':<12}{i['s']:>10.2f}{_div(i['s'], i['ping_s']):>9.2f}{1:>9.2f}"
                  f"{i['device_keygen_slowest_s']:>11.1f}  {terms}")
    probe = (first.get("ssh") or {}).get("quota_probe")
    if probe:
        print(f"quota check: a detached CPU-bound loop on {probe['user']} got {probe['share_percent']} % of a core "
              f"over {probe['nr_periods']} periods (quota {probe['quota_percent']:g} %), throttled in "
              f"{probe['nr_throttled']}, in {probe['group']}")
    print()


def print_results(results: list[dict], tasks: bool = False) -> None:
    """Every mode's tables, then the side-by-side table of the SSH runs (all fork counts)."""
    for result in results:
        print_result(result, tasks)
    print_fleet_table(results)


def print_result(result: dict, tasks: bool = False) -> None:
    """Everything about one mode's results (fresh, or read back with --report)."""
    if tasks:
        print_breakdown(result["runs"], result["hosts"])
    if result.get("module_alone") and result["module_alone"].get("profile"):
        print_profile(result["module_alone"]["profile"])
    summary = summarise(result["runs"], result["hosts"], result["cores"], result.get("module_alone"))
    print_table(summary, result["runs"], result)
    loads = result["machine"]["loadavg_samples"]
    print(f"load average (1 min) during the {result.get('connection', 'local')} runs: "
          f"{min(x[0] for x in loads):.1f}..{max(x[0] for x in loads):.1f} (median "
          f"{statistics.median(x[0] for x in loads):.1f})")
