"""The oldest ansible-core the collection claims (meta/runtime.yml, the roles' meta): Debian 12's
2.14, which a pull device gets from apt. playbooks/provision.yml runs with it, connection local
with pipelining (so its keygen pass runs without AnsiballZ), against the reference service:
ansible-core 2.14.18 on the controller side (a virtualenv of tests/requirements-ansible-2.14.txt),
Debian's /usr/bin/python3 with its python3-cryptography and python3-requests on the device side.
The pull container test runs Debian's own apt ansible-core 2.14 through systemd
(test_pull_timer.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import yaml
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures import compat

pytestmark = pytest.mark.integration

REPO = compat.REPO
FLOOR = "2.14"
# Roles whose meta is not yet at the floor, with the value they still claim: the owner of the
# role changes it; this test then fails until the entry goes.
PENDING_MIN_VERSION = {}


def test_the_floor_is_the_same_everywhere():
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    assert runtime["requires_ansible"] == ">=%s.0" % FLOOR
    assert compat.floor_version().startswith(FLOOR + ".")
    pull_vars = yaml.safe_load((REPO / "roles" / "mtls_pull" / "vars" / "main.yml").read_text())
    assert pull_vars["__mtls_pull_ansible_floor"] == FLOOR
    for meta in sorted(REPO.glob("roles/*/meta/main.yml")):
        role = meta.parent.parent.name
        claimed = str(yaml.safe_load(meta.read_text())["galaxy_info"]["min_ansible_version"])
        assert claimed == PENDING_MIN_VERSION.get(role, FLOOR), role


def test_the_docs_state_the_floor_the_tests_run():
    """What README.md, docs/ and the roles' READMEs say about the controller's ansible-core is
    the floor this file tests (each "Controller:" line: its oldest version; "... is the tested floor")."""
    docs = [REPO / "README.md", *sorted(REPO.glob("docs/*.md")), *sorted(REPO.glob("roles/*/README.md"))]
    stated = {}
    for doc in docs:
        text = " ".join(doc.read_text().split())
        for line in re.findall(r"Controller: (.*?)(?:\. |\.$)", text):
            versions = re.findall(r"ansible-core (\d+\.\d+)", line)
            if versions:
                stated.setdefault(doc.name if doc.parent == REPO else str(doc.relative_to(REPO)), []).append(
                    min(versions, key=lambda v: tuple(map(int, v.split(".")))))
        for version in re.findall(r"ansible-core (\d+\.\d+)\+", text):
            stated.setdefault(str(doc.relative_to(REPO)), []).append(version)
        for version in re.findall(r"ansible-core (\d+\.\d+) \([^)]*\) is the tested floor", text):
            stated.setdefault(str(doc.relative_to(REPO)), []).append(version)
    assert "README.md" in stated and "roles/mtls_identity/README.md" in stated, stated
    assert {doc: set(versions) for doc, versions in stated.items()} == {doc: {FLOOR} for doc in stated}


@pytest.fixture(scope="module")
def core_214():
    if not os.access(compat.DEVICE_PYTHON, os.X_OK):
        pytest.skip("no %s (Debian's Python) on this machine" % compat.DEVICE_PYTHON)
    probe = subprocess.run([compat.DEVICE_PYTHON, "-c", "import cryptography, requests"], capture_output=True,
                           check=False)
    if probe.returncode != 0:
        pytest.skip("Debian's python3-cryptography and python3-requests are not installed")
    bin_dir = compat.ansible_214()
    version = subprocess.run([str(bin_dir / "ansible-playbook"), "--version"], capture_output=True, text=True,
                             check=True).stdout
    assert "ansible-playbook [core %s]" % compat.floor_version() in version, version
    return bin_dir


def recap(output):
    return re.findall(r"^localhost\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)", output, re.M)


def test_provision_runs_on_ansible_core_2_14(core_214, service, tmp_path):
    device = tmp_path / "device" / ".mtls"
    reports = tmp_path / "reports"
    extra = {
        "mtls_api_url": service.api_url, "mtls_api_ca": str(service.ca_path), "mtls_server_url": service.gate_url,
        "mtls_server_ca": str(service.ca_path),
        "mtls_dir": str(device), "mtls_agent_restart": "none", "mtls_key_size": 2048,
        "mtls_install_prerequisites": False, "mtls_verify": compat.ROLE_VERIFY_WORKS, "mtls_report_dir": str(reports),
        "ansible_python_interpreter": compat.DEVICE_PYTHON,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "PYTHON"))}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
               ANSIBLE_HOME=str(tmp_path / "ansible-home"), PATH=str(core_214) + os.pathsep + env["PATH"],
               # the collection this session built and installed, not whatever .state/collections holds
               ANSIBLE_COLLECTIONS_PATH=os.environ["FLEET_MTLS_TEST_COLLECTIONS"],
               # as operators run it over SSH: the keygen pass then runs without AnsiballZ
               ANSIBLE_PIPELINING="1")
    cmd = [str(core_214 / "ansible-playbook"), "-i", "localhost,", "-c", "local", "playbooks/provision.yml",
           "-e", json.dumps(extra)]

    first = subprocess.run(cmd + ["-vvv"], cwd=REPO, env=env, capture_output=True, text=True, timeout=280,
                           check=False)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-6000:]
    assert re.search(r"EXEC /bin/sh -c '\S*python3 - mtls_prekey", output), output[-3000:]  # the lean pass
    assert "does not support Ansible version" not in output  # meta/runtime.yml's requires_ansible
    assert recap(output) == [(recap(output)[0][0], "0")] and recap(output)[0][0] != "0", output[-3000:]
    cert = x509.load_pem_x509_certificate((device / "client.crt").read_bytes())
    agent_id = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert agent_id in service.registrations()
    assert service.whoami(device / "client.crt", device / "client.key")[0] == 200
    rows = json.loads((reports / "provision-report.json").read_text())["hosts"]
    assert [(r["host"], r["agent_id"], r["action"]) for r in rows] == [("localhost", agent_id, "created")]
    assert rows[0]["days_left"] in (364, 365)
    samples = {s.name: s for family in text_string_to_metric_families((reports / "fleet-mtls.prom").read_text())
               for s in family.samples}
    not_after = samples["fleet_mtls_certificate_not_after_timestamp_seconds"]
    assert not_after.labels["agent_id"] == agent_id
    assert not_after.value == cert.not_valid_after_utc.timestamp()

    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=280, check=False)
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-6000:]
    assert recap(output) == [("0", "0")], output[-3000:]
    rows = json.loads((reports / "provision-report.json").read_text())["hosts"]
    assert [(r["agent_id"], r["action"]) for r in rows] == [(agent_id, "unchanged")]
    assert x509.load_pem_x509_certificate((device / "client.crt").read_bytes()) == cert  # not rotated
