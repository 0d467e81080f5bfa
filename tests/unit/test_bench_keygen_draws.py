"""bench/keygen_draws.py: the slowest of N keys at P % of a core, resampled from the per-key CPU
of the results' device_keygen runs (single-mode results and results with one mode per fork count)."""

from __future__ import annotations

import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import keygen_draws  # noqa: E402


def _device_keygen(*cpus: float) -> dict:
    return {"device_keygen": [{"per_device": [{"per_key_cpu_s": [c]} for c in cpus]}]}


def test_samples_come_from_every_device_keygen_run_of_the_key_size(tmp_path):
    (tmp_path / "a-ssh.json").write_text(json.dumps({"key_size": 4096, "runs": _device_keygen(1.5, 2.5)}))
    (tmp_path / "b-ssh.json").write_text(json.dumps({"key_size": 4096, "modes": [
        {"forks": 5, "runs": _device_keygen(0.5)}, {"forks": 30, "runs": _device_keygen(4.0)}]}))
    (tmp_path / "c-ssh.json").write_text(json.dumps({"key_size": 2048, "runs": _device_keygen(0.1)}))
    (tmp_path / "d-ssh.json").write_text("not json")
    samples = keygen_draws.samples_from_results(str(tmp_path / "*-ssh.json"))
    assert sorted(samples) == [0.5, 1.5, 2.5, 4.0]


def test_the_slowest_key_is_its_cpu_over_the_share_of_a_core():
    assert keygen_draws.slowest_of([1.0, 1.0], 30, 5.0, 10) == [20.0] * 10
    # Of 200 keys drawn from {1 s, 3 s}, the slowest is 3 s: 60 s at 5 %, in every draw.
    assert set(keygen_draws.slowest_of([1.0, 3.0], 200, 5.0, 50)) == {60.0}
    one = keygen_draws.slowest_of([1.0, 3.0], 1, 50.0, 400)
    assert set(one) == {2.0, 6.0} and 100 < one.count(6.0) < 300  # a single key: either, about half


def test_the_script_says_how_often_the_key_alone_misses_the_bound(tmp_path, capsys):
    (tmp_path / "r-ssh.json").write_text(json.dumps({"key_size": 4096, "runs": _device_keygen(1.0, 6.0)}))
    assert keygen_draws.main(["--from", str(tmp_path / "*.json"), "-n", "30", "--device-cpu", "5",
                              "--ping", "30", "--target", "3.5", "--draws", "200"]) == 0
    out = capsys.readouterr().out
    # The slowest of 30 draws from {1 s, 6 s} is 6 s (120 s at 5 %) but once in 2^30: over 105 s always.
    assert "2 RSA-4096 keys" in out and "takes longer in 100% of draws" in out
