"""The identity module run without AnsiballZ (plugin_utils/lean_run.py): where Ansible pipelines,
the action sends the module's own code on one command's standard input. The device must get
exactly what the module gives it, the API headers' values masked as AnsibleModule masks them."""
from __future__ import annotations

import json
import os
import re

import pytest

LEAN = " - mtls_identity && sleep 0'"
MODULE = re.compile(r"python[\d.]*( \S*/AnsiballZ_mtls_identity\.py)? && sleep 0'$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
# The module's own echo of its arguments (a lean run has none), and when the run looked.
VOLATILE = ("invocation", "checked_at")


def execs(result) -> list[str]:
    return re.findall(r"EXEC (.*)$", result.output, re.MULTILINE)


def ran_lean(result) -> bool:
    runs = [cmd for cmd in execs(result) if cmd.endswith(LEAN) or MODULE.search(cmd)]
    assert len(runs) == 1, runs
    return runs[0].endswith(LEAN)


def stable(value):
    """``value`` without what depends on the moment of the run (a new certificate's dates to
    the day)."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    if isinstance(value, str) and TIMESTAMP.match(value):
        return value[:10]
    return value


@pytest.mark.parametrize("check", [False, True])
def test_a_lean_run_answers_as_the_module(device, svc, tmp_path, check):
    """An unchanged identity, then one due for rotation in check mode: the lean run never
    imports ansible.module_utils.basic and returns, key for key, what the module returns."""
    device.seed(days=400 if not check else 20)
    usage = tmp_path / "usage.json"
    lean = device.run(via="ansible", check=check, verbosity=3, hooks={"FLEET_FAULTS_RUSAGE": str(usage)},
                      env={"ANSIBLE_PIPELINING": "1"})
    assert not lean.failed and ran_lean(lean), lean
    modules = json.loads(usage.read_text())["modules"]
    assert "ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.runner" in modules
    assert "ansible.module_utils.basic" not in modules
    before = device.state()
    module = device.run(via="ansible", check=check, verbosity=3, env={"ANSIBLE_PIPELINING": "0"})
    assert not module.failed and "AnsiballZ_mtls_identity.py" in module.output, module
    assert device.state() == before
    assert lean.result["action"] == module.result["action"] == ("rotated" if check else "unchanged")
    assert stable(lean.result) == stable(module.result)


def test_a_run_with_the_api_headers_is_lean_and_masks_them_as_ansiblemodule_does(device, svc):
    """The token given to the task (the action writes it to a 0600 file on the device; never in
    the script): the rotation runs lean, uses it, and -vvvv shows it nowhere. A headers file on
    the device whose value also appears in the result (``client.crt``, in the paths): the lean
    run masks it as AnsibleModule does, key for key the module's answer."""
    device.seed()
    rotated = device.run(via="ansible", verbosity=4, env={"ANSIBLE_PIPELINING": "1"},
                         headers={"Authorization": "Bearer " + svc.token}, rotate="always")
    assert rotated.result["action"] == "rotated" and ran_lean(rotated), rotated
    assert svc.token not in rotated.output
    device.assert_registered()
    headers_file = device.work / "headers.json"
    headers_file.write_text(json.dumps({"Authorization": "Bearer " + svc.token, "X-Probe": "client.crt"}))
    os.chmod(headers_file, 0o600)
    lean = device.run(via="ansible", verbosity=3, env={"ANSIBLE_PIPELINING": "1"}, headers_file=str(headers_file))
    assert lean.result["action"] == "unchanged" and ran_lean(lean), lean
    assert lean.result["cert_path"].endswith("/********") and "client.crt" not in json.dumps(lean.result)
    module = device.run(via="ansible", verbosity=3, env={"ANSIBLE_PIPELINING": "0"}, headers_file=str(headers_file))
    assert not ran_lean(module) and stable(lean.result) == stable(module.result)


@pytest.mark.parametrize("pipelining", ["1", "0"])
def test_the_restart_command_runs_as_ansiblemodule_runs_it(device, svc, tmp_path, pipelining):
    """mtls_agent_restart=command: its arguments' variables are expanded (as
    AnsibleModule.run_command does), no shell; in a lean run its standard input is /dev/null,
    never the pipe the controller sent the script on."""
    device.seed()
    marker = tmp_path / "restarted"
    stdin_seen = tmp_path / "stdin"
    script = tmp_path / "restart.sh"
    # An argument left unexpanded is no absolute path: nothing is made in the run's directory.
    script.write_text('#!/bin/sh\ncase "$1" in /*) touch "$1";; esac\nreadlink /proc/$$/fd/0 > "%s"\n' % stdin_seen)
    script.chmod(0o755)
    result = device.run(via="ansible", verbosity=3, rotate="always", env={"ANSIBLE_PIPELINING": pipelining,
                        "FLEET_TEST_MARKER": str(marker)}, agent_restart="command",
                        agent_restart_command="%s $FLEET_TEST_MARKER" % script,
                        phases=["identity", "config"])
    assert not result.failed and result.result["action"] == "rotated", result
    assert ran_lean(result) == (pipelining == "1")
    assert marker.exists()
    if pipelining == "1":
        assert stdin_seen.read_text().strip() == "/dev/null"


def test_a_later_run_takes_the_code_the_device_kept(device, svc, tmp_path):
    """The first lean run keeps its compiled code on the device (module_utils/lean_cache.py): the
    next one compiles nothing, never decompressing the sources it carries, and answers alike."""
    device.seed()
    env = {"ANSIBLE_PIPELINING": "1", "PYTHONDONTWRITEBYTECODE": ""}  # empty: Python may write bytecode
    first = device.run(via="ansible", verbosity=3, env=env)
    assert first.result["action"] == "unchanged" and ran_lean(first), first
    usage = tmp_path / "usage.json"
    again = device.run(via="ansible", verbosity=3, env=env, hooks={"FLEET_FAULTS_RUSAGE": str(usage)})
    assert ran_lean(again) and stable(again.result) == stable(first.result)
    assert json.loads(usage.read_text())["lean_sources_read"] is False
