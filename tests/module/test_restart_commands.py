"""Restarting the agent with real commands run by the module's subprocess runner
(tests/unit/test_restart.py: the container check's verdicts on real `inspect` answers)."""

from __future__ import annotations

import sys

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.restart import (
    RestartError,
    subprocess_runner,
)
from tests.fixtures.product import restart


def test_command_restart_runs_the_command_without_a_shell(tmp_path):
    log = tmp_path / "restarts.log"
    script = tmp_path / "restart"
    script.write_text("#!/bin/sh\necho \"$@\" >> %s\n" % log)
    script.chmod(0o755)
    command = "%s one 'two words' ;echo" % script
    outcome = restart(method="command", agent_restart_command=command).run(subprocess_runner)
    assert outcome.restarted and outcome.seconds >= 0
    assert log.read_text() == "one two words ;echo\n"  # no shell: ';' is an argument


def test_a_failing_restart_command_is_an_error(tmp_path):
    with pytest.raises(RestartError, match="rc 3"):
        command = "%s -c 'import sys; sys.exit(3)'" % sys.executable
        restart(method="command", agent_restart_command=command).run(subprocess_runner)


def test_no_docker_command_means_no_container_to_restart():
    outcome = restart(method="docker", docker_command="/nonexistent/docker").run(subprocess_runner)
    assert not outcome.restarted and "no /nonexistent/docker command" in outcome.detail
