"""A stand-in agent per host for the rotation run: a `sleep` whose pid file sits in the host's
directory (the parent of its mtls_dir). The rotation run's restart method (`command`) kills the
running one and starts a new one, so the restart, and the blackout measured up to it, is a real
restart of a real process on every host."""
from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

SECONDS = "86400"
# Run by the role as the user Ansible runs as (the device user over SSH); templated per host.
RESTART_COMMAND = (
    "sh -c 'd=$1; if [ -s \"$d/agent.pid\" ]; then kill \"$(cat \"$d/agent.pid\")\" 2>/dev/null; fi; "
    f"setsid sleep {SECONDS} </dev/null >/dev/null 2>&1 & echo $! >\"$d/agent.pid\"; "
    "date +%s.%N >>\"$d/agent-restarts.log\"' agent {{ mtls_dir | dirname | quote }}"
)
# Extra variables of the rotation run (given with -e @file).
ROTATE_VARS = {"mtls_rotate": "always", "mtls_agent_restart": "command", "mtls_agent_restart_command": RESTART_COMMAND}


def restarts(host_dir: Path) -> int:
    """How many times the stand-in agent of this host was (re)started."""
    try:
        return len((host_dir / "agent-restarts.log").read_text().splitlines())
    except OSError:
        return 0


def stop(host_dirs: list[Path]) -> int:
    """Stop the stand-in agents (by the pid in each host's pid file, only when that pid still
    runs the stand-in). Returns how many were stopped."""
    stopped = 0
    for d in host_dirs:
        try:
            pid = int((d / "agent.pid").read_text().strip())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
        except (OSError, ValueError):
            continue
        if argv == [b"sleep", SECONDS.encode()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                stopped += 1
    return stopped
