"""The mtls_identity module alone, without Ansible: what one device pays per run.

Usage: python bench/module_alone.py SPEC.json  -> prints one JSON line per call.
SPEC: {"calls": [{"args": {...module args...}, "profile": "path.prof" | null}, ...]}

Each call runs in a fresh Python process (as AnsiballZ does on a device): interpreter start,
imports (ansible.module_utils.basic, cryptography, requests), the module's work, exit.
Reported per call: wall and CPU (user+sys of that child process) and the module's
`action`/`changed`/`failed` (never any other result field). With "profile", the call runs
under cProfile and the stats are dumped to that path.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, runpy, sys
import ansible.module_utils
ansible.module_utils.__path__.append(sys.argv[1] + "/module_utils")
from ansible.module_utils import basic
# What AnsiballZ hands the module (legacy profile), without unittest.mock's import cost.
basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": json.loads(sys.argv[2])}).encode()
basic._ANSIBLE_PROFILE = "legacy"
prof_path = sys.argv[3] if len(sys.argv) > 3 else None
def run():
    try:
        runpy.run_path(sys.argv[1] + "/library/mtls_identity.py", run_name="__main__")
    except SystemExit:
        pass
if prof_path:
    import cProfile
    cProfile.run("run()", prof_path)
else:
    run()
"""


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def call(args: dict, profile: str | None = None) -> dict:
    cmd = [sys.executable, "-c", CHILD, str(REPO), json.dumps(args)]
    if profile:
        cmd.append(profile)
    cpu0, t0 = _cpu(), time.perf_counter()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    result = {}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
                break
            except ValueError:
                continue
    out = {"wall_s": round(wall, 4), "cpu_s": round(cpu, 4), "rc": proc.returncode,
           "action": result.get("action"), "changed": result.get("changed"), "failed": result.get("failed", False)}
    if result.get("failed"):
        out["msg"] = str(result.get("msg", ""))[:300]
    if not result:
        out["stderr_tail"] = proc.stderr[-300:]
    return out


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    for c in spec["calls"]:
        print(json.dumps(call(c["args"], c.get("profile"))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
