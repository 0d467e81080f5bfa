"""The collection as a user gets it: tests/build_collection.sh builds the tarball,
``ansible-galaxy collection install`` puts it in an empty directory, and a playbook that names
everything by FQCN (the mtls_identity module, the mtls_identity and mtls_report roles) runs
against the reference service from a scratch directory, with an empty ansible.cfg: nothing of
the repository (its ansible.cfg, plugins/, roles/, .state/collections) is in effect."""

from __future__ import annotations

import json
import subprocess
import tarfile

import pytest

from tests.fixtures.ansible_runner import BIN, REPO, VENV_PYTHON, ansible_env

pytestmark = pytest.mark.integration

COLLECTION = "autonomy_edge.fleet_mtls"
HEADERS_FILE_NAME = "mtls-identity-headers.json"


def isolated_env(tmp_path, install_dir):
    """Ansible with an empty config, only the installed collection, no path of the repository."""
    empty_cfg = tmp_path / "empty.cfg"
    empty_cfg.write_text("")
    env = {k: v for k, v in ansible_env().items() if not k.startswith("ANSIBLE_") or k in (
        "ANSIBLE_NOCOLOR", "ANSIBLE_FORCE_COLOR", "ANSIBLE_LOCALHOST_WARNING", "ANSIBLE_DEPRECATION_WARNINGS",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING", "ANSIBLE_RETRY_FILES_ENABLED")}
    env.pop("PYTHONPATH", None)
    env.update(ANSIBLE_CONFIG=str(empty_cfg), ANSIBLE_COLLECTIONS_PATH=str(install_dir),
               ANSIBLE_HOME=str(tmp_path / "ansible-home"))
    return env


@pytest.fixture(scope="module")
def tarball(collection_tarball):
    assert collection_tarball.endswith("/autonomy_edge-fleet_mtls-1.0.0.tar.gz")
    return collection_tarball


def test_tarball_holds_the_collection_layout_in_real_files(tarball):
    with tarfile.open(tarball) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert all(m.isfile() or m.isdir() for m in members.values())  # no symlink survives
    for name in ("plugins/modules/mtls_identity.py", "plugins/modules/mtls_report_write.py",
                 "plugins/module_utils/api.py", "plugins/action/mtls_identity.py",
                 "plugins/action/mtls_deregister.py", "roles/mtls_identity/tasks/main.yml",
                 "roles/mtls_report/tasks/main.yml", "playbooks/provision.yml", "playbooks/pull.yml",
                 "roles/mtls_pull/tasks/main.yml", "meta/runtime.yml", "meta/execution-environment.yml",
                 "extensions/awx/execution-environment.yml", "extensions/awx/credential_type/injectors.yml",
                 "changelogs/config.yaml", "docs/operations.md",
                 "LICENSE", "README.md", "MANIFEST.json"):
        assert name in members, name
    top = {name.split("/")[0] for name in members}
    # docs/ ships: the installed README links to it.
    assert top == {"plugins", "roles", "playbooks", "meta", "extensions", "changelogs", "docs", "LICENSE",
                   "README.md", "MANIFEST.json", "FILES.json"}
    assert not [n for n in members if "/molecule" in n or "__pycache__" in n]


def test_installed_collection_runs_a_fqcn_only_playbook(tarball, service, tmp_path):
    install_dir = tmp_path / "installed"
    install_dir.mkdir()
    env = isolated_env(tmp_path, install_dir)
    install = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "-p",
                              str(install_dir), tarball], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=120, check=False)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    assert (install_dir / "ansible_collections" / "autonomy_edge" / "fleet_mtls" / "MANIFEST.json").is_file()

    module_dir, role_dir, reports = tmp_path / "module-mtls", tmp_path / "role-mtls", tmp_path / "reports"
    results = tmp_path / "results.json"
    play = [{
        "name": "Use the installed collection by FQCN only",
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {"name": "Run the module", "register": "module_result",
             f"{COLLECTION}.mtls_identity": {
                 "api_url": service.api_url, "ca_path": str(service.ca_path), "path": str(module_dir),
                 "key_size": 2048, "upload_format": "json", "upload_endpoint": "/agent/certificate",
                 "id_field": "agent_id", "server_url": service.gate_url, "server_ca": str(service.ca_path),
                 # Refused without the token: through the collection's action plugin (a file).
                 "headers": {"Authorization": "Bearer " + service.token}}},
            {"name": "Apply the role", "ansible.builtin.include_role": {"name": f"{COLLECTION}.mtls_identity"},
             "vars": {
                 "mtls_api_url": service.api_url, "mtls_api_ca": str(service.ca_path),
                 "mtls_server_url": service.gate_url, "mtls_server_ca": str(service.ca_path),
                 "mtls_dir": str(role_dir),
                 "mtls_key_size": 2048, "mtls_agent_restart": "none", "mtls_install_prerequisites": False}},
            {"name": "Write the report", "ansible.builtin.include_role": {"name": f"{COLLECTION}.mtls_report"},
             "vars": {"mtls_report_dir": str(reports), "mtls_report_name": "collection-report"}},
            {"name": "Save the results", "ansible.builtin.copy": {
                "content": "{{ {'module': module_result, 'status': mtls_identity_status} | to_json }}",
                "dest": str(results), "mode": "0600"}},
        ],
    }]
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps(play))
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-vvv",
                           "-e", json.dumps({"ansible_python_interpreter": VENV_PYTHON}), str(playbook)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "Using %s as config file" % env["ANSIBLE_CONFIG"] in output
    for part in ("ansible.cfg", ".state", "library", "plugins", "roles", "playbooks"):
        assert str(REPO / part) not in output  # nothing resolved from the repository
    assert str(install_dir / "ansible_collections" / "autonomy_edge" / "fleet_mtls") in output
    assert "/%s" % HEADERS_FILE_NAME in output and service.token not in output

    done = json.loads(results.read_text())
    assert done["module"]["changed"] and done["module"]["action"] == "created"
    status = done["status"]
    assert (status["action"], status["verify"], status["error"]) == ("created", "ok", "")
    assert {done["module"]["agent_id"], status["agent_id"]} <= set(service.registrations())
    http, body = service.whoami(role_dir / "client.crt", role_dir / "client.key")
    assert http == 200 and body["id"] == status["agent_id"]
    assert status["verify_protocol"] == "websocket" and status["config"] == "changed", status
    assert f"SSL_CERT_FILE={service.ca_path}\n" in (role_dir / "agent.env").read_text()
    report = json.loads((reports / "collection-report.json").read_text())
    assert [(h["host"], h["action"]) for h in report["hosts"]] == [("localhost", "created")]
