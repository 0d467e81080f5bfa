"""Slow devices for the SSH fleet: each device account gets P % of one core, the way a small
board is slow (`bench/fleet.py --connection ssh --device-cpu P`).

Mechanism: one cgroup per device account under `fleet-mtls-bench/` in the cgroup v1 `cpu`
hierarchy (CFS bandwidth: `cpu.cfs_quota_us` = P % of `cpu.cfs_period_us`, no burst) and the
same group in `cpuacct` (its CPU usage, exited and detached processes included). The private
sshd runs every session through `ForceCommand exec <wrapper>`: the wrapper, running as the
device user, writes its own pid and its parent's (the connection's sshd, which encrypts and
compresses for the device) into the group's `cgroup.procs`, then execs the command the client
asked for (`$SSH_ORIGINAL_COMMAND`: Ansible's modules, sftp-server, a shell). Whatever the
session starts inherits the group, `setsid`/`nohup`/double-forked jobs included; the user can
enter only its own group (it owns that group's `cgroup.procs` and nothing else) and cannot
change the quota (root's files). A session that cannot enter its group fails instead of
running unconfined.

Why this and not the alternatives: no PAM in the private sshd (and no pam_cgroup here), no
systemd to give user slices, and cgrulesengd would move processes after they started. A login
shell wrapper would work too but changes the kept accounts; ForceCommand lives only in the
bench's own sshd_config.

cgroup v2 is not handled: there a process may move only into a group whose common ancestor
with its current group has a `cgroup.procs` the writer may write, which needs a delegated
subtree for the sshd; this machine's `cpu` controller is on v1 (hybrid layout).
"""
from __future__ import annotations

import contextlib
import os
import pwd
from pathlib import Path

GROUP = "fleet-mtls-bench"
PERIOD_US = 100_000  # the kernel's default CFS period
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _v1_mounts() -> dict[str, Path]:
    """Mount point of each cgroup v1 controller ("cpu", "cpuacct", ...) from /proc/self/mounts."""
    mounts: dict[str, Path] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            _dev, where, fstype, opts, *_ = line.split()
            if fstype == "cgroup":
                for opt in opts.split(","):
                    mounts.setdefault(opt, Path(where))
    return mounts


def unavailable() -> str | None:
    """Why device CPU quotas cannot be set here (None when they can)."""
    if os.geteuid() != 0:
        return "needs root (it creates cgroups)"
    mounts = _v1_mounts()
    if "cpu" not in mounts or "cpuacct" not in mounts:
        v2 = CGROUP_ROOT / "cgroup.controllers"
        if v2.exists() and "cpu" in v2.read_text().split():
            return ("needs the cgroup v1 cpu and cpuacct controllers; this machine has the cpu controller on "
                    "cgroup v2 (cpu.max), which the bench does not drive yet (see bench/cpuquota.py)")
        return "needs the cgroup v1 cpu and cpuacct controllers (none mounted)"
    if not (mounts["cpu"] / "cpu.cfs_quota_us").exists():
        return "the cpu controller has no CFS bandwidth control (cpu.cfs_quota_us)"
    return None


def hierarchies() -> list[Path]:
    """The distinct mount points of the cpu and cpuacct controllers (one when co-mounted; none
    without cgroup v1)."""
    mounts = _v1_mounts()
    return list(dict.fromkeys(mounts[c] for c in ("cpu", "cpuacct") if c in mounts))


def remove_all(log=print) -> int:
    """Remove the bench's cgroups (a run's own at its end, an interrupted run's at the next
    start). Processes still inside are moved to the root group first, never killed: the bench
    stops its own (the stand-in agents) before. Returns how many were moved."""
    moved = 0
    for top in (h / GROUP for h in hierarchies()):
        if not top.is_dir():
            continue
        for group in [g for g in top.iterdir() if g.is_dir()] + [top]:
            for pid in _procs(group):
                with contextlib.suppress(OSError):  # gone meanwhile
                    (top.parent / "cgroup.procs").write_text(str(pid))
                    moved += 1
            with contextlib.suppress(FileNotFoundError):
                group.rmdir()
    if moved:
        log(f"device CPU quota: moved {moved} process(es) out of the bench's cgroups")
    return moved


def _procs(group: Path) -> list[int]:
    try:
        return [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except OSError:
        return []


class CpuQuota:
    """P % of one core for each device account; see the module docstring."""

    def __init__(self, percent: float, users: list[str]):
        if not 1 <= percent <= 100:
            raise ValueError(f"device CPU must be 1..100 % of a core, not {percent}")
        self.percent = percent
        self.quota_us = round(PERIOD_US * percent / 100)
        self.users = users
        self.cpu_root = _v1_mounts()["cpu"] / GROUP
        self.acct_root = _v1_mounts()["cpuacct"] / GROUP

    def create(self, log=print) -> None:
        remove_all(log)  # an interrupted run's groups, with its quota and its processes
        for top in (h / GROUP for h in hierarchies()):
            top.mkdir()
            for user in self.users:
                pw = pwd.getpwnam(user)
                group = top / user
                group.mkdir()
                # The user may move its own processes in here, and nothing else.
                for name in ("cgroup.procs", "tasks"):
                    os.chown(group / name, pw.pw_uid, pw.pw_gid)
        for user in self.users:
            group = self.cpu_root / user
            (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            with contextlib.suppress(FileNotFoundError):  # kernels before 5.14 have no burst
                (group / "cpu.cfs_burst_us").write_text("0")
            (group / "cpu.cfs_quota_us").write_text(str(self.quota_us))
        log(f"device CPU quota: {self.percent:g} % of a core ({self.quota_us} us per {PERIOD_US} us) for "
            f"{len(self.users)} device account(s) in {self.cpu_root}")

    def remove(self, log=print) -> None:
        remove_all(log)

    def write_wrapper(self, path: Path) -> Path:
        """The sshd ForceCommand (run as `exec <path>`): enter the device's groups, run the command."""
        procs = " ".join(f'"{root}/$USER/cgroup.procs"' for root in dict.fromkeys((self.cpu_root, self.acct_root)))
        path.write_text(f"""#!/bin/sh
# fleet-mtls bench (bench/cpuquota.py): this session and its connection's sshd enter the
# device's CPU quota, then the command the client asked for runs inside it.
read parent < /proc/$PPID/comm
for procs in {procs}; do
    echo $$ > "$procs" || {{ echo "fleet-mtls bench: cannot enter $procs" >&2; exit 125; }}
    if [ "$parent" = sshd ]; then
        echo $PPID > "$procs" || {{ echo "fleet-mtls bench: cannot move sshd into $procs" >&2; exit 125; }}
    fi
done
if [ -n "$SSH_ORIGINAL_COMMAND" ]; then
    exec "$SHELL" -c "$SSH_ORIGINAL_COMMAND"
fi
exec "$SHELL" -l
""")
        path.chmod(0o755)
        return path

    # ----------------------------------------------------------------- what the runs read
    def group_path(self, user: str) -> str:
        """The group as /proc/<pid>/cgroup names it on the cpu line."""
        return f"/{GROUP}/{user}"

    def counters(self) -> dict[str, float]:
        """Summed over the devices: CPU used (s), periods throttled, time throttled (s)."""
        usage = throttled = throttled_s = periods = 0.0
        for user in self.users:
            usage += int((self.acct_root / user / "cpuacct.usage").read_text()) / 1e9
            stat = self.cpu_stat(user)
            periods += stat["nr_periods"]
            throttled += stat["nr_throttled"]
            throttled_s += stat["throttled_time"] / 1e9
        return {"cgroup_cpu_s": usage, "nr_periods": periods, "nr_throttled": throttled,
                "throttled_s": throttled_s}

    def cpu_stat(self, user: str) -> dict[str, int]:
        lines = (self.cpu_root / user / "cpu.stat").read_text().split("\n")
        return {k: int(v) for k, v in (line.split() for line in lines if line)}

    def usage_s(self, user: str) -> float:
        return int((self.acct_root / user / "cpuacct.usage").read_text()) / 1e9

    def procs(self, user: str) -> list[int]:
        return _procs(self.cpu_root / user)

    def outside(self, pids_by_user: dict[str, list[int]]) -> list[str]:
        """The device processes that are not in their device's cpu group ("pid user comm group")."""
        escaped = []
        for user, pids in pids_by_user.items():
            for pid in pids:
                group = cpu_group_of(pid)
                # An exiting process (zombie) shows the root group in v1: it runs nothing any more.
                if group is not None and group != self.group_path(user) and not _exited(pid):
                    escaped.append(f"{pid} {user} {_comm(pid)} {group}")
        return escaped


def cpu_group_of(pid: int) -> str | None:
    """The cpu-controller cgroup of a process (None when it is gone)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _id, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
    return None


def _exited(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"
