"""The cost of one agent check on loopback, per protocol, and what the fork adds.

Run from the repository root with the venv's Python:

    .venv/bin/python bench/check_cost.py [--repeat 30]

Starts the reference service (tests/fixtures/servicectl.py: its gate is nginx optional_no_ca + the
cloud's /ws and /socket.io/ rules) with an RSA-4096 client identity registered, then measures
(wall time, median and spread of --repeat runs; CPU time of the caller and of the check's child):

  fork          the forked child alone (fork, pipe, JSON verdict, kill + reap; no network)
  tls_inline    the agent's context + TCP + TLS handshake in this process (no fork): the floor
  websocket     run_agent_check, protocol websocket (fork + handshake + /ws upgrade + close)
  socketio      run_agent_check, protocol socketio (+ Engine.IO open, CONNECT, 40{sid})
  https         run_agent_check, protocol https (+ one GET, 403 without the API key)

and prints each protocol's ratio to tls_inline. A script, never a timed assertion.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import socket
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.collection import import_source  # noqa: E402

import_source()

from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import check  # noqa: E402
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import CheckError  # noqa: E402
from tests.fixtures.check_helpers import AGENT_ID, ServiceGate, make_cert, pem, write_pair  # noqa: E402
from tests.fixtures.servicectl import ProvisioningService  # noqa: E402


def _children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # reaped children only: the check's
    return usage.ru_utime + usage.ru_stime


def measure(repeat, work):
    walls, cpus, child_cpus = [], [], []
    for _ in range(repeat):
        wall, cpu, child = time.perf_counter(), time.process_time(), _children_cpu()
        work()
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
        child_cpus.append((_children_cpu() - child) * 1000)
    return {"median_ms": round(statistics.median(walls), 2), "min_ms": round(min(walls), 2),
            "max_ms": round(max(walls), 2), "caller_cpu_ms": round(statistics.median(cpus), 2),
            "child_cpu_ms": round(statistics.median(child_cpus), 2)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="check-cost-") as tmp:
        root = pathlib.Path(tmp)
        key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
        cert = make_cert(key, AGENT_ID, client=True, days=365)
        identity = write_pair(root / "agent" / ".mtls", cert, key)
        with ProvisioningService(root / "service") as service:
            gate = ServiceGate(service)
            gate.upload(AGENT_ID, pem(cert))
            results = run_all(args.repeat, gate, identity, str(service.ca_path))
    floor = results["tls_inline"]["median_ms"]
    for name, row in results.items():
        row["ratio_to_tls_inline"] = round(row["median_ms"] / floor, 2)
        print("%-11s median %7.2f ms  (min %7.2f, max %7.2f)  CPU caller %6.2f + child %6.2f ms  x%.2f of tls_inline"
              % (name, row["median_ms"], row["min_ms"], row["max_ms"], row["caller_cpu_ms"], row["child_cpu_ms"],
                 row["ratio_to_tls_inline"]))
    print(json.dumps(results))


def run_all(repeat, gate, identity, ca_file):
    crt, key = str(identity / "client.crt"), str(identity / "client.key")
    host, port = "127.0.0.1", int(gate.gate_url.rsplit(":", 1)[1])

    def fork_only():
        check._run_forked(lambda report: {"ok": True}, time.monotonic() + 10)

    def tls_inline():
        import os

        os.environ["SSL_CERT_FILE"] = ca_file
        context = check.agent_context(crt, key)
        with context.wrap_socket(socket.create_connection((host, port), timeout=10), server_hostname=host):
            pass

    def protocol(name):
        def run():
            try:
                check.run_agent_check(str(identity), gate.gate_url, protocol=name, trust="ca_file", ca_file=ca_file)
            except CheckError as exc:
                if not (name == "https" and exc.kind == "http_status"):
                    raise
        return run

    results = {"fork": measure(repeat, fork_only), "tls_inline": measure(repeat, tls_inline)}
    for name in ("websocket", "socketio", "https"):
        protocol(name)()  # warm-up (nginx worker, python-socketio)
        results[name] = measure(repeat, protocol(name))
    return results


if __name__ == "__main__":
    main()
