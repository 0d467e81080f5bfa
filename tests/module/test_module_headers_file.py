"""The API token is never an argument of the mtls_identity module.

ansible-core prints every module's arguments under ANSIBLE_DEBUG=1, no_log ones included. The
module reads headers from ``headers_file`` on the device, and the ``mtls_identity`` action
plugin turns a task's ``headers`` into such a file in Ansible's remote temporary directory.
Everything here runs through ansible-playbook against the reference service, whose
``/agent/certificate`` endpoint refuses an upload without the bearer token.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.fixtures.ansible_runner import BIN, REPO, VENV_PYTHON, ansible_env, run_task
from tests.fixtures.product import module_args_with_templates

pytestmark = pytest.mark.integration

AGENT_EP = "/agent/certificate"
HEADERS_FILE_NAME = "mtls-identity-headers.json"
MODULE_ARGS_LINE = re.compile(r"done with _execute_module \((?:autonomy_edge\.fleet_mtls\.)?mtls_identity, (.*)\)$",
                              re.MULTILINE)


def json_args(svc, path, **kw):
    args = {"api_url": svc.api_url, "ca_path": str(svc.ca_path), "path": str(path), "key_size": 2048,
            "upload_format": "json", "upload_endpoint": AGENT_EP, "id_field": "agent_id",
            "server_url": svc.gate_url, "server_ca": str(svc.ca_path)}
    args.update(kw)
    return args


def write_headers(tmp_path, headers, name="api-headers.json"):
    path = tmp_path / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(headers, f)
    return path


def total_requests(svc):
    return sum(svc.faults()["requests"].values())


def task_output(run, name="Run the module"):
    """The part of the output that belongs to the module task (up to the next task)."""
    text = run.output
    start = text.index("TASK [%s]" % name)
    end = text.find("TASK [", start + 1)
    return text[start:end if end > 0 else len(text)]


@pytest.fixture
def debug_env(tmp_path, monkeypatch):
    """ANSIBLE_DEBUG on, pipelining on (as ansible.cfg sets it for ssh) and Ansible's remote
    temporary directories under tmp_path."""
    remote_tmp = tmp_path / "remote-tmp"
    monkeypatch.setenv("ANSIBLE_DEBUG", "1")
    monkeypatch.setenv("ANSIBLE_PIPELINING", "1")
    monkeypatch.setenv("ANSIBLE_REMOTE_TMP", str(remote_tmp))
    return remote_tmp


def commands(task_text):
    """The commands run on the device (EXEC) and the files put there (PUT) by a task."""
    return (re.findall(r"^<localhost> EXEC (.*)$", task_text, re.MULTILINE),
            re.findall(r"^<localhost> PUT \S+ TO (\S+)$", task_text, re.MULTILINE))


def leftovers(remote_tmp):
    return sorted(str(p) for p in remote_tmp.rglob("*")) if remote_tmp.exists() else []


def test_token_given_only_through_headers_file_authenticates(svc, tmp_path):
    ident = tmp_path / "mtls"
    # Control: without the token the registry refuses the upload.
    refused = run_task(tmp_path, "mtls_identity", json_args(svc, ident))
    assert refused.failed and "HTTP 403" in refused.result["msg"], refused.output[-2000:]
    assert svc.request_count(AGENT_EP) == 1

    headers_file = write_headers(tmp_path, {"Authorization": "Bearer " + svc.token})
    run = run_task(tmp_path, "mtls_identity", json_args(svc, ident, headers_file=str(headers_file)),
                   verbosity=4)
    assert not run.failed, run.output[-3000:]
    r = run.result
    assert r["action"] == "created"
    assert svc.registrations()[r["agent_id"]] == r["fingerprint_sha256"]
    assert svc.request_count(AGENT_EP) == 2
    assert svc.whoami(ident / "client.crt", ident / "client.key") == (200, {"id": r["agent_id"]})
    assert '"headers_file": "%s"' % headers_file in run.output  # the invocation -vvvv shows
    assert svc.token not in run.output
    assert headers_file.exists()  # the operator's file is the operator's: left alone

    # A wrong token in the file: refused, reported without the file's content.
    wrong = "not-the-token-0123456789"
    bad_file = write_headers(tmp_path, {"Authorization": "Bearer " + wrong}, name="bad.json")
    failed = run_task(tmp_path, "mtls_identity",
                      json_args(svc, ident, headers_file=str(bad_file), rotate="always"), verbosity=4)
    assert failed.failed
    assert "HTTP 403" in failed.result["msg"] and AGENT_EP in failed.result["msg"]
    assert wrong not in failed.output


def test_bad_headers_file_fails_before_any_request(svc, tmp_path):
    target = write_headers(tmp_path, {"Authorization": "Bearer " + svc.token})
    link = tmp_path / "link.json"
    link.symlink_to(target)
    run = run_task(tmp_path, "mtls_identity", json_args(svc, tmp_path / "mtls", headers_file=str(link)))
    assert run.failed
    assert run.result["msg"] == "headers_file %s is a symbolic link; refused (name the file itself)" % link
    assert svc.token not in run.output
    not_json = tmp_path / "not-json"
    not_json.write_text("Authorization: Bearer " + svc.token)
    run = run_task(tmp_path, "mtls_identity", json_args(svc, tmp_path / "mtls", headers_file=str(not_json)))
    assert run.failed and "is not valid JSON" in run.result["msg"]
    assert svc.token not in run.output
    assert total_requests(svc) == 0
    assert not (tmp_path / "mtls").exists()


def test_action_plugin_never_hands_headers_to_the_module(svc, tmp_path, debug_env, monkeypatch):
    ident = tmp_path / "mtls"
    args = json_args(svc, ident, headers={"Authorization": "Bearer " + svc.token})
    run = run_task(tmp_path, "mtls_identity", args, verbosity=4)
    assert not run.failed, run.output[-3000:]
    assert run.result["action"] == "created"
    assert svc.registrations()[run.result["agent_id"]] == run.result["fingerprint_sha256"]
    # Pipelined: the module is not transferred; the headers go on the standard input of one
    # command that makes their private directory in the remote temporary one and writes them
    # there, 0600 (never in a command line, no PUT); the module deletes both once read: one
    # round trip more than the module, not three (mkdir, write, rm).
    execs, puts = commands(task_output(run))
    assert puts == [], puts
    assert len(execs) == 2, execs
    # The module's code ran lean (its options in the script, which lean_run refuses to build
    # with a no_log value: tests/unit/test_lean_run.py), or as the module, whose arguments
    # ANSIBLE_DEBUG prints: either way it saw a file, not the headers.
    printed = MODULE_ARGS_LINE.findall(run.output)
    assert len(printed) + (" - mtls_identity " in execs[1]) == 1, run.output[-3000:]
    assert all(HEADERS_FILE_NAME in line and "'headers'" not in line for line in printed)
    assert execs[0].startswith("/bin/sh -c 'umask 077 && mkdir -p \"` echo %s `\"" % debug_env), execs[0]
    assert 'cat > "$d/%s"' % HEADERS_FILE_NAME in execs[0] and "Bearer" not in execs[0]
    assert "rm -f -r" not in " ".join(execs), execs
    assert svc.token not in run.output
    # The remote temporary directory (with the headers file) is gone.
    assert leftovers(debug_env) == []

    # Control: the same task through the plain module (no action plugin: the module file as a
    # playbook-adjacent library module) does print the token, so the scan above looks at the
    # right output.
    monkeypatch.setenv("ANSIBLE_LIBRARY", str(REPO / "plugins" / "modules"))
    # (What the action plugin also adds: the agent's files rendered from the role's templates.)
    plain = run_task(tmp_path, "ansible.legacy.mtls_identity", module_args_with_templates(args), verbosity=4)
    assert not plain.failed and plain.result["action"] == "unchanged"
    assert svc.token in plain.output


def test_action_plugin_adds_no_round_trip_without_headers(svc, tmp_path, debug_env):
    ident = tmp_path / "mtls"
    run = run_task(tmp_path, "mtls_identity", json_args(svc, ident, headers={},
                                                        upload_endpoint="/upload-orchestrator-certificate",
                                                        upload_format="multipart", id_field="id"),
                   verbosity=4)
    assert not run.failed, run.output[-3000:]
    assert run.result["action"] == "created"
    task = task_output(run)
    execs, puts = commands(task)
    # the module's code on one command's standard input, nothing else: without headers, lean
    assert puts == [] and len(execs) == 1 and " - mtls_identity " in execs[0], (execs, puts)
    assert HEADERS_FILE_NAME not in run.output
    assert leftovers(debug_env) == []


def test_action_plugin_in_check_mode(svc, tmp_path, debug_env):
    ident = tmp_path / "fresh"
    args = json_args(svc, ident, headers={"Authorization": "Bearer " + svc.token})
    check = run_task(tmp_path, "mtls_identity", args, check=True, verbosity=4)
    assert not check.failed, check.output[-3000:]
    assert check.result["action"] == "created" and check.result["changed"]
    assert check.result["agent_id"] is None
    assert not ident.exists()
    assert total_requests(svc) == 0
    assert svc.token not in check.output
    assert leftovers(debug_env) == []


def test_action_plugin_refuses_headers_and_headers_file_together(svc, tmp_path, debug_env):
    headers_file = write_headers(tmp_path, {"Authorization": "Bearer " + svc.token})
    args = json_args(svc, tmp_path / "mtls", headers={"X-Fleet-Site": "plant-7-secret-site"},
                     headers_file=str(headers_file))
    run = run_task(tmp_path, "mtls_identity", args, verbosity=4)
    assert run.failed
    assert "set either headers or headers_file, not both" in run.result["msg"]
    assert "plant-7-secret-site" not in run.output and svc.token not in run.output
    assert total_requests(svc) == 0
    assert leftovers(debug_env) == []


@pytest.mark.parametrize("headers, words", [
    (["Authorization: Bearer x"], "headers must be a dictionary"),
    ("not a dict 0123456789", "headers must be a dictionary"),
])
def test_action_plugin_refuses_headers_that_are_not_a_dict(svc, tmp_path, headers, words):
    run = run_task(tmp_path, "mtls_identity", json_args(svc, tmp_path / "mtls", headers=headers))
    assert run.failed and words in run.result["msg"]
    assert "0123456789" not in run.output and "Bearer x" not in run.output
    assert total_requests(svc) == 0


def test_the_collection_carries_the_action_plugin(svc, tmp_path, debug_env):
    """Without the repository's ansible.cfg (molecule, a playbook elsewhere), the installed
    collection still puts the plugin in front of the module."""
    ident = tmp_path / "mtls"
    args = json_args(svc, ident, headers={"Authorization": "Bearer " + svc.token})
    play = [{
        "name": "Use the collection's plugins", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Run the module", "autonomy_edge.fleet_mtls.mtls_identity": args}],
    }]
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps(play))
    env = ansible_env()
    env.pop("ANSIBLE_CONFIG", None)
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-vvv",
                           "-e", json.dumps({"ansible_python_interpreter": VENV_PYTHON}), str(playbook)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "config file = None" in output or "No config file found" in output  # not the repo's
    assert re.search(r'EXEC .*umask 077 && mkdir -p .* && cat > "\$d/%s"' % re.escape(HEADERS_FILE_NAME),
                     output), output[-3000:]
    assert svc.token not in output
    assert svc.request_count(AGENT_EP) == 1
    assert leftovers(debug_env) == []
