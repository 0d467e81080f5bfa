"""Fixtures of the fault matrix: a device (an identity directory under a tmp home) bound to a
reference service, and the checks every case repeats."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest

from tests.fixtures import module_runner as h


class Device:
    """One simulated device: ``home/.mtls`` under a tmp dir, provisioned against ``service``."""

    def __init__(self, root: pathlib.Path, service, **defaults) -> None:
        self.root = root
        self.home = root / "home"
        self.path = self.home / ".mtls"
        self.work = root / "work"
        self.service = service
        self.defaults = {
            "path": str(self.path),
            "api_url": service.api_url if service is not None else "https://127.0.0.1:9",
            "ca_path": str(service.ca_path) if service is not None else None,
            "key_size": 2048,
            "timeout": 5,
            "retries": 1,
            # The matrix is about the identity transaction: the agent's files, restart and
            # check are phases of their own (tests/integration, molecule).
            "phases": ["identity"],
        }
        self.defaults.update(defaults)
        self.home.mkdir(parents=True, exist_ok=True)
        self.results: list[h.ModuleResult] = []
        self.keys_seen: list[bytes] = []

    # -- running --------------------------------------------------------------------------
    def args(self, **overrides) -> dict:
        args = dict(self.defaults)
        args.update(overrides)
        return {k: v for k, v in args.items() if v is not None}

    def run(self, *, check: bool = False, via: str | None = None, hooks: dict | None = None,
            env: dict | None = None, verbosity: int = 0, scan: bool = True, measure: bool = False,
            run_timeout: float = 180, **overrides) -> h.ModuleResult:
        """Run the module once on this device; every output is scanned for key material."""
        self.remember_keys()
        hooks = dict(hooks or {})
        usage_file = self.work / f"rusage-{len(self.results)}.json"
        if measure:
            self.work.mkdir(parents=True, exist_ok=True)
            hooks["FLEET_FAULTS_RUSAGE"] = str(usage_file)
        result = h.run_module(self.args(**overrides), workdir=self.work, check=check, via=via,
                              hooks=hooks, env=env, verbosity=verbosity, timeout=run_timeout)
        if measure:
            result.rusage = json.loads(usage_file.read_text())
        self.results.append(result)
        self.remember_keys()
        if scan:
            self.assert_no_secrets(result)
        return result

    def start(self, *, hooks: dict | None = None, check: bool = False, **overrides) -> subprocess.Popen:
        self.remember_keys()
        return h.start_module(self.args(**overrides), workdir=self.work, check=check, hooks=hooks)

    def remember_keys(self) -> None:
        for key in h.device_keys(self.path):
            if key not in self.keys_seen:
                self.keys_seen.append(key)

    def assert_no_secrets(self, result: h.ModuleResult) -> None:
        tokens = [self.service.token] if self.service is not None else []
        h.assert_no_secrets(result.output, keys=self.keys_seen, tokens=tokens, where=f"{result!r}")

    # -- files ----------------------------------------------------------------------------
    @property
    def key_path(self) -> pathlib.Path:
        return self.path / h.KEY_NAME

    @property
    def cert_path(self) -> pathlib.Path:
        return self.path / h.CERT_NAME

    def state(self) -> dict:
        return h.snapshot(self.path)

    def tree(self) -> dict:
        """Everything under the device root except the runner's own work dir."""
        return h.snapshot(self.root, ignore=("work", "work/*"))

    @property
    def agent_id(self) -> str:
        return h.cert_cn(self.cert_path)

    @property
    def fingerprint(self) -> str:
        return h.cert_fingerprint(self.cert_path)

    def seed(self, *, bits: int = 2048, days: int = 365, not_before_days: int = 0,
             register: bool = True, agent_id: str | None = None) -> str:
        """Give the device a registered identity quickly, without the module: an ID reserved on
        the service, a key and a certificate in the module's profile, uploaded, written with the
        right modes. Returns the agent ID."""
        agent_id = agent_id or self.service.reserve_id()
        key = h.new_key(bits)
        cert = h.self_signed(key, agent_id, days=days, not_before_days=not_before_days)
        if register:
            response = self.service.upload(agent_id, cert)
            assert response.status_code == 200, response.text
        h.write_identity(self.path, h.key_pem(key), cert)
        self.remember_keys()
        if register:
            self.assert_registered()
            self.service.clear_faults()  # counters start from zero for the case itself
        return agent_id

    def provision(self, **overrides) -> h.ModuleResult:
        """Give the device a registered identity (a setup step: asserts it worked)."""
        result = self.run(**overrides)
        assert not result.failed and result.result.get("action") == "created", result
        self.assert_registered()
        self.service.clear_faults()  # counters start from zero for the case itself
        return result

    # -- assertions -----------------------------------------------------------------------
    def assert_registered(self) -> None:
        """Local pair == the registry's current certificate, and the gate lets it in."""
        assert self.cert_path.is_file() and self.key_path.is_file(), os.listdir(self.path)
        agent_id = self.agent_id
        assert self.service.registrations().get(agent_id) == self.fingerprint, (
            f"registry holds {self.service.registrations().get(agent_id)} for {agent_id}, "
            f"device has {self.fingerprint}")
        status, body = self.service.whoami(self.cert_path, self.key_path)
        assert (status, body) == (200, {"id": agent_id})
        assert_modes(self.path)
        assert h.leftovers(self.path) == [], h.leftovers(self.path)

    def assert_intact(self, before: dict, *, journal_ok: bool = False) -> None:
        """The identity directory is exactly as before (a journal may be allowed)."""
        after = self.state()
        changes = h.diff_snapshots(before, after)
        if journal_ok:
            changes = {k: v for k, v in changes.items() if k not in h.journal_files(self.path)}
        assert not changes, f"identity directory changed: {changes}"


def assert_modes(path: pathlib.Path) -> None:
    st = os.lstat(path)
    assert oct(st.st_mode & 0o7777) == oct(0o700), f"dir mode {oct(st.st_mode)}"
    assert oct(os.lstat(path / h.KEY_NAME).st_mode & 0o7777) == oct(0o600)
    assert oct(os.lstat(path / h.CERT_NAME).st_mode & 0o7777) == oct(0o644)



@pytest.fixture
def registry_delta(svc):
    """Call it at the end of a test: (new reserved IDs, {id: fp} registered/changed since the start)."""
    ids_before = set(svc.reserved_ids())
    regs_before = svc.registrations()

    def delta():
        ids = [i for i in svc.reserved_ids() if i not in ids_before]
        regs = {i: fp for i, fp in svc.registrations().items() if regs_before.get(i) != fp}
        return ids, regs

    return delta


@pytest.fixture
def device(tmp_path, svc):
    return Device(tmp_path, svc)


@pytest.fixture
def make_device(tmp_path):
    """Devices bound to other services (dedicated instances) or with other defaults."""
    count = [0]

    def make(service, **defaults):
        count[0] += 1
        return Device(tmp_path / f"dev{count[0]}", service, **defaults)

    return make
