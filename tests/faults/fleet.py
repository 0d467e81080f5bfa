"""Demo-style local fleets for the fleet-level and secret-hygiene tests.

A fleet is N inventory hosts that are all this machine (connection local), each with its own
identity directory under a scratch root, built from the demo inventory's group_vars so the
settings are the ones an operator runs ``./demo.sh`` with. Runs are real ``ansible-playbook``
invocations of the repository's playbooks, from the repository root.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import resource
import shutil
import subprocess
import time

import yaml

from tests.faults import helpers as h

REPO = h.REPO
BIN = h.PYTHON.parent


@dataclasses.dataclass
class PlayRun:
    rc: int
    stdout: str
    stderr: str
    seconds: float
    cpu_seconds: float = 0.0  # user+sys of ansible-playbook and everything it ran

    @property
    def output(self) -> str:
        return self.stdout + "\n" + self.stderr

    def tail(self, n: int = 4000) -> str:
        return f"rc={self.rc} after {self.seconds:.1f}s\n{self.output[-n:]}"


class LocalFleet:
    def __init__(self, root: pathlib.Path, service, hosts: list[str], *, key_size: int = 2048) -> None:
        self.root = root
        self.service = service
        self.hosts = list(hosts)
        self.demo_root = root / "fleet"
        self.reports = root / "reports"
        self.ansible_home = root / "ansible-home"
        self.inventory = root / "inventory"
        self.key_size = key_size
        (self.inventory / "group_vars").mkdir(parents=True)
        shutil.copy(REPO / "inventory" / "demo" / "group_vars" / "all.yml", self.inventory / "group_vars" / "all.yml")
        doc = {"all": {"children": {"demo_fleet": {"hosts": {host: {} for host in self.hosts}}}}}
        (self.inventory / "hosts.yml").write_text(yaml.safe_dump(doc))
        self.demo_root.mkdir(parents=True)

    def env(self, extra: dict | None = None) -> dict:
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        env.update(self.service.demo_env(self.demo_root))
        env.update({
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_HOME": str(self.ansible_home),
            "ANSIBLE_LOCAL_TEMP": str(self.ansible_home / "tmp"),
            "ANSIBLE_REMOTE_TEMP": str(self.ansible_home / "remote_tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_DEPRECATION_WARNINGS": "False",
            "PATH": str(BIN) + os.pathsep + os.environ.get("PATH", ""),
        })
        env.update(extra or {})
        return env

    def play(self, playbook: str, *args: str, env: dict | None = None, verbosity: int = 0,
             timeout: float = 600) -> PlayRun:
        cmd = [str(BIN / "ansible-playbook"), "-i", str(self.inventory / "hosts.yml"), f"playbooks/{playbook}",
               "-e", f"mtls_report_dir={self.reports}", "-e", f"mtls_key_size={self.key_size}", *args]
        if verbosity:
            cmd.append("-" + "v" * verbosity)
        started = time.monotonic()
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(cmd, cwd=REPO, env=self.env(env), capture_output=True, text=True, timeout=timeout,
                              check=False)
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
        return PlayRun(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started, cpu)

    # -- device side ------------------------------------------------------------------------
    def host_dir(self, host: str) -> pathlib.Path:
        return self.demo_root / host / ".mtls"

    def key(self, host: str) -> pathlib.Path:
        return self.host_dir(host) / h.KEY_NAME

    def cert(self, host: str) -> pathlib.Path:
        return self.host_dir(host) / h.CERT_NAME

    def keys(self) -> list[bytes]:
        return h.device_keys(*(self.host_dir(host) for host in self.hosts))

    def seed(self, host: str, *, days: int = 365) -> str:
        """A registered identity for ``host`` made without the playbook (quick set-up)."""
        agent_id = self.service.reserve_id()
        key = h.new_key(2048)
        cert = h.self_signed(key, agent_id, days=days)
        response = self.service.upload(agent_id, cert)
        assert response.status_code == 200, response.text
        h.write_identity(self.host_dir(host), h.key_pem(key), cert)
        return agent_id

    def report(self, name: str = "provision-report") -> dict:
        return json.loads((self.reports / f"{name}.json").read_text())

    def rows(self, name: str = "provision-report") -> dict[str, dict]:
        return {row["host"]: row for row in self.report(name)["hosts"]}
