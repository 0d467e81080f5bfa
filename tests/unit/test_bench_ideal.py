"""The benchmark's side-by-side table over SSH: the ideal is the slowest device keygen + ping at
that fork count + N x the controller's CPU per host / cores, with the controller's CPU per host
taken from the first run at the fork count where it is lowest (at few forks the controller also
burns CPU waiting on slow devices); every run is set against ping and the ideal."""

from __future__ import annotations

import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import tables  # noqa: E402


def _run(label: str, wall: float, controller: float | None = None, **extra) -> dict:
    return {"label": label, "wall_s": wall, "controller_cpu_s": controller, **extra}


def _keygen(walls: list[float], cpus: list[float]) -> dict:
    per_device = [{"user": f"mtlsdev{i:03d}", "rc": 0, "wall_s": w, "cpu_s": c}
                  for i, (w, c) in enumerate(zip(walls, cpus, strict=True), 1)]
    return _run("device_keygen", max(walls), per_device=per_device)


def _result(forks: int, ping: float, provision: float, provision_ctrl: float, rerun: float) -> dict:
    keygen = [_keygen([30.0, 80.0, 50.0], [1.5, 4.0, 2.5]), _keygen([40.0, 60.0, 20.0], [2.0, 3.0, 1.0])]
    return {"hosts": 3, "cores": 2, "forks": forks, "repeat": 2, "device_cpu_percent": 5,
            "runs": {"device_keygen": keygen,
                     "ping": [_run("ping", ping, 0.3), _run("ping", ping + 2, 0.3)],
                     "provision": [_run("provision", provision, provision_ctrl,
                                        device_quota={"throttled_s": 100.0},
                                        keygen={"hosts": 3, "slowest_ms": 91500})],
                     "rerun": [_run("rerun", rerun, 0.6)]}}


def test_ideal_and_ratios_per_fork_count():
    few, many = _result(5, 40.0, 400.0, 4.5, 70.0), _result(30, 10.0, 100.0, 1.2, 16.0)
    tables.add_fleet_summaries([few, many])
    # Controller CPU per host: the lowest first run's, 1.2 s / 3 hosts at forks 30, for both rows.
    for result, ping in ((few, 41.0), (many, 11.0)):
        ideal = result["ideal"]
        assert ideal["controller_cpu_per_host_s"] == pytest.approx(0.4) and ideal["controller_cpu_from_forks"] == 30
        assert ideal["device_keygen_slowest_s"] == 70.0  # median of the repetitions' slowest (80, 60)
        assert ideal["ping_s"] == ping
        assert ideal["s"] == pytest.approx(70.0 + ping + 3 * 0.4 / 2)
        assert ideal["device_keygen_cpu_per_key_s"] == [2.25, 1.0, 4.0]
    side = few["side_by_side"]
    assert list(side) == ["ping", "provision", "rerun"]
    assert side["provision"]["x_ping"] == round(400.0 / 41.0, 3)
    assert side["provision"]["x_ideal"] == round(400.0 / few["ideal"]["s"], 3)
    assert side["provision"]["controller_cpu_per_host_s"] == pytest.approx(1.5)
    assert side["provision"]["device_throttled_s"] == 100.0
    assert side["ping"]["x_ping"] == 1.0
    # The run's own slowest key, from its report (the ideal's first term is another draw of keys).
    assert side["provision"]["own_slowest_key_s"] == 91.5 and side["rerun"]["own_slowest_key_s"] is None
    assert side["provision"]["beyond_own_key_s"] == 400.0 - 91.5 and side["rerun"]["beyond_own_key_s"] is None


def test_no_ideal_without_the_devices_keygen():
    local = {"hosts": 3, "cores": 2, "forks": 5, "repeat": 1, "runs": {"ping": [_run("ping", 4.0)]}}
    tables.add_fleet_summaries([local])
    assert "ideal" not in local and tables.fleet_summaries([local]) == []
