"""Throw-away users and groups made with useradd/groupadd (root only), removed afterwards."""

from __future__ import annotations

import grp
import pwd
import secrets
import subprocess
import time


def _run(*cmd: str) -> None:
    # useradd/groupadd refuse while another process holds the lock on /etc/passwd: retry.
    for _ in range(50):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return
        if "lock" not in proc.stderr:
            break
        time.sleep(0.1)
    raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")


class Accounts:
    def __init__(self) -> None:
        self.users: list[str] = []
        self.groups: list[str] = []

    @staticmethod
    def _name(prefix: str) -> str:
        return f"{prefix}{secrets.token_hex(4)}"

    def user(self, *, groups: tuple[str, ...] = (), home: str = "/nonexistent") -> pwd.struct_passwd:
        """A user with its own private group, in ``groups`` too; no home is created."""
        name = self._name("fmu")
        cmd = ["useradd", "--no-create-home", "--home-dir", home, "--shell", "/usr/sbin/nologin",
               "--user-group", name]
        if groups:
            cmd[1:1] = ["--groups", ",".join(groups)]
        _run(*cmd)
        self.users.append(name)
        return pwd.getpwnam(name)

    def group(self, *members: str) -> grp.struct_group:
        name = self._name("fmg")
        _run("groupadd", name)
        self.groups.append(name)
        for member in members:
            _run("gpasswd", "--add", member, name)
        return grp.getgrnam(name)

    def remove(self) -> None:
        for name in reversed(self.users):
            subprocess.run(["userdel", name], capture_output=True, check=False)
        for name in reversed(self.groups):
            subprocess.run(["groupdel", name], capture_output=True, check=False)
