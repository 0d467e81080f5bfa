"""How slow is the slowest of N keys? The spread of a fleet run's floor, from measured keygens.

A run in which every device makes its key in parallel cannot end before its slowest device's
key: at P % of a core that is the slowest of N RSA generations' CPU / (P / 100). RSA key
generation draws random primes, so that term changes from run to run by more than the rest of
a run. This script resamples measured per-key CPU times (bootstrap) and prints the quantiles of
the slowest of N keys' wall time at P %, and in how many draws that key alone already takes
longer than a target (``--target 3.5 --ping 27.3``: 3.5 x ping, issue 22's bound).

    .venv/bin/python bench/keygen_draws.py --from 'bench/results/*-ssh.json' -n 30 --device-cpu 5 \\
        --ping 27.3 --target 3.5
    .venv/bin/python bench/keygen_draws.py --generate 200 -n 30 --device-cpu 5   # fresh samples

``--from`` reads the per-key CPU of every device_keygen run of the given results (one RSA-4096
key per device, the device's Python and library); ``--generate K`` makes K keys with
bench/keygen.py in /usr/bin/python3 (Debian's cryptography), one core, about 1.3 s each here.
"""
from __future__ import annotations

import argparse
import glob
import json
import random
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def samples_from_results(pattern: str, key_size: int = 4096) -> list[float]:
    """Per-key CPU seconds of every device_keygen run in the results matching ``pattern``."""
    out: list[float] = []
    for name in sorted(glob.glob(pattern)):
        try:
            result = json.loads(Path(name).read_text())
        except (OSError, ValueError):
            continue
        for mode in result.get("modes") or [result]:
            if mode.get("key_size", result.get("key_size")) != key_size:
                continue
            for run in (mode.get("runs") or {}).get("device_keygen", []):
                for device in run.get("per_device", []):
                    out.extend(float(x) for x in device.get("per_key_cpu_s", []))
    return out


def generate_samples(k: int, python: str, key_size: int) -> list[float]:
    proc = subprocess.run([python, str(BENCH / "keygen.py"), str(k), str(key_size)],
                          capture_output=True, text=True, check=True)
    return [float(x) for x in json.loads(proc.stdout)["per_key_cpu_s"]]


def slowest_of(samples: list[float], n: int, percent: float, draws: int, seed: int = 1) -> list[float]:
    """Sorted wall seconds of the slowest of ``n`` keys at ``percent`` % of a core, ``draws`` times."""
    rng = random.Random(seed)
    return sorted(max(rng.choice(samples) for _ in range(n)) * 100.0 / percent for _ in range(draws))


def quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="pattern", help="results JSON glob (device_keygen runs)")
    ap.add_argument("--generate", type=int, default=0, help="make this many keys for samples instead")
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--key-size", type=int, default=4096)
    ap.add_argument("-n", type=int, default=30, help="devices in the run")
    ap.add_argument("--device-cpu", type=float, default=5.0, help="P: each device's share of a core, %%")
    ap.add_argument("--draws", type=int, default=20000)
    ap.add_argument("--ping", type=float, help="the run's ping, seconds (with --target)")
    ap.add_argument("--target", type=float, help="a bound in x ping")
    args = ap.parse_args(argv)
    samples = (generate_samples(args.generate, args.python, args.key_size) if args.generate
               else samples_from_results(args.pattern or str(BENCH / "results" / "*-ssh.json"), args.key_size))
    if len(samples) < 2:
        print("no per-key samples: give --from results with device_keygen runs, or --generate K")
        return 1
    ordered = sorted(samples)
    walls = slowest_of(samples, args.n, args.device_cpu, args.draws)
    print(f"{len(samples)} RSA-{args.key_size} keys: CPU per key median {quantile(ordered, 0.5):.2f} s, "
          f"p90 {quantile(ordered, 0.9):.2f} s, max {ordered[-1]:.2f} s")
    print(f"the slowest of {args.n} keys at {args.device_cpu:g} % of a core, {args.draws} draws: "
          + ", ".join(f"p{int(q * 100)} {quantile(walls, q):.1f} s" for q in QUANTILES))
    if args.ping and args.target:
        bound = args.ping * args.target
        over = sum(w > bound for w in walls) / len(walls)
        print(f"{args.target:g} x ping = {bound:.1f} s: the slowest key alone takes longer in {over:.0%} of draws; "
              f"with 10 s of run beyond it, in {sum(w + 10 > bound for w in walls) / len(walls):.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
