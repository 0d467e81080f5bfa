# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bundle's modules run on the device without AnsiballZ: the role's background keygen pass
(mtls_prekey) and the identity task (mtls_identity).

Every AnsiballZ module imports ``ansible.module_utils.basic`` and compiles it from its zip: on
Debian 12's python3 that is most of a module's device CPU (measured with the device's
/usr/bin/python3, medians of 15: ``ansible.builtin.ping`` 142 ms, the pass as a module 199 ms,
the same pass run here 73 ms). A small board at 5 % of a core pays it 20 times over, in wall
time. So, when Ansible would pipeline the module anyway, the action sends the device one Python
script on the standard input of one command, as a pipelined module is sent: the bundle's
module_utils that the entry points import (``closure``, found from their import statements,
compressed; the device keeps their compiled code, module_utils/lean_cache.py), the options the
controller checked against the module's own argument spec (path options left for the device to
expand), and a call of the entry point's ``run_lean``, which runs
the code the module's ``main`` runs (``ENTRIES``). Same interpreter (the module's shebang,
discovery included), same environment, same become, same result handling. Anything else (async,
pipelining off, ANSIBLE_KEEP_REMOTE_FILES) runs the module. The shebang comes from
``_configure_module``, which also formats the module's AnsiballZ wrapper from Ansible's per-run
cache (about 5 ms of controller CPU per host, the first host building it): the one place that
resolves ``ansible_python_interpreter`` and its discovery.
"""
from __future__ import annotations

import ast
import base64
import fcntl
import hashlib
import json
import os
import tempfile
import zlib

from ansible import constants as C
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.vars.clean import remove_internal_keys

from ansible_collections.autonomy_edge.fleet_mtls.plugins import module_utils

COLLECTION = "ansible_collections.autonomy_edge.fleet_mtls"
PACKAGE = COLLECTION + ".plugins.module_utils"
# The module -> the bundle module whose run_lean(request) runs what the module's main runs.
ENTRIES = {
    "mtls_prekey": PACKAGE + ".identity.prekey",
    "mtls_identity": PACKAGE + ".runner",
}
NAMESPACES = ("ansible_collections", "ansible_collections.autonomy_edge", COLLECTION, COLLECTION + ".plugins")
CACHE_MODULE = PACKAGE + ".lean_cache"
# The modules whose lean run answers at once, outside check mode, and goes on away from the SSH
# session (a session and a fork of its own, /dev/null as its standard streams): the first pass.
# Its decision is mostly the bundle's imports, 84-150 ms of a slow board's CPU, 2-3 s at 5 % of a
# core, and a batch of forks held for it delays the next batch's keys; handed over, a pass
# session costs the board one Python start (10 ms of the session's process, 20 ms with sshd and
# the shell), and the next host's pass begins sooner. The answer is this result; what the
# device did, the identity task reports (the pass's warnings travel in the keygen's record,
# identity/prekey.py).
HANDED_OVER = {
    "mtls_prekey": {
        "changed": True, "keygen": "handed over",
        "reason": "the device decides as the identity task will and, when it needs a new key, makes it in the "
                  "background: the identity task reports what it took",
    },
}
# The device's side: the bundle's modules from the script, their code compiled once and kept
# (module_utils/lean_cache.py), namespace packages above them; then the entry point. Python 3.9+
# (the devices'), standard library only, and only its cheapest modules: importlib.abc, .util and
# base64 cost 17-25 ms of a slow board's CPU, more than the run's own work.
BOOTSTRAP = r"""
import os, sys

ANSWER = %(answer)r
if ANSWER is not None:  # HANDED_OVER: answer, and run away from the session (here if it cannot)
    try:
        middle = os.fork()
    except OSError:
        middle = -1
    if middle == 0:
        try:
            os.setsid()
            if os.fork():
                os._exit(0)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.close(null)
        except OSError:
            os._exit(1)
    elif middle > 0 and os.waitpid(middle, 0)[1] == 0:
        sys.stdout.write(ANSWER)
        sys.stdout.flush()
        os._exit(0)

import json
from importlib.machinery import ModuleSpec

KEY = %(key)r
INDEX = %(index)r
NAMESPACES = %(namespaces)r
SOURCES = %(sources)r


class Bundle:
    def __init__(self, kept):
        self.kept, self.fresh, self.sources = kept, {}, None

    def compiled(self, name):
        code = cache.code(self.kept, name)
        if code is None:
            if self.sources is None:  # decompressed only when some code was not kept
                import binascii, zlib
                self.sources = json.loads(zlib.decompress(binascii.a2b_base64(SOURCES)).decode("utf-8"))
            code = self.fresh[name] = compile(self.sources[name], INDEX[name][1], "exec")
        return code

    def find_spec(self, name, path=None, target=None):
        if name in INDEX or name in NAMESPACES:
            return ModuleSpec(name, self, is_package=name in NAMESPACES or INDEX[name][0])
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if module.__name__ in INDEX:
            exec(self.compiled(module.__name__), module.__dict__)


cache = type(sys)(%(cache_module)r)
exec(compile(%(cache_source)r, %(cache_file)r, "exec"), cache.__dict__)
bundle = Bundle(cache.load(KEY))
sys.meta_path.insert(0, bundle)
__import__(%(entry)r, fromlist=["run_lean"]).run_lean(json.loads(%(request)r))
if bundle.fresh and not %(check_mode)r:
    cache.store(KEY, bundle.kept, bundle.fresh)
"""
_SOURCES_CACHE = {}


def module_file(name):
    """(path, is_package) of the bundle's module ``name``, or None."""
    root = os.path.dirname(module_utils.__file__)
    base = os.path.join(root, *name[len(PACKAGE) + 1:].split(".")) if name != PACKAGE else root
    for path, package in ((os.path.join(base, "__init__.py"), True), (base + ".py", False)):
        if os.path.isfile(path):
            return path, package
    return None


def closure(entry):
    """{module name: (source, is_package, file name)} of ``entry`` and every bundle module it
    imports, at any depth, in any function (an import inside a function is one the device may
    run); their packages included."""
    found, todo = {}, [entry]
    while todo:
        name = todo.pop()
        located = None if name in found else module_file(name)
        if located is None:
            continue
        path, package = located
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
        found[name] = (source, package, "%s/%s" % (name.replace(".", "/"), os.path.basename(path)))
        parent = name.rpartition(".")[0]
        if parent.startswith(PACKAGE):
            todo.append(parent)
        for node in ast.walk(ast.parse(source, path)):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names if alias.name.startswith(PACKAGE)]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
                todo.append(node.module)
                todo += ["%s.%s" % (node.module, alias.name) for alias in node.names]  # submodules
    return found


def bundle():
    """What every lean script ships of the bundle, for every entry point (one set, so the device
    keeps one compiled copy for both runs): ``index`` {module: [is_package, file name]},
    ``sources`` {module: source} compressed and encoded, ``key``, their hash, which names the
    device's compiled copy, and ``cache_source``, module_utils/lean_cache.py, which the script
    runs first. Built once per run (the AST walk and compression cost about 100 ms of
    controller CPU; when each worker of a batch built it, the run's first batch of forks cost 2-3
    s of CPU) and kept, as Ansible keeps its AnsiballZ builds, in the run's local temporary
    directory, which every worker of the run shares; keyed by the bundle's files (name, size,
    modification time)."""
    root = os.path.dirname(module_utils.__file__)
    stamp = hashlib.sha256(repr(sorted(_stamps(root))).encode("utf-8")).hexdigest()[:20]
    if stamp not in _SOURCES_CACHE:
        path = os.path.join(C.DEFAULT_LOCAL_TMP, "fleet_mtls_lean_run-" + stamp)
        _SOURCES_CACHE[stamp] = json.loads(_cached(path, sorted(set(ENTRIES.values()))))
    return _SOURCES_CACHE[stamp]


def _stamps(root):
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                st = os.stat(os.path.join(directory, name))
                yield os.path.relpath(os.path.join(directory, name), root), st.st_size, st.st_mtime_ns


def _cached(path, entries):
    """The blob kept at ``path``, built by the run's first worker that needs it: the others (a
    whole batch of forks starts at once) wait for that build under a lock instead of each
    building it too."""
    blob = _read(path)
    if blob is not None:
        return blob
    try:
        lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError:
        return _build(entries)  # no cache here: this host builds its own
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        blob = _read(path)
        if blob is None:
            blob = _build(entries)
            _write(path, blob)
        return blob
    finally:
        os.close(lock)  # and with it the lock


def _read(path):
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read()
    except OSError:
        return None


def _build(entries):
    """The bundle (``bundle``) of ``entries``' closures, as JSON text."""
    found = {}
    for entry in entries:
        found.update(closure(entry))
    raw = json.dumps({name: found[name][0] for name in sorted(found)}).encode("utf-8")
    sources = base64.b64encode(zlib.compress(raw, 6)).decode("ascii")
    path, _package = module_file(CACHE_MODULE)
    with open(path, encoding="utf-8") as handle:
        cache_source = handle.read()
    return json.dumps({"key": hashlib.sha256(sources.encode("ascii")).hexdigest()[:32], "sources": sources,
                       "index": {name: [found[name][1], found[name][2]] for name in sorted(found)},
                       "cache_source": cache_source})


def _write(path, blob):
    """Whole, renamed into place: a reader never sees part of it."""
    try:
        fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".lean-")
    except OSError:
        return  # no cache: the next host builds it again
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(blob)
        os.replace(temporary, path)
    except OSError:
        os.unlink(temporary)


def checked_options(argument_spec, args):
    """(the options with their defaults, errors) as AnsibleModule would have them, except that
    path options are left as given: the device expands them (``~`` is the device user's)."""
    spec = {name: dict(option, type="str") if option.get("type") == "path" else option
            for name, option in argument_spec.items()}
    result = ArgumentSpecValidator(spec).validate(args)
    return result.validated_parameters, result.error_messages


def script(module, params, check_mode):
    """The whole Python program the device runs for ``module``: never a secret in it (``run``)."""
    shipped = bundle()
    answer = None if check_mode or module not in HANDED_OVER else json.dumps(HANDED_OVER[module], sort_keys=True)
    request = json.dumps({"params": params, "check_mode": bool(check_mode), "detached": answer is not None},
                         sort_keys=True)
    return (BOOTSTRAP % {
        "key": shipped["key"], "index": shipped["index"], "namespaces": NAMESPACES, "sources": shipped["sources"],
        "cache_module": CACHE_MODULE, "cache_source": shipped["cache_source"],
        "cache_file": CACHE_MODULE.replace(".", "/") + ".py",
        "entry": ENTRIES[module], "request": request, "check_mode": bool(check_mode), "answer": answer,
    }).encode("utf-8")


def usable(action, wrap_async):
    """Whether ``action``'s module would be pipelined: then it may run lean."""
    return not wrap_async and action._is_pipelining_enabled("new")


def carries_secret(argument_spec, module_args):
    """Whether the module's arguments hold a no_log option's value (the API headers): never sent
    in a script. (The actions keep the headers off the arguments anyway: they go in a 0600 file
    the run reads, and the device masks what it read, module_utils/lean.py.)"""
    return any(module_args.get(name) for name, option in argument_spec.items() if option.get("no_log"))


def run(action, module_name, argument_spec, module_args, task_vars):
    """Run ``module_name`` (a key of ENTRIES, fully qualified or not) on the device for
    ``action`` (an ActionBase) and return its result as ``_execute_module`` returns a module's.
    Never with a no_log value in the arguments (``carries_secret``): the script would hold it."""
    short = module_name.rsplit(".", 1)[-1]
    if carries_secret(argument_spec, module_args):
        raise ValueError("%s: a run with the API headers is not run lean" % short)
    params, errors = checked_options(argument_spec, {k: v for k, v in module_args.items()
                                                     if not k.startswith("_ansible_")})
    if errors:
        return {"failed": True, "msg": "; ".join(errors)}
    built = action._configure_module(module_name=module_name, module_args=dict(module_args), task_vars=task_vars)
    if len(built) == 2:  # ansible-core 2.19: (module bits, path)
        shebang, profile = built[0].shebang, (built[0].serialization_profile,)
    else:  # 2.14-2.18: (style, shebang, data, path)
        shebang, profile = built[1], ()
    action._used_interpreter = shebang
    # "python3 - mtls_prekey": the script from stdin, named as the module would be.
    cmd = action._connection._shell.build_module_command(action._compute_environment_string(), shebang, "-",
                                                         arg_path=short).strip()
    res = action._low_level_execute_command(cmd, sudoable=True, in_data=script(short, params, action._task.check_mode))
    data = action._parse_returned_data(res, *profile)
    remove_internal_keys(data)
    if action._discovered_interpreter_key:
        data.setdefault("ansible_facts", {})[action._discovered_interpreter_key] = action._discovered_interpreter
    return data
