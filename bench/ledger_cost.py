"""What the identity ledger costs the controller per host, as the fleet grows.

Usage: python bench/ledger_cost.py [N ...]   (default: 100 1000 10000)

For a ledger of N hosts (built by one ``record_many``, as the report writes a batch), prints one
JSON line per N: the median CPU and wall milliseconds of one host's record as the mtls_identity
action makes it right after its module run (``append_status``: a line appended to the pending
file) against the locked read-modify-write of the whole ledger it replaced (``record_status``),
for a row that changes nothing (a re-run) and one that rotates; the batch write of N rows;
a reader's ``load`` and the batch's ``fold`` of the appended lines. The lock serializes every
host's record, so per-host milliseconds × N is time the whole run waits. Ratios are printed,
nothing is asserted.
"""
from __future__ import annotations

import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from tests.fixtures.collection import import_source  # noqa: E402

import_source()
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import ledger  # noqa: E402

SAMPLES = 15


def timed(fn, samples=SAMPLES):
    """Median (CPU ms, wall ms) of ``fn(i)`` over ``samples`` calls."""
    cpu, wall = [], []
    for i in range(samples):
        c, w = time.process_time(), time.perf_counter()
        fn(i)
        cpu.append((time.process_time() - c) * 1000)
        wall.append((time.perf_counter() - w) * 1000)
    return round(statistics.median(cpu), 2), round(statistics.median(wall), 2)


def rows(n):
    return {"h%06d" % i: {"agent_id": "%08X" % i, "fingerprint_sha256": "%064x" % i, "action": "created",
                          "renew_after": "2027-10-01T00:00:00Z"} for i in range(n)}


def measure(n, directory):
    path = os.path.join(directory, "ledger-%d.json" % n)
    fleet = rows(n)
    the_ledger = ledger.Ledger(path)
    c, w = time.process_time(), time.perf_counter()
    the_ledger.record_many(fleet)
    batch = (round((time.process_time() - c) * 1000, 1), round((time.perf_counter() - w) * 1000, 1))
    host = ["h%06d" % (i * 7919 % n) for i in range(SAMPLES)]

    def same(i):
        return dict(fleet[host[i]], action="unchanged")

    def rotated(i, salt):
        return dict(fleet[host[i]], action="rotated", fingerprint_sha256="%064x" % (salt + i))

    out = {"n": n, "ledger_bytes": os.path.getsize(path), "batch_write_ms": batch,
           "rewrite_unchanged_ms": timed(lambda i: the_ledger.record_status(host[i], same(i))),
           "rewrite_rotated_ms": timed(lambda i: the_ledger.record_status(host[i], rotated(i, 10 ** 9))),
           "append_unchanged_ms": timed(lambda i: the_ledger.append_status(host[i], same(i))),
           "append_rotated_ms": timed(lambda i: the_ledger.append_status(host[i], rotated(i, 2 * 10 ** 9)))}
    out["load_with_pending_ms"] = timed(lambda i: ledger.load(path), 5)
    out["fold_ms"] = timed(lambda i: the_ledger.fold(), 1)
    out["rewrite/append (rotated, wall)"] = round(out["rewrite_rotated_ms"][1] / out["append_rotated_ms"][1], 1)
    out["lock held by the rotated records of N hosts, rewrite vs append (s)"] = [
        round(n * out["rewrite_rotated_ms"][1] / 1000, 1), round(n * out["append_rotated_ms"][1] / 1000, 1)]
    return out


def main() -> int:
    sizes = [int(a) for a in sys.argv[1:]] or [100, 1000, 10000]
    with tempfile.TemporaryDirectory(prefix="fleet-mtls-ledger-cost-") as directory:
        for n in sizes:
            print(json.dumps(measure(n, directory)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
