"""Fault hooks for the module's own Python process (fault tests only).

The fault tests put this directory first on PYTHONPATH of the process that runs the
module (directly through ``run_module.py`` or through Ansible's AnsiballZ wrapper), so
Python imports it at start-up.  It does nothing unless one of these variables is set:

``FLEET_FAULTS_KILL``  ``op=rename,match=client.*,nth=2,when=before[,signal=KILL]``
    Send ``signal`` (KILL, the default; INT: what Ctrl-C or ansible-playbook's interrupted
    worker sends, raised as KeyboardInterrupt; TERM) to this process before/after the nth call
    of ``op`` (``rename``: os.rename and os.replace, matched on the destination's base name;
    ``fsync``: os.fsync, matched on the file's base name; ``unlink``: os.unlink/os.remove;
    ``open``: os.open) whose base name matches the glob ``match``.  An interruption at an
    exact step of the transaction.

``FLEET_FAULTS_SLOWIO``  seconds (e.g. ``0.004``)
    Pause after every file-system call that changes a file's state (open, write, chmod,
    chown, rename, fsync, close ...), so a watcher polling the directory every
    millisecond sees every intermediate state a file goes through.

``FLEET_FAULTS_UMASK``  octal umask to run the module with (e.g. ``000``: hostile).

``FLEET_FAULTS_RUSAGE``  path: at exit, write the process's peak RSS (KiB) and CPU seconds
    there as JSON (to prove e.g. that an oversized answer was not read into memory).
"""
import fnmatch
import os
import signal
import sys
import time


def _active():
    argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "mtls_identity" in argv0 or argv0 == "run_module.py" or argv0 == "run_transaction.py"


def _parse(spec):
    out = {"op": "rename", "match": "*", "nth": "1", "when": "before"}
    for part in spec.split(","):
        if "=" in part:
            key, value = part.split("=", 1)
            out[key.strip()] = value.strip()
    out["nth"] = int(out["nth"])
    return out


def _fd_name(fd):
    try:
        return os.path.basename(os.readlink("/proc/self/fd/%d" % fd))
    except OSError:
        return ""


def _die(signum=signal.SIGKILL):
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - dying anyway
        pass
    os.kill(os.getpid(), signum)


def _base(path):
    try:
        return os.path.basename(os.fsdecode(path))
    except TypeError:
        return ""


# op -> [(module attribute, base name of the file it acts on)]
_OPS = {
    "rename": [("rename", lambda src, dst, *a, **k: _base(dst)), ("replace", lambda src, dst, *a, **k: _base(dst))],
    "fsync": [("fsync", lambda fd, *a, **k: _fd_name(fd if isinstance(fd, int) else fd.fileno()))],
    "unlink": [("unlink", lambda path, *a, **k: _base(path)), ("remove", lambda path, *a, **k: _base(path))],
    "open": [("open", lambda path, *a, **k: _base(path))],
}


def _hook(spec, variable, make_wrapper):
    """Wrap the os functions of ``op``; ``make_wrapper(func, name_of, fires)`` builds each."""
    cfg = _parse(spec)
    state = {"count": 0}

    def fires(name):
        if not fnmatch.fnmatch(name, cfg["match"]):
            return False
        state["count"] += 1
        return state["count"] == cfg["nth"]

    if cfg["op"] not in _OPS:
        raise SystemExit("%s: unknown op %r" % (variable, cfg["op"]))
    for attr, name_of in _OPS[cfg["op"]]:
        func = getattr(os, attr)
        wrapper = make_wrapper(func, name_of, fires, cfg)
        wrapper.__name__ = func.__name__
        wrapper.__doc__ = func.__doc__
        setattr(os, attr, wrapper)


def _install_kill(spec):
    def make(func, name_of, fires, cfg):
        signum = getattr(signal, "SIG" + cfg.get("signal", "KILL").upper())

        def wrapper(*args, **kwargs):
            fire = fires(name_of(*args, **kwargs))
            if fire and cfg["when"] == "before":
                _die(signum)
            result = func(*args, **kwargs)
            if fire:
                _die(signum)
            return result

        return wrapper

    _hook(spec, "FLEET_FAULTS_KILL", make)


_SLOW_NAMES = frozenset(
    (
        "open", "write", "writelines", "close", "flush", "fsync", "fdatasync", "chmod", "fchmod",
        "lchmod", "chown", "fchown", "lchown", "rename", "replace", "link", "symlink", "unlink",
        "remove", "truncate", "ftruncate", "mkdir", "mkstemp", "utime", "copyfile", "copy2",
        "copystat", "copymode", "fdopen",
    )
)


def _install_slowio(delay):
    sleep = time.sleep

    def profiler(frame, event, arg):
        if event == "c_return" and getattr(arg, "__name__", "") in _SLOW_NAMES:
            sleep(delay)

    sys.setprofile(profiler)
    import threading

    threading.setprofile(profiler)


def _install_rusage(path):
    import atexit
    import json
    import resource

    def peak_rss_kib():
        # VmHWM belongs to this address space; ru_maxrss survives execve on Linux and would
        # report the forking parent's size (a big pytest process), not the module's.
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def dump():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        with open(path, "w") as handle:
            json.dump({"maxrss_kib": peak_rss_kib(), "cpu_s": usage.ru_utime + usage.ru_stime}, handle)

    atexit.register(dump)


if _active():
    if os.environ.get("FLEET_FAULTS_RUSAGE"):
        _install_rusage(os.environ["FLEET_FAULTS_RUSAGE"])
    if os.environ.get("FLEET_FAULTS_UMASK"):
        os.umask(int(os.environ["FLEET_FAULTS_UMASK"], 8))
    if os.environ.get("FLEET_FAULTS_KILL"):
        _install_kill(os.environ["FLEET_FAULTS_KILL"])
    if os.environ.get("FLEET_FAULTS_SLOWIO"):
        _install_slowio(float(os.environ["FLEET_FAULTS_SLOWIO"]))
