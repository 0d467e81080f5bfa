"""The benchmark's blackout distribution and the run's own keys (read_keygen), read from a fleet
report in the shape the report role writes ({"summary": ..., "hosts": [rows]}): median / p90 /
max over every host of every rotation run, hosts without a figure not counted, "n/a" while the
report has no blackout_ms."""

from __future__ import annotations

import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import tables  # noqa: E402


def _report(path: pathlib.Path, rows: list[dict]) -> pathlib.Path:
    path.write_text(json.dumps({"summary": {"hosts": len(rows)}, "hosts": rows}))
    return path


def test_distribution_over_all_rotation_runs(tmp_path):
    first = tables.read_blackout(_report(tmp_path / "a.json", [
        {"host": f"dev{i:03d}", "blackout_ms": ms} for i, ms in enumerate((120, 80, 400, 95, 3100), 1)]))
    # A host without a figure (null: not restarted, or failed) is read but not counted.
    second = tables.read_blackout(_report(tmp_path / "b.json", [
        {"host": "dev001", "blackout_ms": 110}, {"host": "dev002", "blackout_ms": None},
        {"host": "dev003", "blackout_ms": 90.5}, {"host": "dev004", "blackout_ms": 101},
        {"host": "dev005", "blackout_ms": 130}]))
    summary = tables.blackout_summary([{"blackout": first}, {"blackout": second}])
    assert summary["hosts"] == 10 and summary["counted"] == 9
    # sorted: 80 90.5 95 101 110 120 130 400 3100
    assert summary["median_ms"] == 110
    assert summary["p90_ms"] == 3100  # nearest rank: the 9th of 9 (ceil(0.9 * 9) = 9)
    assert summary["max_ms"] == 3100
    assert "note" not in summary


def test_a_report_without_blackout_ms_says_not_available(tmp_path):
    read = tables.read_blackout(_report(tmp_path / "r.json", [{"host": "dev001", "action": "rotated"}]))
    assert read == {"hosts": 1, "values_ms": [], "field_present": False}
    summary = tables.blackout_summary([{"blackout": read}])
    assert summary["counted"] == 0 and summary["median_ms"] is None
    assert summary["note"] == "n/a (the report has no blackout_ms)"


def test_a_missing_report_is_named_not_raised(tmp_path):
    read = tables.read_blackout(tmp_path / "absent.json")
    assert read["hosts"] == 0 and "absent.json" in read["error"]
    assert tables.blackout_summary([{"blackout": read}])["note"] == tables.NO_BLACKOUT


def test_the_runs_own_keys_are_read_from_the_report(tmp_path):
    """The keygen columns: background or inline, the making's wall and the identity call's wait;
    a host that made no key (unchanged, failed) is not counted."""
    read = tables.read_keygen(_report(tmp_path / "k.json", [
        {"host": "dev001", "keygen": "background", "keygen_ms": 61000, "keygen_wait_ms": 12000},
        {"host": "dev002", "keygen": "background", "keygen_ms": 95500, "keygen_wait_ms": 0},
        {"host": "dev003", "keygen": "inline", "keygen_ms": 30000, "keygen_wait_ms": None},
        {"host": "dev004", "keygen": "", "keygen_ms": None, "keygen_wait_ms": None}]))
    assert read == {"hosts": 4, "background": 2, "inline": 1, "slowest_ms": 95500, "median_ms": 61000,
                    "wait_max_ms": 12000}
    assert tables.read_keygen(tmp_path / "absent.json")["hosts"] == 0
