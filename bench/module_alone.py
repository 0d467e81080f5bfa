"""The mtls_identity module alone, without Ansible: what one device pays per run.

Usage: python bench/module_alone.py SPEC.json  -> prints one JSON line per call.
SPEC: {"calls": [{"args": {...}, "profile": "path.prof" | null, "module": "path.py" | null,
                  "python": "/usr/bin/python3" | null, "ansible_path": "dir" | null}, ...]}

Each call runs in a fresh Python process (as AnsiballZ does on a device): interpreter start,
imports (ansible.module_utils.basic, cryptography, requests), the module's work, exit. The
module and the bundle's module_utils are compiled from source on every call, as from
AnsiballZ's zip; installed libraries use their byte-code caches, as on a device.
Reported per call: wall and CPU (user+sys of that child process), the CPU spent inside
rsa.generate_private_key (wrapped by the harness) and the rest, and the module's
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
import importlib.abc, importlib.machinery, importlib.util, json, os, runpy, sys, time
COLLECTION = "ansible_collections.autonomy_edge.fleet_mtls"  # sys.argv[1]: the repository, i.e. the collection
PACKAGE = COLLECTION + ".plugins.module_utils"


class _NoCacheLoader(importlib.machinery.SourceFileLoader):
    # AnsiballZ ships the bundle's module_utils as source in a zip: compiled on every run.
    def get_code(self, fullname):
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


class _BundleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name in ("ansible_collections", "ansible_collections.autonomy_edge", COLLECTION, COLLECTION + ".plugins"):
            spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
            parts = name.split(".")[3:]  # [] for the collection itself, ["plugins"]
            spec.submodule_search_locations = [os.path.join(sys.argv[1], *parts)] if "fleet_mtls" in name else []
            return spec
        if name != PACKAGE and not name.startswith(PACKAGE + "."):
            return None
        base = os.path.join(sys.argv[1], "plugins", "module_utils", *name.split(".")[5:])
        for candidate, pkg in ((os.path.join(base, "__init__.py"), True), (base + ".py", False)):
            if os.path.exists(candidate):
                loader = _NoCacheLoader(name, candidate)
                return importlib.util.spec_from_file_location(
                    name, candidate, loader=loader, submodule_search_locations=[base] if pkg else None)
        return None


sys.meta_path.insert(0, _BundleFinder())
from ansible.module_utils import basic
# What AnsiballZ hands the module (legacy profile), without unittest.mock's import cost.
basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": json.loads(sys.argv[2])}).encode()
basic._ANSIBLE_PROFILE = "legacy"
module_path = sys.argv[3]
prof_path = sys.argv[4] if len(sys.argv) > 4 else None
# Charge key generation separately: the CPU spent inside rsa.generate_private_key.
keygen = [0.0, 0]
try:
    from cryptography.hazmat.primitives.asymmetric import rsa
    _generate = rsa.generate_private_key
    def _timed(*a, **kw):
        t = time.process_time()
        try:
            return _generate(*a, **kw)
        finally:
            keygen[0] += time.process_time() - t
            keygen[1] += 1
    rsa.generate_private_key = _timed
except ImportError:
    pass
def run():
    try:
        runpy.run_path(module_path, run_name="__main__")
    except SystemExit:
        pass
if prof_path:
    import cProfile
    cProfile.run("run()", prof_path)
else:
    run()
sys.stderr.write("\nBENCH_KEYGEN %f %d\n" % (keygen[0], keygen[1]))
"""


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def call(args: dict, profile: str | None = None, module: str | None = None, python: str | None = None,
         ansible_path: str | None = None) -> dict:
    """One module run in a fresh process; module: a module file (default plugins/modules/mtls_identity.py).
    python: the interpreter (default this one); ansible_path: a directory holding only an
    `ansible` package, for an interpreter without Ansible (a device's /usr/bin/python3: AnsiballZ
    brings ansible.module_utils, the device brings cryptography and requests)."""
    module = module or str(REPO / "plugins" / "modules" / "mtls_identity.py")
    cmd = [python or sys.executable, "-c", CHILD, str(REPO), json.dumps(args), module]
    if profile:
        cmd.append(profile)
    cpu0, t0 = _cpu(), time.perf_counter()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    if ansible_path:
        env["PYTHONPATH"] = ansible_path
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
    keygen_cpu, keys = 0.0, 0
    for line in proc.stderr.splitlines():
        if line.startswith("BENCH_KEYGEN "):
            keygen_cpu, keys = float(line.split()[1]), int(line.split()[2])
    out = {"wall_s": round(wall, 4), "cpu_s": round(cpu, 4), "keygen_cpu_s": round(keygen_cpu, 4), "keys": keys,
           "cpu_beyond_keygen_s": round(cpu - keygen_cpu, 4), "rc": proc.returncode,
           "action": result.get("action"), "changed": result.get("changed"), "failed": result.get("failed", False)}
    if result.get("failed"):
        out["msg"] = str(result.get("msg", ""))[:300]
    if not result:
        out["stderr_tail"] = proc.stderr[-300:]
    return out


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    for c in spec["calls"]:
        print(json.dumps(call(c["args"], c.get("profile"), c.get("module"), c.get("python"), c.get("ansible_path"))),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())


# Named costs: (name, predicate on (file, function)); the cost is the function's cumulative time.
PROFILE_PARTS = (
    ("imports", lambda f, fn: fn == "_find_and_load"),
    ("rsa keygen", lambda f, fn: "generate_private_key" in fn),
    ("key load", lambda f, fn: "load_pem_private_key" in fn),
    ("key serialise", lambda f, fn: "private_bytes" in fn),
    ("certificate sign", lambda f, fn: fn == "sign" and f.endswith("x509/base.py")),
    ("http (requests)", lambda f, fn: fn == "request" and f.endswith("requests/sessions.py")),
    ("fsync", lambda f, fn: "fsync" in fn),
)


def profile_parts(path: str) -> dict:
    """Split a cProfile dump of one call into named costs (cumulative seconds, under the profiler)."""
    import pstats  # noqa: PLC0415

    st = pstats.Stats(path)
    parts = {}
    for name, hit in PROFILE_PARTS:
        parts[name] = round(max((v[3] for (f, _line, fn), v in st.stats.items() if hit(f, fn)), default=0.0), 4)
    parts["total"] = round(max(v[3] for v in st.stats.values()), 4)
    return parts


def top_functions(path: str, limit: int = 15) -> list[str]:
    """The functions with the most own time (tottime), as 'seconds  file:line(function)'."""
    import pstats  # noqa: PLC0415

    st = pstats.Stats(path)
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:limit]
    return [f"{v[2]:.4f}  {f}:{line}({fn})" for (f, line, fn), v in rows]
