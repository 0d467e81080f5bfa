"""The SSH fleet of `bench/fleet.py --connection ssh`: N device accounts on this machine behind a
private sshd on 127.0.0.1, reached by Ansible the way an operator reaches real devices.

- One local user per device (`mtlsdev001`, ...), each with its own home, `~/.mtls` and
  `~/.ssh/authorized_keys` holding the bench's controller key. Created idempotently with
  useradd (the comment field marks them as the bench's; a user of that name that is not is
  refused), kept between runs, removed by `bench/fleet.py --cleanup`.
- A private sshd (`/usr/sbin/sshd -D`, a child of the bench) with its own config, host key,
  pid file and log in the state dir, listening on a free port of 127.0.0.1 (another process
  taking the port first makes sshd fail to bind: it is retried on a new port). Never the
  system's sshd, never port 22.
- Inventory as an operator writes it: ansible_host 127.0.0.1, ansible_port, ansible_user per
  host, pipelining on, ssh_args with ControlMaster=auto, ControlPersist and a short
  ControlPath, the device Python /usr/bin/python3 with Debian's python3-cryptography and
  python3-requests.
- With `device_cpu` (`--device-cpu P`): every session of each device account runs in that
  device's CPU quota, P % of one core (bench/cpuquota.py: a cgroup entered by an sshd
  ForceCommand wrapper), checked at the start by a detached CPU-bound job on one device and
  after every run by the group of every device process.

Every measured run starts without connections and ends by closing its masters (`end_run`): a
run pays its own connection set-up, as an operator's separate run does, and its CPU can be
counted. The controller side is ansible-playbook's process tree (RUSAGE_CHILDREN) plus the
detached ssh masters (read from /proc before they are closed); the device side is what the
device users' processes used (their ssh sessions, with the shells and modules they reaped),
read before the connections close (their CPU never reaches sshd's own accounting: the
privileged monitor of a connection exits without waiting for its session).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import agents
import cpuquota
from fleet_inventory import Inventory, write_inventory

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
DEVICE_PYTHON = "/usr/bin/python3"
USER_PREFIX = "mtlsdev"
USER_COMMENT = "fleet-mtls bench device"
# Long enough that a host's master outlives the longest task of a 50-host run on 2 cores (the
# host waits for the whole fleet between two of its tasks); the bench closes the masters after
# each run anyway.
CONTROL_PERSIST = "5m"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# One SSH fleet at a time on a machine: the device users, their homes and cgroups are shared.
LOCK = Path("/run/lock/fleet-mtls-bench.lock")
KEYGEN = Path(__file__).resolve().parent / "keygen.py"


def unavailable() -> str | None:
    """Why the SSH fleet cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "needs root (it creates one local user per device and runs a private sshd)"
    tools = ((SSHD, "openssh-server"), (SFTP_SERVER, "openssh-sftp-server"), ("useradd", "passwd"),
             ("userdel", "passwd"), ("ssh", "openssh-client"), ("ssh-keygen", "openssh-client"))
    for tool, package in tools:
        path = tool if tool.startswith("/") else shutil.which(tool)
        if not path or not os.access(path, os.X_OK):
            return f"needs {tool} (apt-get install {package})"
    return None


def user_names(n: int) -> list[str]:
    width = max(3, len(str(n)))
    return [f"{USER_PREFIX}{i:0{width}d}" for i in range(1, n + 1)]


def _bench_users() -> list[pwd.struct_passwd]:
    return [p for p in pwd.getpwall() if p.pw_name.startswith(USER_PREFIX) and p.pw_gecos == USER_COMMENT]


# --------------------------------------------------------------------------- /proc
def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 is the state)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _cpu_with_reaped(pid: int) -> float | None:
    """utime+stime of a process plus what its reaped children (recursively) used."""
    f = _stat(pid)
    return None if f is None else sum(int(x) for x in f[11:15]) / CLK_TCK


def _own_cpu(pid: int) -> float:
    f = _stat(pid)
    return 0.0 if f is None else (int(f[11]) + int(f[12])) / CLK_TCK


def _uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


# --------------------------------------------------------------------------- the fleet
class SshFleet:
    """Device accounts + private sshd + controller key; see the module docstring."""

    name = "ssh"
    python = DEVICE_PYTHON

    def __init__(self, root: Path, n: int, log=print, device_cpu: float | None = None, rtt_ms: float = 0.0):
        self.root = root  # inventories and fleet reports; sshd's files in root/state
        self.state = root / "state"
        self.n = n
        self.log = log
        self.users = user_names(n)
        self.homes: dict[str, Path] = {}
        self.uids: list[int] = []
        self.port: int | None = None
        self.sshd: subprocess.Popen | None = None
        self.key = self.state / "controller_ed25519"
        self.known_hosts = self.state / "known_hosts"
        # A short runtime dir whatever the state dir: the ControlPath (unix socket paths are
        # limited to ~100 bytes) and the files the device users must read (the service's CA).
        self.runtime = Path(tempfile.mkdtemp(prefix="mtls-ssh-", dir="/tmp"))
        self.runtime.chmod(0o711)
        self.control_dir = self.runtime / "cp"
        self.control_dir.mkdir(mode=0o700)
        self._device_mark = 0.0
        self.login_checked = False
        self._lock: int | None = None
        self.quota = cpuquota.CpuQuota(device_cpu, self.users) if device_cpu else None
        self.rtt_ms = rtt_ms  # a WAN's round trip between the controller and the devices (latency_relay.py)
        self._quota_mark: dict[str, float] = {}
        self.quota_probe: dict | None = None

    # ----------------------------------------------------------------- set-up
    def start(self) -> SshFleet:
        self._take_lock()
        self.state.mkdir(parents=True, exist_ok=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleet-mtls bench controller",
              "-f", str(self.key)], skip_if=self.key)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.state / "ssh_host_ed25519_key")],
             skip_if=self.state / "ssh_host_ed25519_key")
        self.ensure_users()
        if self.quota:
            self.quota.create(self.log)
        elif self._lock is not None:
            cpuquota.remove_all(self.log)  # an interrupted slow-device run's groups
        self._start_sshd()
        self._check_login()
        if self.quota:
            self.quota_probe = self.probe_quota()
        return self

    def _take_lock(self) -> None:
        self._lock = take_lock()

    def ensure_users(self) -> None:
        created = 0
        pubkey = Path(f"{self.key}.pub").read_text()
        for name in self.users:
            try:
                pw = pwd.getpwnam(name)
            except KeyError:
                # Password "*": no password login, but not a locked account ("!"), which sshd
                # without PAM refuses even for keys.
                _run(["useradd", "--create-home", "--home-dir", f"/home/{name}", "--shell", "/bin/sh",
                      "--user-group", "--password", "*", "--comment", USER_COMMENT, name])
                pw = pwd.getpwnam(name)
                created += 1
            if pw.pw_gecos != USER_COMMENT:
                raise SystemExit(f"user {name} exists and is not a bench device (comment {pw.pw_gecos!r}): "
                                 "remove it or run the bench elsewhere")
            self.homes[name] = Path(pw.pw_dir)
            self.uids.append(pw.pw_uid)
            _authorise(pw, pubkey)
        self.log(f"ssh fleet: {len(self.users)} device users ({created} created), {self.users[0]}..{self.users[-1]}")

    def _start_sshd(self, attempts: int = 5) -> None:
        # sshd needs its privilege separation dir; the system package creates it only at boot.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        for _ in range(attempts):
            port = _free_port()
            config = self._write_sshd_config(port)
            _run([SSHD, "-t", "-f", str(config)])
            logfile = self.state / "sshd.log"
            with open(logfile, "w") as err:
                proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=err)
            if self._wait_listening(proc, logfile, port):
                self.sshd, self.port = proc, port
                host_key = (self.state / "ssh_host_ed25519_key.pub").read_text().split()[:2]
                self.known_hosts.write_text(f"[127.0.0.1]:{port} {' '.join(host_key)}\n")
                self.log(f"ssh fleet: private sshd pid {proc.pid} on 127.0.0.1:{port} ({config})")
                return
            if "Address already in use" not in logfile.read_text():
                raise SystemExit(f"sshd did not start:\n{logfile.read_text()[-2000:]}")
            self.log(f"ssh fleet: port {port} was taken before sshd bound it; retrying")
        raise SystemExit(f"sshd could not bind a free port in {attempts} attempts")

    @staticmethod
    def _wait_listening(proc: subprocess.Popen, logfile: Path, port: int, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if f"Server listening on 127.0.0.1 port {port}" in logfile.read_text():
                return True
            if proc.poll() is not None:
                return False
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        raise SystemExit(f"sshd did not listen within {timeout:.0f}s:\n{logfile.read_text()[-2000:]}")

    def _write_sshd_config(self, port: int) -> Path:
        config = self.state / "sshd_config"
        config.write_text("\n".join([
            "# Private sshd of the fleet-mtls benchmark (bench/sshfleet.py): bench device users only.",
            f"ListenAddress 127.0.0.1:{port}",
            f"HostKey {self.state / 'ssh_host_ed25519_key'}",
            f"PidFile {self.state / 'sshd.pid'}",
            "AuthorizedKeysFile .ssh/authorized_keys",
            f"AllowUsers {USER_PREFIX}*",
            "PermitRootLogin no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            # forks hosts connect at once: the default MaxStartups 10:30:100 drops some of them.
            "MaxStartups 200:30:400",
            "LogLevel INFO",
            f"Subsystem sftp {SFTP_SERVER}",
            *([f"ForceCommand exec {self.quota.write_wrapper(self.runtime / 'device-session')}"]
              if self.quota else []),
            "",
        ]))
        return config

    def _check_login(self) -> None:
        user = self.users[0]
        proc = subprocess.run(["ssh", *self.ssh_options(), "-o", "ControlMaster=no", "-p", str(self.port),
                               f"{user}@127.0.0.1", "id -un"], capture_output=True, text=True, timeout=30,
                              check=False)
        if proc.returncode != 0 or proc.stdout.strip() != user:
            raise SystemExit(f"ssh {user}@127.0.0.1:{self.port} failed: {proc.stderr.strip()}\n"
                             f"{(self.state / 'sshd.log').read_text()[-1500:]}")
        self.login_checked = True

    def ssh(self, user: str, command: str, **popen) -> subprocess.Popen:
        """One session of a device account on its own connection (not Ansible's masters)."""
        return subprocess.Popen(["ssh", *self.ssh_options(), "-o", "ControlMaster=no", "-o", "ControlPath=none",
                                 "-p", str(self.port), f"{user}@127.0.0.1", command], **popen)

    def probe_quota(self, min_periods: int = 10, min_throttled: int = 3, bound_s: float = 60.0) -> dict:
        """Proof that the quota holds a detached job: start a CPU-bound loop on the first device
        with setsid + nohup from a session that then ends, wait (bounded) until its group has
        run `min_periods` CFS periods and been throttled in `min_throttled` of them, read the
        group's counters, then stop the loop. share = cgroup CPU / (periods x period)."""
        user = self.users[0]
        stat0, usage0 = self.quota.cpu_stat(user), self.quota.usage_s(user)
        loop = "while :; do :; done"
        proc = self.ssh(user, f"setsid nohup sh -c '{loop}' </dev/null >/dev/null 2>&1 & echo $!",
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate(timeout=60)
        if proc.returncode != 0 or not out.strip().isdigit():
            raise SystemExit(f"device CPU quota probe: ssh {user} failed: {err.strip()}")
        pid = int(out.strip())  # setsid's, which becomes nohup then the loop (exec, same pid)
        try:
            deadline = time.monotonic() + bound_s
            while _cmdline(pid) != ["sh", "-c", loop]:  # slow at a small quota
                if time.monotonic() > deadline or _uid(pid) is None:
                    raise SystemExit(f"device CPU quota probe: pid {pid} did not become the probe's loop")
                time.sleep(0.05)
            group, sid = cpuquota.cpu_group_of(pid), _sid(pid)
            while time.monotonic() < deadline:
                stat = self.quota.cpu_stat(user)
                if (stat["nr_periods"] - stat0["nr_periods"] >= min_periods
                        and stat["nr_throttled"] - stat0["nr_throttled"] >= min_throttled):
                    break
                time.sleep(0.1)
            stat, usage = self.quota.cpu_stat(user), self.quota.usage_s(user)
        finally:
            # The loop, whatever of setsid -> nohup -> sh it has become, and its group (setsid's).
            if _uid(pid) == pwd.getpwnam(user).pw_uid:
                for kill in (os.kill, os.killpg):
                    with contextlib.suppress(ProcessLookupError):
                        kill(pid, 9)
        periods = stat["nr_periods"] - stat0["nr_periods"]
        probe = {"user": user, "pid": pid, "group": group, "in_group": group == self.quota.group_path(user),
                 "detached": sid == pid, "quota_percent": self.quota.percent, "cgroup_cpu_s": round(usage - usage0, 4),
                 "nr_periods": periods, "nr_throttled": stat["nr_throttled"] - stat0["nr_throttled"],
                 "throttled_s": round((stat["throttled_time"] - stat0["throttled_time"]) / 1e9, 3),
                 "share_percent": round((usage - usage0) / (periods * cpuquota.PERIOD_US / 1e6) * 100, 2)
                 if periods else None}
        self.log(f"device CPU quota probe on {user}: a detached CPU-bound loop in {group}, "
                 f"{probe['share_percent']} % of a core over {periods} periods, throttled in {probe['nr_throttled']}")
        if not probe["in_group"]:
            raise SystemExit(f"device CPU quota probe: the detached loop ran in {group}, not in its device's group")
        return probe

    def keygen_on_devices(self, bits: int) -> list[dict]:
        """One RSA generation on every device at once (bench/keygen.py with the device's Python,
        each in its quota as the fleet would): per device its keygen's wall and CPU."""
        script = self.runtime / "keygen.py"
        shutil.copyfile(KEYGEN, script)
        script.chmod(0o644)
        procs = {user: self.ssh(user, f"{DEVICE_PYTHON} {script} 1 {bits}", stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for user in self.users}
        results = []
        for user, proc in procs.items():
            out, err = proc.communicate()
            try:
                data = json.loads(out)
            except ValueError:
                data = {"error": (err or out).strip()[-300:]}
            results.append({"user": user, "rc": proc.returncode, **data})
        return results

    def proxy_options(self) -> list[str]:
        """The playbooks' SSH connections through latency_relay.py, ``rtt_ms`` per round trip."""
        if not self.rtt_ms:
            return []
        relay = Path(__file__).resolve().parent / "latency_relay.py"
        return ["-o", f"'ProxyCommand={sys.executable} {relay} {self.rtt_ms / 2:g} %h %p'"]

    def ssh_options(self) -> list[str]:
        return ["-i", str(self.key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes"]

    # ----------------------------------------------------------------- what fleet.py uses
    def inventory(self, svc, kind: str, rep: int | str | None, settings: dict) -> Inventory:
        """The same devices for every run; a first run (ours, base) gets them without ~/.mtls."""
        if kind in ("ours", "base"):
            self.reset_identities()
        connection, hosts = self.inventory_vars()
        base = self.root / (kind if rep is None else f"{kind}-{rep}")
        return write_inventory(base / "inventory.yml", svc, self.device_readable(svc.ca_path), connection, hosts,
                               settings)

    @staticmethod
    def ansible_path(scratch: Path) -> str:
        """A dir holding only the `ansible` package (a link to the controller's), for the module
        alone: what AnsiballZ brings to a device, without the controller's other libraries."""
        import ansible  # noqa: PLC0415

        shim = scratch / "device-pythonpath"
        shim.mkdir(parents=True, exist_ok=True)
        if not (shim / "ansible").exists():
            (shim / "ansible").symlink_to(Path(ansible.__file__).parent)
        return str(shim)

    def inventory_vars(self) -> tuple[dict, dict[str, dict]]:
        """(connection variables for all hosts, per-host variables by inventory name)."""
        common = {
            "ansible_connection": "ssh",
            "ansible_host": "127.0.0.1",
            "ansible_port": self.port,
            "ansible_python_interpreter": DEVICE_PYTHON,
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_pipelining": True,
            # Ansible's default ssh_args plus a ControlPath of our own (short, and closed by us).
            "ansible_ssh_args": f"-C -o ControlMaster=auto -o ControlPersist={CONTROL_PERSIST} "
                                f"-o ControlPath={self.control_dir}/%C",
            "ansible_ssh_common_args": " ".join(self.ssh_options()[2:] + self.proxy_options()),
        }
        width = max(3, len(str(self.n)))
        hosts = {}
        for i, user in enumerate(self.users, 1):
            hosts[f"dev{i:0{width}d}"] = {"ansible_user": user, "mtls_dir": str(self.homes[user] / ".mtls")}
        return common, hosts

    def device_readable(self, path: Path) -> Path:
        """A copy of a controller file (the service's CA) that every device user can read."""
        copy = self.runtime / path.name
        shutil.copyfile(path, copy)
        copy.chmod(0o644)
        return copy

    def host_dirs(self) -> list[Path]:
        return [self.homes[u] for u in self.users if u in self.homes]

    def reset_identities(self) -> None:
        """Fresh devices for a first run: no ~/.mtls, and no compiled code kept by an earlier lean
        run (~/.cache/fleet-mtls: a device the bundle never reached has none); the agents' pid
        files stay in the homes."""
        from tests.fixtures.collection import import_source  # noqa: PLC0415 - fleet.py put the repository on the path
        import_source()
        from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.lean_cache import (  # noqa: PLC0415
            DIRECTORY,
        )

        for home in self.host_dirs():
            shutil.rmtree(home / ".mtls", ignore_errors=True)
            shutil.rmtree(home.joinpath(*DIRECTORY), ignore_errors=True)

    def timer_env(self) -> dict[str, str]:
        """Lets the bench_timer callback charge the device users' CPU to each task."""
        return {"BENCH_DEVICE_UIDS": ",".join(str(u) for u in self.uids)}

    def device_cpu(self) -> float:
        """user+sys of the device users' processes (their ssh sessions, with the shells and
        modules those reaped): the device side of a run while its connections are open."""
        uids = set(self.uids)
        return sum(_cpu_with_reaped(p) or 0.0 for p in _pids() if _uid(p) in uids)

    def begin_run(self) -> None:
        self._device_mark = self.device_cpu()
        if self.quota:
            self._quota_mark = self.quota.counters()

    def end_run(self) -> dict:
        """Close the run's master connections and return the CPU the run spent outside
        ansible-playbook's own process tree: the masters' (controller) and the devices'."""
        device = self.device_cpu() - self._device_mark
        masters = [p for p in _pids() if _is_master(p, self.control_dir)]
        masters_cpu = sum(_own_cpu(p) for p in masters)
        quota = self.quota_end_run() if self.quota else {}
        self.close_masters()
        self._wait_sessions_gone()
        return {"masters": len(masters), "masters_cpu_s": round(masters_cpu, 3), "device_cpu_s": round(device, 3),
                **quota}

    def quota_end_run(self) -> dict:
        """The devices' cgroup counters over the run, and every device process that is not in
        its device's group (each one a hole in the quota), while the run's sessions are open."""
        now = self.quota.counters()
        delta = {k: round(v - self._quota_mark.get(k, 0.0), 3) for k, v in now.items()}
        by_uid = {self.uids[i]: u for i, u in enumerate(self.users)}
        pids: dict[str, list[int]] = {}
        for p in _pids():
            user = by_uid.get(_uid(p))
            if user:
                pids.setdefault(user, []).append(p)
        return {"quota": delta, "outside_quota": self.quota.outside(pids)}

    def close_masters(self) -> None:
        socks = [s for s in self.control_dir.iterdir() if s.is_socket()] if self.control_dir.exists() else []
        procs = [subprocess.Popen(["ssh", "-o", f"ControlPath={s}", "-O", "exit", "127.0.0.1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for s in socks]
        for p in procs:
            p.wait()

    def _wait_sessions_gone(self, timeout: float = 10.0) -> None:
        """Until every device session has ended: the next run starts without connections, and
        its CPU count without a session of this one."""
        uids = set(self.uids)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(_uid(p) in uids and _comm(p) == "sshd" for p in _pids()):
                return
            time.sleep(0.05)
        self.log("ssh fleet: device ssh sessions still open after the run")

    def describe(self) -> dict:
        return {"port": self.port, "sshd_pid": self.sshd.pid if self.sshd else None,
                "login_checked": self.login_checked, "sshd_exit": self.sshd.poll() if self.sshd else None,
                "users": [self.users[0], self.users[-1]], "device_python": DEVICE_PYTHON,
                "ssh_args": self.inventory_vars()[0]["ansible_ssh_args"], "pipelining": True,
                "device_cpu_percent": self.quota.percent if self.quota else None,
                "device_cpu_mechanism": (f"cgroup v1 cpu.cfs_quota_us {self.quota.quota_us} / cpu.cfs_period_us "
                                         f"{cpuquota.PERIOD_US} per device account, entered by an sshd ForceCommand "
                                         "wrapper (bench/cpuquota.py)") if self.quota else None,
                "quota_probe": self.quota_probe}

    def stop(self) -> None:
        self.close_masters()
        agents.stop(self.host_dirs())
        if self.sshd and self.sshd.poll() is None:
            self.sshd.terminate()
            try:
                self.sshd.wait(10)
            except subprocess.TimeoutExpired:
                self.sshd.kill()
                self.sshd.wait()
        shutil.rmtree(self.runtime, ignore_errors=True)
        if self._lock is None:
            return  # another bench's fleet: its cgroups are not ours to remove
        if self.quota:
            self.quota.remove(self.log)
        os.close(self._lock)
        self._lock = None


def take_lock() -> int:
    """The one-SSH-fleet-at-a-time lock (an fd; released when closed or when the bench dies)."""
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SystemExit(f"another SSH fleet benchmark holds {LOCK}: one at a time (they share the device "
                         "users and their cgroups)") from None
    return fd


def cleanup(log=print) -> int:
    """Remove every bench device user and its home, and the bench's cgroups (`bench/fleet.py --cleanup`)."""
    lock = take_lock()
    users = _bench_users()
    agents.stop([Path(p.pw_dir) for p in users])
    if not cpuquota.unavailable():
        cpuquota.remove_all(log)
    failed = 0
    for p in users:
        proc = subprocess.run(["userdel", "--remove", p.pw_name], capture_output=True, text=True, check=False)
        # userdel --remove warns (exit 12) when the mail spool does not exist: the user is gone.
        if proc.returncode not in (0, 12):
            failed += 1
            log(f"userdel {p.pw_name}: {proc.stderr.strip()}")
    log(f"removed {len(users) - failed} bench device user(s)" + (f", {failed} failed" if failed else ""))
    os.close(lock)
    return 1 if failed else 0


# --------------------------------------------------------------------------- helpers
def _run(cmd: list[str], skip_if: Path | None = None) -> None:
    if skip_if is not None and skip_if.exists():
        return
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()}")


def _authorise(pw: pwd.struct_passwd, pubkey: str) -> None:
    ssh_dir = Path(pw.pw_dir) / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(pubkey)
    for path, mode in ((ssh_dir, 0o700), (keys, 0o600)):
        os.chown(path, pw.pw_uid, pw.pw_gid)
        os.chmod(path, mode)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sid(pid: int) -> int | None:
    f = _stat(pid)
    return None if f is None else int(f[3])


def _is_master(pid: int, control_dir: Path) -> bool:
    """An ssh master of our ControlPath (it renames itself "ssh: <ControlPath> [mux]")."""
    return _comm(pid) == "ssh" and str(control_dir) in " ".join(_cmdline(pid))
