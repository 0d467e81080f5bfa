"""mtls_identity and mtls_identity_info through real Ansible against the reference service."""

from __future__ import annotations

import ast
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest
import yaml

from tests.fixtures.ansible_runner import BIN, REPO, ansible_env, run_task

pytestmark = pytest.mark.integration

ID_EP = "/generate-orchestrator-id"
UP_EP = "/upload-orchestrator-certificate"



def base_args(svc, path, **kw):
    """The identity against the API, the agent's server the gate (its CA a file on the device)."""
    args = {"api_url": svc.api_url, "ca_path": str(svc.ca_path), "path": str(path), "key_size": 2048,
            "server_url": svc.gate_url, "server_ca": str(svc.ca_path)}
    args.update(kw)
    return args


def snapshot(path: pathlib.Path):
    return {p.name: (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns) for p in sorted(path.iterdir())}


GATE_ENDPOINTS = ("/ws", "/socket.io/", "/whoami")


def total_requests(svc):
    return sum(svc.faults()["requests"].values())


def api_requests(svc):
    """Requests that reached the provisioning API (the gate's checks left out)."""
    return sum(n for endpoint, n in svc.faults()["requests"].items() if endpoint not in GATE_ENDPOINTS)


def gate_accepts(svc, cert, key):
    return svc.gate_accepts(cert, key)


def test_create_rerun_rotate_check(svc, tmp_path):
    ident = tmp_path / "mtls"
    created = run_task(tmp_path, "mtls_identity", base_args(svc, ident))
    assert not created.failed, created.output
    r = created.result
    assert r["changed"] and r["action"] == "created"
    agent_id = r["agent_id"]
    assert svc.registrations()[agent_id] == r["fingerprint_sha256"]
    assert svc.whoami(ident / "client.crt", ident / "client.key") == (200, {"id": agent_id})
    assert oct(ident.stat().st_mode & 0o777) == "0o700"
    assert oct((ident / "client.key").stat().st_mode & 0o777) == "0o600"
    assert oct((ident / "client.crt").stat().st_mode & 0o777) == "0o644"
    # The agent's files, proven before the swap with the check the verification makes.
    status = r["status"]
    assert (status["action"], status["config"], status["config_changed"], status["verify"]) == (
        "created", "changed", True, "ok"), status
    assert (status["verify_protocol"], status["restarted"], status["phase"]) == ("websocket", False, ""), status
    assert (ident / "agent.env").read_text().endswith("SSL_CERT_FILE=%s\n" % svc.ca_path)
    assert sorted(p.name for p in ident.iterdir()) == ["agent-tls.ini", "agent.env", "client.crt", "client.key"]
    assert svc.ws_accepts(ident / "client.crt", ident / "client.key")

    svc.clear_faults()
    before = snapshot(ident)
    again = run_task(tmp_path, "mtls_identity", base_args(svc, ident))
    assert not again.failed and again.result["changed"] is False
    assert again.result["action"] == "unchanged"
    # Re-run: unchanged, and not one request reached the API; the verification (on by default
    # for unchanged hosts) is one upgrade of the gate's /ws.
    assert api_requests(svc) == 0
    assert again.result["status"]["verify"] == "ok" and svc.request_count("/ws") == 1
    assert snapshot(ident) == before

    # Rotation keeps the ID, changes the fingerprint; the gate accepts new and refuses old.
    old = tmp_path / "old"
    shutil.copytree(ident, old)
    rotated = run_task(tmp_path, "mtls_identity", base_args(svc, ident, rotate="always"), diff=True)
    assert not rotated.failed, rotated.output
    assert rotated.result["action"] == "rotated" and rotated.result["agent_id"] == agent_id
    assert rotated.result["fingerprint_sha256"] != r["fingerprint_sha256"]
    assert rotated.result["diff"]["before"]["fingerprint_sha256"] == r["fingerprint_sha256"]
    assert rotated.result["diff"]["after"]["fingerprint_sha256"] == rotated.result["fingerprint_sha256"]
    assert svc.request_count(ID_EP) == 0
    assert svc.whoami(ident / "client.crt", ident / "client.key") == (200, {"id": agent_id})
    assert not gate_accepts(svc, old / "client.crt", old / "client.key")

    # Check mode reports the rotation it would do, and touches nothing.
    svc.clear_faults()
    before = snapshot(ident)
    check = run_task(tmp_path, "mtls_identity", base_args(svc, ident, rotate="always"), check=True, diff=True)
    assert not check.failed, check.output
    assert check.result["changed"] and check.result["action"] == "rotated"
    assert check.result["diff"]["after"]["fingerprint_sha256"] == "(new key)"
    assert check.result["diff"]["before"]["agent_id"] == agent_id
    assert snapshot(ident) == before
    # Nothing reached the API; the live pair was checked, read-only, as the agent connects.
    assert api_requests(svc) == 0 and check.result["status"]["verify"] == "ok"


def test_check_mode_on_a_fresh_device_requests_no_id(svc, tmp_path):
    ident = tmp_path / "fresh"
    check = run_task(tmp_path, "mtls_identity", base_args(svc, ident), check=True)
    assert not check.failed, check.output
    assert check.result["action"] == "created" and check.result["changed"]
    assert check.result["agent_id"] is None
    assert not ident.exists()
    assert total_requests(svc) == 0


def test_csr_mode(svc, tmp_path):
    ident = tmp_path / "csr"
    run = run_task(tmp_path, "mtls_identity", base_args(svc, ident, enrollment="csr"))
    assert not run.failed, run.output
    agent_id = run.result["agent_id"]
    enroll_ca = (svc.state_dir / "enroll-ca.crt").read_bytes()
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((ident / "client.crt").read_bytes())
    ca = x509.load_pem_x509_certificate(enroll_ca)
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    assert svc.whoami(ident / "client.crt", ident / "client.key") == (200, {"id": agent_id})
    again = run_task(tmp_path, "mtls_identity", base_args(svc, ident, enrollment="csr"))
    assert again.result["action"] == "unchanged"


def test_json_bearer_upload_and_no_secret_in_verbose_output(svc, tmp_path):
    ident = tmp_path / "json"
    args = base_args(svc, ident, upload_format="json", upload_endpoint="/agent/certificate",
                     id_field="agent_id", headers={"Authorization": "Bearer " + svc.token})
    run = run_task(tmp_path, "mtls_identity", args, verbosity=4)
    assert not run.failed, run.output[-3000:]
    assert svc.request_count("/agent/certificate") == 1 and svc.request_count(UP_EP) == 0
    key_body = "".join((ident / "client.key").read_text().splitlines()[1:-1])
    assert svc.token not in run.output
    assert "PRIVATE KEY" not in run.output
    for i in range(0, len(key_body) - 24, 24):
        assert key_body[i:i + 24] not in run.output
    assert svc.whoami(ident / "client.crt", ident / "client.key")[0] == 200

    # A refused token: the error names endpoint and status, never the header value.
    bad = dict(args, headers={"Authorization": "Bearer not-the-token-0123456789"}, rotate="always")
    failed = run_task(tmp_path, "mtls_identity", bad, verbosity=4)
    assert failed.failed
    assert "HTTP 403" in failed.output and "/agent/certificate" in failed.output
    assert "not-the-token-0123456789" not in failed.output


def test_unquoted_numeric_agent_id_is_refused(svc, tmp_path):
    run = run_task(tmp_path, "mtls_identity", base_args(svc, tmp_path / "n", agent_id=12345678))
    assert run.failed
    assert "must be a string" in run.result["msg"] and "quote it" in run.result["msg"]
    assert total_requests(svc) == 0


def test_definitive_failure_keeps_identity_and_reports_it(svc, tmp_path):
    ident = tmp_path / "mtls"
    assert not run_task(tmp_path, "mtls_identity", base_args(svc, ident)).failed
    before = {p.name: p.read_bytes() for p in ident.iterdir()}
    svc.inject(UP_EP, "status", status=400, message="certificate refused by test")
    run = run_task(tmp_path, "mtls_identity", base_args(svc, ident, rotate="always"))
    assert run.failed
    assert "HTTP 400: certificate refused by test" in run.result["msg"]
    assert "previous identity is intact" in run.result["msg"]
    assert {p.name: p.read_bytes() for p in ident.iterdir()} == before


def test_info_module(svc, tmp_path):
    ident = tmp_path / "mtls"
    missing = run_task(tmp_path, "mtls_identity_info", {"path": str(ident)})
    assert not missing.failed and missing.result["exists"] is False
    assert any("does not exist" in p for p in missing.result["problems"])
    created = run_task(tmp_path, "mtls_identity", base_args(svc, ident)).result
    os.chmod(ident / "client.key", 0o640)
    info = run_task(tmp_path, "mtls_identity_info", {"path": str(ident)}, check=True)
    r = info.result
    assert not info.failed and r["changed"] is False
    assert r["exists"] and r["key_matches"] and r["self_signed"]
    assert r["agent_id"] == created["agent_id"]
    assert r["fingerprint_sha256"] == created["fingerprint_sha256"]
    assert r["files"]["key"]["mode"] == "0640"
    assert r["problems"] == ["client.key has mode 0640 (want 0600)"]
    assert r["pending"] == {"staged_key": False, "staged_cert": False, "journal": None}
    assert "PRIVATE" not in info.stdout


def test_missing_libraries_fail_with_ansible_message(svc, tmp_path):
    bare = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    run = run_task(tmp_path, "mtls_identity", base_args(svc, tmp_path / "m"),
                   python=str(bare / "bin" / "python"))
    assert run.failed
    assert "Failed to import the required Python library (cryptography and requests)" in run.result["msg"]
    assert run.result["missing_libraries"] == ["cryptography", "requests"]
    assert (run.result["status"]["phase"], run.result["status"]["action"]) == ("preflight", "failed")


def test_install_prerequisites_installs_through_the_package_action(svc, tmp_path):
    """install_prerequisites: the action plugin installs the packages, then runs the module
    again. ``coreutils`` is installed on every Debian: the package step changes nothing here,
    and the bare interpreter still lacks the libraries, so the second run fails the same way."""
    bare = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    args = base_args(svc, tmp_path / "m", install_prerequisites=True, prerequisite_packages=["coreutils"])
    run = run_task(tmp_path, "mtls_identity", args, python=str(bare / "bin" / "python"))
    assert run.failed
    if "missing interpreter line" in run.result["msg"]:
        pytest.fail("product: the action plugin runs ansible.builtin.package with _execute_module, but "
                     "package is an action plugin: %r" % run.result["msg"])
    assert "Failed to import the required Python library" in run.result["msg"], run.result
    assert run.result["installed_packages"] == ["coreutils"], run.result
    assert not (tmp_path / "m").exists()


def _system_python_has_only_cryptography() -> bool:
    probe = "import importlib.util as u; print(bool(u.find_spec('cryptography')), bool(u.find_spec('requests')))"
    proc = subprocess.run(["/usr/bin/python3", "-c", probe], capture_output=True, text=True, check=False)
    return proc.stdout.split() == ["True", "False"]


@pytest.mark.skipif(not _system_python_has_only_cryptography(),
                    reason="needs a system python3 with cryptography but without requests")
def test_missing_requests_fails_with_ansible_message(svc, tmp_path):
    venv = tmp_path / "system-venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
                   check=True)
    run = run_task(tmp_path, "mtls_identity", base_args(svc, tmp_path / "m"), python=str(venv / "bin" / "python"))
    assert run.failed
    assert "Failed to import the required Python library (requests)" in run.result["msg"]
    assert total_requests(svc) == 0


@pytest.mark.parametrize("module", ["mtls_identity", "mtls_identity_info", "mtls_deregister"])
def test_ansible_doc_renders(module):
    proc = subprocess.run([str(BIN / "ansible-doc"), "-M", "library", module], cwd=REPO,
                          env=ansible_env(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "ERROR" not in proc.stderr
    assert "OPTIONS" in proc.stdout and "RETURN VALUES" in proc.stdout and "EXAMPLES" in proc.stdout
    as_json = subprocess.run([str(BIN / "ansible-doc"), "-M", "library", "--json", module], cwd=REPO,
                             env=ansible_env(), capture_output=True, text=True, check=True)
    doc = yaml.safe_load(as_json.stdout)[module]
    assert doc["doc"]["attributes"]["check_mode"]["support"] == "full"
    if module == "mtls_identity":
        from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import options, provision

        assert doc["doc"]["attributes"]["diff_mode"]["support"] == "full"
        # Every option of the argument spec is documented (the API's through the doc fragment),
        # and nothing else.
        assert set(doc["doc"]["options"]) == set(options.argument_spec())
        returns = doc["return"]
        for key in ("status", "agent_id", "action", "fingerprint_sha256", "not_after", "files", "diff"):
            assert {"description", "returned", "type"} <= set(returns[key]), key
        # The report row: every key the module puts in it is documented.
        assert set(provision.blank_status()) <= set(returns["status"]["contains"]), \
            set(provision.blank_status()) - set(returns["status"]["contains"])
        # What the module still returns beside the row (the old documentation's keys).
        undocumented = sorted(key for key in ("reason", "serial", "not_before", "days_left", "key_size",
                                              "cert_path", "key_path") if key not in returns)
        if undocumented:
            pytest.fail("product: library/mtls_identity.py RETURN misses keys the module returns: %s"
                         % ", ".join(undocumented))


def _examples(module: str) -> str:
    tree = ast.parse((REPO / "plugins" / "modules" / f"{module}.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "EXAMPLES":
            return node.value.value
    raise AssertionError("no EXAMPLES")


@pytest.mark.parametrize("module", ["mtls_identity", "mtls_identity_info"])
def test_examples_are_yaml_that_ansible_lint_accepts(module, tmp_path):
    examples = _examples(module)
    tasks = yaml.safe_load(examples)
    assert isinstance(tasks, list) and all("name" in t for t in tasks)
    play = ("---\n- name: Run the module examples\n  hosts: all\n  gather_facts: false\n"
            "  vars:\n    registry_token: example\n  tasks:\n"
            + textwrap.indent(examples.strip("\n") + "\n", "    "))
    playbook = tmp_path / "examples.yml"
    playbook.write_text(play)
    proc = subprocess.run([str(BIN / "ansible-lint"), "--nocolor", str(playbook)], cwd=REPO,
                          env=ansible_env(), capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


COMPAT = [p for p in os.environ.get("MTLS_COMPAT_PYTHONS", "").split(os.pathsep) if p]


@pytest.mark.skipif(not COMPAT, reason="set MTLS_COMPAT_PYTHONS to interpreters with old cryptography/requests")
@pytest.mark.parametrize("python", COMPAT)
def test_old_device_libraries(svc, tmp_path, python):
    """The module on interpreters carrying e.g. cryptography 3.3.2 + requests 2.25.1 (Debian 11)."""
    ident = tmp_path / "compat"
    for kw, action in (({}, "created"), ({}, "unchanged"), ({"rotate": "always"}, "rotated"),
                       ({"enrollment": "csr"}, "rotated"), ({"enrollment": "csr"}, "unchanged")):
        run = run_task(tmp_path, "mtls_identity", base_args(svc, ident, **kw), python=python)
        assert not run.failed, run.output[-3000:]
        assert run.result["action"] == action
    assert svc.whoami(ident / "client.crt", ident / "client.key")[0] == 200
