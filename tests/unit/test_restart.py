"""The restart methods that run nothing, and the container check's verdicts on real `inspect`
answers (the shape docker and podman print); tests/module/test_restart_commands.py runs real commands."""

from __future__ import annotations

import json

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.restart import (
    RestartError,
    inspect_container,
    subprocess_runner,
)
from tests.fixtures.product import restart

IDENTITY = "/home/agent/.mtls"
CERT_FILE = "/root/.mtls/server-ca.crt"


def test_an_empty_restart_command_is_an_error():
    with pytest.raises(RestartError, match="empty"):
        restart(method="command", agent_restart_command="  ").run(subprocess_runner)


def test_none_restarts_nothing_and_says_so():
    outcome = restart(method="none").run(subprocess_runner)
    assert not outcome.restarted and "not restarted" in outcome.detail


def answer(mounts, env):
    payload = json.dumps([{"Mounts": mounts, "Config": {"Env": env}}])
    return lambda argv: (0, payload, "")


GOOD_MOUNT = [{"Type": "bind", "Source": IDENTITY, "Destination": "/root/.mtls", "RW": False}]


def test_a_container_that_gets_its_files_and_trust_passes():
    runner = answer(GOOD_MOUNT, ["PATH=/usr/bin", "SSL_CERT_FILE=" + CERT_FILE])
    assert inspect_container(runner, "agent", IDENTITY, "/root", CERT_FILE) is None


@pytest.mark.parametrize(("mounts", "env", "problem"), [
    ([], ["SSL_CERT_FILE=" + CERT_FILE], "does not mount /home/agent/.mtls at /root/.mtls"),
    ([dict(GOOD_MOUNT[0], RW=True)], ["SSL_CERT_FILE=" + CERT_FILE], "read-write"),
    ([dict(GOOD_MOUNT[0], Source="/srv/old")], ["SSL_CERT_FILE=" + CERT_FILE], "mounted from /srv/old"),
    (GOOD_MOUNT, ["PATH=/usr/bin"], "SSL_CERT_FILE is unset"),
])
def test_a_container_that_misses_something_gets_the_exact_flags(mounts, env, problem):
    message = inspect_container(answer(mounts, env), "agent", IDENTITY, "/root", CERT_FILE)
    assert problem in message
    assert message.endswith(
        "docker run -v /home/agent/.mtls:/root/.mtls:ro --env-file /home/agent/.mtls/agent.env ...")


def test_system_trust_refuses_a_container_that_overrides_the_store():
    message = inspect_container(answer(GOOD_MOUNT, ["SSL_CERT_FILE=/x.pem"]), "agent", IDENTITY, "/root", None)
    assert "replaces the default trust store" in message


def test_a_missing_container_is_not_a_problem_of_its_configuration():
    runner = lambda argv: (1, "[]", "Error: no such container agent")  # noqa: E731
    assert inspect_container(runner, "agent", IDENTITY, "/root", CERT_FILE) is None
