"""mtls_check through Ansible itself (ansible-playbook, local connection), against the reference
service's gate: arguments, check mode, the result and failure keys, and its documentation."""

from __future__ import annotations

import subprocess

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.check import RESULT_KEYS
from tests.fixtures.ansible_runner import BIN, REPO, ansible_env, run_task
from tests.fixtures.check_helpers import AGENT_ID, pem


def test_socketio_in_check_mode(pki, gate, tmp_path):
    gate.upload(AGENT_ID, pem(pki.client_cert))
    run = run_task(tmp_path, "mtls_check", {"server_url": gate.gate_url, "protocol": "socketio",
                                            "path": str(pki.client_dir), "ca_file": str(gate.ca_path),
                                            "timeout": 7.5}, check=True)
    assert not run.failed, run.result
    result = run.result
    assert result["changed"] is False
    assert (result["agent_id"], result["status"], result["trust"]) == (AGENT_ID, 101, "ca_file")
    assert result["sid"] and set(RESULT_KEYS) <= set(result)
    assert "PRIVATE KEY" not in run.output


def test_mtls_identitys_names_work_and_the_old_ones_are_aliases(pki, gate, tmp_path):
    """One vocabulary: the settings have mtls_identity's names; user, trust, ca_file, protocol,
    url, timeout and status_code stay as documented aliases (the test above uses them)."""
    gate.upload(AGENT_ID, pem(pki.client_cert))
    run = run_task(tmp_path, "mtls_check", {"server_url": gate.gate_url, "verify_protocol": "socketio",
                                            "path": str(pki.client_dir), "server_ca": str(gate.ca_path),
                                            "agent_trust": "ca_file", "verify_timeout": 7.5})
    assert not run.failed, run.result
    assert (run.result["status"], run.result["trust"], run.result["ca_file"]) == (101, "ca_file", str(gate.ca_path))
    unknown = run_task(tmp_path, "mtls_check", {"server_url": "https://127.0.0.1:9", "owner": "no-such-agent-user"})
    assert unknown.result["failure"] == "config" and "owner no-such-agent-user does not exist" in unknown.result["msg"]


def test_failure_is_classified_with_every_result_key(pki, gate, tmp_path):
    gate.upload(AGENT_ID, pem(pki.client_cert))
    run = run_task(tmp_path, "mtls_check", {"server_url": gate.gate_url, "protocol": "https",
                                            "path": str(pki.client_dir), "ca_file": str(gate.ca_path)})
    assert run.failed and run.result["failure"] == "http_status"
    assert run.result["status"] == 403 and set(RESULT_KEYS) <= set(run.result)


def test_url_overrides_the_path_and_config_is_gone(pki, gate, tmp_path):
    run = run_task(tmp_path, "mtls_check", {"server_url": "https://unused.invalid", "url": gate.gate_url + "/nope",
                                            "path": str(pki.client_dir), "ca_file": str(gate.ca_path)})
    assert run.result["failure"] == "protocol", run.result  # the API-key 403 of the plain route /nope
    assert run.result["url"] == gate.gate_url + "/nope"
    run = run_task(tmp_path, "mtls_check", {"server_url": gate.gate_url, "config": "/etc/agent-tls.ini"})
    assert run.failed and "Unsupported parameters" in run.result["msg"]


def test_unknown_user_is_a_config_failure(tmp_path):
    run = run_task(tmp_path, "mtls_check", {"server_url": "https://127.0.0.1:9", "user": "no-such-agent-user"})
    assert run.result["failure"] == "config" and "does not exist" in run.result["msg"]


def test_documentation_renders():
    proc = subprocess.run([str(BIN / "ansible-doc"), "-M", "library", "mtls_check"], cwd=REPO, env=ansible_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    for words in ("server_url", "socketio", "untrusted_server", "SSL_CERT_FILE", "RETURN VALUES"):
        assert words in proc.stdout
    assert "WARNING" not in proc.stderr, proc.stderr
