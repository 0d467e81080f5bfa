"""Pull mode for collection users, on this machine as the device (connection local): the
operator's project runs ``autonomy_edge.fleet_mtls.pull`` with the tarball it installed
(``mtls_pull_collection_src``, a path relative to the project); the role installs the collection
with ansible-galaxy into the device's collections path, again only when the tarball changes, and
the service it writes runs ``ansible-playbook autonomy_edge.fleet_mtls.provision`` from it - run
here exactly as its ExecStart says, it provisions the device. No git repository anywhere. The
systemd container test (tests/playbook/test_pull_timer.py) runs the same through systemd."""

from __future__ import annotations

import configparser
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml
from cryptography import x509

from tests.fixtures import consumer

pytestmark = pytest.mark.integration

BIN = consumer.BIN


def unit(path):
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser


def bump_version(tarball, dest, version):
    """The same collection with another version in its MANIFEST.json (what a new release is to the role)."""
    out = dest / f"autonomy_edge-fleet_mtls-{version}.tar.gz"
    with tarfile.open(tarball) as source, tarfile.open(out, "w:gz") as target:
        for member in source.getmembers():
            data = source.extractfile(member).read() if member.isfile() else None
            if member.name == "MANIFEST.json":
                manifest = json.loads(data)
                manifest["collection_info"]["version"] = version
                data = json.dumps(manifest).encode()
                member.size = len(data)
            target.addfile(member, io.BytesIO(data) if data is not None else None)
    return out


@pytest.fixture
def operator(tmp_path, tarball, collections):
    """An operator's project holding the tarball in dist/, and the pull settings for this machine."""
    root = tmp_path / "project"
    (root / "dist").mkdir(parents=True)
    shutil.copyfile(tarball, root / "dist" / "autonomy_edge-fleet_mtls-1.0.0.tar.gz")
    (root / "ansible.cfg").write_text("[defaults]\ncollections_path = %s\n" % collections)
    device = tmp_path / "device"
    paths = {"units": device / "units", "vars": device / "etc" / "pull.yml",
             "collections": device / "collections", "state": device / "state", "identity": device / "home" / ".mtls"}
    paths["units"].mkdir(parents=True)
    return root, paths


def pull(root, paths, svc, source, *more):
    settings = {
        "mtls_pull_collection_src": source, "mtls_pull_install_packages": False, "mtls_pull_enable": False,
        "mtls_pull_unit_dir": str(paths["units"]), "mtls_pull_vars_file": str(paths["vars"]),
        "mtls_pull_collections_dir": str(paths["collections"]), "mtls_pull_state_dir": str(paths["state"]),
        "mtls_pull_metrics_dir": "", "mtls_pull_ansible_playbook": str(BIN / "ansible-playbook"),
        "mtls_pull_ansible_galaxy": str(BIN / "ansible-galaxy"),
        "mtls_pull_vars": {
            "mtls_api_url": svc.api_url, "mtls_api_ca": str(svc.ca_path), "mtls_server_url": svc.gate_url,
            "mtls_server_ca": str(svc.ca_path), "mtls_dir": str(paths["identity"]), "mtls_key_size": 2048,
            "mtls_agent_restart": "none", "mtls_install_prerequisites": False,
            "ansible_python_interpreter": sys.executable},
    }
    (root / "pull-install.yml").write_text(yaml.safe_dump(settings))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_NOCOLOR="1", PATH=str(BIN) + os.pathsep + env["PATH"])
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "autonomy_edge.fleet_mtls.pull", "-e", "@pull-install.yml",
                           "-e", "ansible_python_interpreter=%s" % sys.executable, *more],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def installed_version(paths):
    manifest = paths["collections"] / consumer.COLLECTION_DIR / "MANIFEST.json"
    return json.loads(manifest.read_text())["collection_info"]["version"]


def test_the_device_runs_the_collection_installed_from_the_operators_tarball(operator, module_service, tmp_path):
    root, paths = operator
    rc, output = pull(root, paths, module_service, "dist/autonomy_edge-fleet_mtls-1.0.0.tar.gz")
    assert rc == 0, output[-5000:]
    assert installed_version(paths) == "1.0.0"
    service = unit(paths["units"] / "fleet-mtls-pull.service")["Service"]
    assert service["WorkingDirectory"] == str(paths["state"])
    assert 'ANSIBLE_COLLECTIONS_PATH=%s' % paths["collections"] in service["Environment"]
    assert service["ExecStart"] == '"%s" --connection local --inventory "%%H," --extra-vars "@%s" ' \
        '"autonomy_edge.fleet_mtls.provision"' % (BIN / "ansible-playbook", paths["vars"])
    assert yaml.safe_load(paths["vars"].read_text())["mtls_state_dir"] == str(paths["state"])
    if shutil.which("systemd-analyze"):
        units = [str(paths["units"] / name) for name in ("fleet-mtls-pull.service", "fleet-mtls-pull.timer")]
        check = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True, check=False)
        assert check.returncode == 0 and check.stdout + check.stderr == "", check.stdout + check.stderr
    assert not list(paths["collections"].rglob(".git"))

    # Applied again with the same tarball: nothing is installed again.
    rc, output = pull(root, paths, module_service, "dist/autonomy_edge-fleet_mtls-1.0.0.tar.gz")
    assert rc == 0, output[-5000:]
    assert "changed=0" in output and "Install the collection with ansible-galaxy" in output, output[-3000:]

    # A new tarball: installed again.
    newer = bump_version(root / "dist" / "autonomy_edge-fleet_mtls-1.0.0.tar.gz", tmp_path, "1.0.1")
    rc, output = pull(root, paths, module_service, str(newer))
    assert rc == 0, output[-5000:]
    assert installed_version(paths) == "1.0.1"

    # What the timer starts, run as its unit says: the installed collection provisions the device.
    argv = [arg.replace("%H", "edge-pull-local") for arg in shlex.split(service["ExecStart"])]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(paths["collections"]), ANSIBLE_NOCOLOR="1",
               PATH=str(BIN) + os.pathsep + env["PATH"])
    run = subprocess.run(argv, cwd=paths["state"], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    cert = x509.load_pem_x509_certificate((paths["identity"] / "client.crt").read_bytes())
    agent = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert agent in module_service.registrations()
    rows = json.loads((paths["state"] / "provision-report.json").read_text())["hosts"]
    assert [(r["host"], r["action"]) for r in rows] == [("edge-pull-local", "created")]
    assert json.loads((paths["state"] / "identity-ledger.json").read_text())["hosts"]["edge-pull-local"][
        "agent_id"] == agent


def test_a_missing_tarball_says_where_it_was_looked_for(operator, module_service):
    root, paths = operator
    rc, output = pull(root, paths, module_service, "dist/autonomy_edge-fleet_mtls-9.9.9.tar.gz")
    text = " ".join(output.split())
    assert rc != 0 and "mtls_pull_collection_src dist/autonomy_edge-fleet_mtls-9.9.9.tar.gz: no such file on " \
        "the controller; looked in" in text, output[-3000:]
    assert str(root / "dist" / "autonomy_edge-fleet_mtls-9.9.9.tar.gz") in text
    assert not (paths["collections"] / consumer.COLLECTION_DIR).exists()
