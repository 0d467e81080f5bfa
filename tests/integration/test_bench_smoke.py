"""The benchmark script runs end to end on a tiny fleet: every measured playbook does its job
(ours, the community.crypto baseline, ping), and the results JSON carries the ratios the README
reports. Timings are not asserted: benchmarks print ratios, tests check behaviour."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_smoke_run_produces_valid_ratios(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "bench/fleet.py", "--hosts", "2", "--repeat", "1",
         "--only", "provision,baseline,ping,keygen", "--scratch", str(tmp_path / "scratch"), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["problems"] == [], result["problems"]
    runs = result["runs"]
    assert [r["hosts_changed"] for r in runs["provision"]] == [2]
    assert [r["hosts_changed"] for r in runs["rotate"]] == [2]
    assert [r["hosts_changed"] for r in runs["baseline"]] == [2]
    for label in ("rerun", "rerun_lean", "baseline_rerun"):
        assert [r["changed_tasks"] for r in runs[label]] == [0], label
    # Ours registered 2 devices (rotation keeps their IDs), the baseline 2 more.
    assert result["service_registrations"] == 4
    for name in ("provision/(keygen_cpu/cores+ping)", "provision/baseline", "rerun/ping", "rerun_lean/ping",
                 "rotate/provision", "baseline_rerun/rerun"):
        assert result["ratios"][name] > 0, name
    assert "ratios (medians)" in proc.stdout and "provision/baseline" in proc.stdout
