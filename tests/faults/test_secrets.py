"""Secret hygiene: no key byte or token anywhere Ansible writes, and no key file ever readable
by others, not even for a millisecond.

1. Full provisioning then rotation playbooks at -vvvv with ANSIBLE_DEBUG=1, the log file, the
   junit and tree callbacks on; every byte they produced (stdout, stderr, log, callback files,
   the fleet report, the controller's ANSIBLE_HOME with its temp dirs) is scanned for
   ``PRIVATE KEY``, every base64 line (and private number) of every device key of both
   generations, and the API token.
2. A watcher thread polls the identity directory, the home around it and Ansible's temp dirs
   about every half millisecond during a create and a rotation run through Ansible, with the
   module slowed down after every file operation (so each intermediate state lasts a few ms)
   and a hostile umask 000: no file holding key material (or named as a key) may ever be
   seen with a mode other than 0600.
"""
from __future__ import annotations

import os
import pathlib
import re
import secrets
import stat
import subprocess
import threading
import time

import pytest

from tests.fixtures import module_runner as h
from tests.fixtures.local_fleet import LocalFleet
from tests.fixtures.servicectl import ProvisioningService

KEY_HEADER = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")


@pytest.fixture(scope="module")
def token_service(tmp_path_factory):
    with ProvisioningService(tmp_path_factory.mktemp("secrets-svc"), token=secrets.token_urlsafe(24)) as svc:
        yield svc


def _all_files(root: pathlib.Path):
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = pathlib.Path(dirpath, name)
            if path.is_file() and not path.is_symlink():
                yield path


DEBUG_LINE = re.compile(r"^\s*\d+ \d+\.\d+: ", re.MULTILINE)


@pytest.fixture(scope="module")
def verbose_runs(tmp_path_factory, token_service):
    """Provision then rotate three demo hosts at -vvvv with ANSIBLE_DEBUG=1, the log file and
    the junit + tree callbacks on. Returns what was produced and the keys of both generations."""
    tmp_path = tmp_path_factory.mktemp("verbose-runs")
    hosts = ["edge-a", "edge-b", "edge-c"]
    fleet = LocalFleet(tmp_path, token_service, hosts)
    captured = tmp_path / "captured"
    env = {
        "ANSIBLE_DEBUG": "1",
        "ANSIBLE_LOG_PATH": str(captured / "ansible.log"),
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.junit,ansible.builtin.tree",
        "JUNIT_OUTPUT_DIR": str(captured / "junit"),
        "ANSIBLE_CALLBACK_TREE_DIR": str(captured / "tree"),
        "JUNIT_INCLUDE_SETUP_TASKS_IN_REPORT": "True",
    }
    captured.mkdir()
    create = fleet.play("provision.yml", env=env, verbosity=4)
    assert create.rc == 0, create.tail()
    first_keys = fleet.keys()
    assert len(first_keys) == len(hosts)
    rotate = fleet.play("provision.yml", "-e", "mtls_rotate=always", env=env, verbosity=4)
    assert rotate.rc == 0, rotate.tail()
    second_keys = fleet.keys()
    assert not set(first_keys) & set(second_keys)  # really rotated: new keys everywhere
    rows = fleet.rows()
    assert {rows[host]["action"] for host in hosts} == {"rotated"}

    outputs = {"create stdout+stderr": create.output, "rotate stdout+stderr": rotate.output}
    files = {}
    for root in (captured, fleet.reports, fleet.ansible_home):
        for path in _all_files(root):
            files[str(path)] = path.read_bytes().decode("utf-8", errors="replace")
    # the scan looks at real material: debug output, the log, both callbacks and the report
    assert len(DEBUG_LINE.findall(create.output)) > 1000
    assert any(p.endswith("ansible.log") for p in files)
    assert any("/junit/" in p for p in files) and any("/tree/" in p for p in files)
    report = files[str(fleet.reports / "provision-report.json")]
    assert all(rows[host]["agent_id"] in report for host in hosts)
    return Captured(outputs, files, first_keys + second_keys, token_service.token)


class Captured(tuple):
    """(outputs, files, keys, token) that does not print its content in a failure report."""

    def __new__(cls, *items):
        return super().__new__(cls, items)

    def __repr__(self) -> str:
        return f"<captured: {len(self[0])} outputs, {len(self[1])} files, {len(self[2])} keys>"


def _problems(texts: dict, **what) -> dict:
    found = {where: h.find_secrets(text, **what) for where, text in texts.items()}
    return {where: f for where, f in found.items() if f}


@pytest.mark.slow
def test_no_key_material_in_any_output_log_callback_report_or_temp_file(verbose_runs):
    outputs, files, keys, _token = verbose_runs
    problems = _problems({**outputs, **files}, keys=keys)
    assert not problems, f"key material found: {problems}"


@pytest.mark.slow
def test_no_token_in_verbose_output_log_callbacks_report_or_temp_files(verbose_runs):
    """-vvvv output (ANSIBLE_DEBUG lines aside, see the next case), the log, the callbacks'
    files, the report and the temp dirs never show the bearer token."""
    outputs, files, _keys, token = verbose_runs
    without_debug = {where: DEBUG_LINE.sub("", "\n".join(
        line for line in text.splitlines() if not DEBUG_LINE.match(line))) for where, text in outputs.items()}
    problems = _problems({**without_debug, **files}, tokens=[token])
    assert not problems, f"the API token found: {problems}"


@pytest.mark.slow
def test_no_token_even_in_ansible_debug_lines(verbose_runs):
    """ANSIBLE_DEBUG=1 makes ansible-core print every module's arguments, no_log ones
    included ("done with _execute_module (mtls_identity, {...})"), so a token passed in the
    module's ``headers`` option would be printed. The role's ``headers`` go through the
    mtls_identity action plugin, which hands the module a file in Ansible's remote temporary
    directory (``headers_file``) instead: the token is never a module argument."""
    outputs, _files, _keys, token = verbose_runs
    leaking = [line.split(": ", 1)[1][:60] + "..." for text in outputs.values() for line in text.splitlines()
               if token in line]
    assert not leaking, f"the API token is printed by ANSIBLE_DEBUG in {len(leaking)} line(s): {leaking[:3]}"


# ----------------------------------------------------------------------------- permission watcher

class ModeWatcher(threading.Thread):
    """Poll directories every ~0.5 ms; record every file that holds key material (or is named
    like a key) with a mode other than 0600, and every private key seen (for later scans)."""

    def __init__(self, *roots: pathlib.Path, recursive: tuple[pathlib.Path, ...] = ()) -> None:
        super().__init__(daemon=True)
        self.roots = roots
        self.recursive = recursive
        self.stop_flag = threading.Event()
        self.violations: list[tuple[str, str, int]] = []
        self.keys_seen: set[bytes] = set()
        self.polls = 0
        self.key_sightings = 0

    def _look(self, path: str) -> None:
        try:
            st = os.lstat(path)
        except OSError:
            return
        if not stat.S_ISREG(st.st_mode):
            return
        mode = stat.S_IMODE(st.st_mode)
        name = os.path.basename(path)
        keyish = ".key" in name
        data = b""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                data = os.read(fd, 65536)
            finally:
                os.close(fd)
        except OSError:
            pass
        holds_key = bool(KEY_HEADER.search(data))
        if holds_key:
            self.key_sightings += 1
            if data.rstrip().endswith(b"PRIVATE KEY-----"):
                self.keys_seen.add(data)
        if (holds_key or keyish) and mode != 0o600:
            self.violations.append((path, "key material" if holds_key else "key-named file", mode))

    def run(self) -> None:
        while not self.stop_flag.is_set():
            self.polls += 1
            for root in self.roots:
                try:
                    with os.scandir(root) as entries:
                        for entry in entries:
                            self._look(entry.path)
                except OSError:
                    pass
            for root in self.recursive:
                for dirpath, _dirs, files in os.walk(root):
                    for name in files:
                        self._look(os.path.join(dirpath, name))
            time.sleep(0.0005)

    def stop(self) -> None:
        self.stop_flag.set()
        self.join(timeout=10)


SLOW = {"FLEET_FAULTS_SLOWIO": "0.004", "FLEET_FAULTS_UMASK": "000"}


def test_watcher_catches_a_key_written_then_chmodded(tmp_path):
    """Control: the watcher (with the same slow-IO hook) does see the classic mistake —
    a key written with default permissions and chmod-ed to 0600 afterwards."""
    target = tmp_path / "client.key"
    watcher = ModeWatcher(tmp_path)
    watcher.start()
    script = (
        "import os\n"
        f"data = {h.key_pem(h.new_key(2048))!r}\n"
        f"with open({str(target)!r}, 'wb') as f:\n"
        "    f.write(data)\n"
        f"os.chmod({str(target)!r}, 0o600)\n"
    )
    runner = tmp_path / "mtls_identity_badwriter.py"
    runner.write_text(script)
    subprocess.run([str(h.PYTHON), str(runner)], env=h.module_env(hooks=SLOW), check=True)
    time.sleep(0.05)
    watcher.stop()
    assert watcher.violations, "the watcher missed a key that was world-readable for a while"
    assert target.stat().st_mode & 0o777 == 0o600


def test_no_key_file_ever_has_another_mode_than_0600(tmp_path, shared_service):
    svc = shared_service
    svc.clear_faults()
    home = tmp_path / "home"
    ident = home / ".mtls"
    work = tmp_path / "work"
    home.mkdir()
    ansible_home = work / "ansible-home"
    watcher = ModeWatcher(home, ident, recursive=(ansible_home,))
    args = {"path": str(ident), "api_url": svc.api_url, "ca_path": str(svc.ca_path), "key_size": 2048}
    watcher.start()
    try:
        created = h.run_module(args, workdir=work, via="ansible", hooks=SLOW)
        rotated = h.run_module(dict(args, rotate="always"), workdir=work, via="ansible", hooks=SLOW)
    finally:
        watcher.stop()
    assert created.result.get("action") == "created", created
    assert rotated.result.get("action") == "rotated", rotated
    assert watcher.key_sightings > 10 and watcher.polls > 100, (watcher.key_sightings, watcher.polls)
    assert not watcher.violations, watcher.violations[:10]
    assert len(watcher.keys_seen) >= 2  # both generations were seen while they existed
    for result in (created, rotated):
        h.assert_no_secrets(result.output, keys=list(watcher.keys_seen), tokens=[svc.token])
    st = os.lstat(ident / "client.crt")
    assert stat.S_IMODE(st.st_mode) == 0o644  # umask 000 did not widen the certificate either
    assert stat.S_IMODE(os.lstat(ident).st_mode) == 0o700
