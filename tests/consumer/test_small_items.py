"""What an operator meets before the first run: the build script on a bare machine, the audit
entry point's documentation (only what an audit reads)."""

from __future__ import annotations

import os
import subprocess

import yaml

from tests.fixtures.consumer import REPO

SPECS = REPO / "roles" / "mtls_identity" / "meta" / "argument_specs.yml"
# What only provisioning acts on: an audit's device sends no request, writes, rotates and installs
# nothing. The token, the API's CA from the controller, its verification and timeout are the
# controller's, which asks the cloud about the agent (mtls_confirm): the audit documents them.
PROVISIONING_ONLY = {
    "mtls_rotate", "mtls_backup", "mtls_backup_keep", "mtls_install_prerequisites", "mtls_prerequisite_packages",
    "mtls_metrics_dir",
    "mtls_lost_identity", "mtls_agent_restart_command", "mtls_verify_unchanged",
    "mtls_api_headers_file", "mtls_api_ca", "mtls_api_retries", "mtls_id_endpoint", "mtls_upload_endpoint",
    "mtls_enroll_endpoint", "mtls_upload_format", "mtls_id_field", "mtls_certificate_field",
    "mtls_agent_id_takeover", "mtls_confirm_timeout", "mtls_background_keygen", "mtls_keygen_timeout",
}


def test_build_collection_without_a_venv_or_ansible_galaxy_says_what_to_do(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FLEET_MTLS_VENV": str(tmp_path / "no-venv")}
    assert not any(os.access(os.path.join(d, "ansible-galaxy"), os.X_OK) for d in env["PATH"].split(":"))
    proc = subprocess.run(["bash", str(REPO / "tests" / "build_collection.sh"), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "no ansible-galaxy: run tests/bootstrap.sh" in proc.stderr and "pip install -r requirements.txt" in \
        proc.stderr, proc.stderr


def test_the_audit_documents_only_what_it_reads():
    specs = yaml.safe_load(SPECS.read_text())["argument_specs"]
    main, audit = set(specs["main"]["options"]), set(specs["audit"]["options"])
    assert audit < main
    assert not audit & PROVISIONING_ONLY, sorted(audit & PROVISIONING_ONLY)
    # What the audit leaves out of its documentation never reaches its module call: pinned, or
    # without effect in check mode (no request is sent, nothing written).
    tasks = yaml.safe_load((REPO / "roles" / "mtls_identity" / "tasks" / "audit.yml").read_text())
    (audit_task,) = [task for task in tasks if "autonomy_edge.fleet_mtls.mtls_identity" in task]
    assert audit_task["autonomy_edge.fleet_mtls.mtls_identity"]["audit"] is True and audit_task["check_mode"] is True
    pinned = set(audit_task["vars"])
    assert pinned == {"mtls_api_headers_file", "mtls_rotate", "mtls_backup", "mtls_install_prerequisites",
                      "mtls_metrics_dir"}
    assert main - audit <= PROVISIONING_ONLY, sorted(main - audit - PROVISIONING_ONLY)
