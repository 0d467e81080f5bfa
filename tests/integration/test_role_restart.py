"""The role's restart handler with mtls_agent_restart=docker (the role's default), run for real.

Each case is a real ``ansible-playbook playbooks/provision.yml`` over local "devices" against the
reference service: the new identity notifies the handler, which runs ``tasks/restart_docker.yml``.
What differs is the ``docker`` the devices find on their PATH:

- none at all (a device without docker): nothing to restart, not a failure;
- a stand-in ``docker`` that answers per container name like the real CLI does (restarted, "No
  such container", daemon down, a usage error): only the missing container is tolerated;
- a ``docker`` file that cannot be executed: a failure, not "no docker".

The stand-in is a shell script because no docker daemon runs here; its answers are the CLI's.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import textwrap

import pytest

from tests.integration.test_playbook_fleet import BIN, Fleet, explain, write_inventory

pytestmark = pytest.mark.integration

NOTHING_RESTARTED = "nothing restarted (the agent will read the new identity when it starts)"

# Answers of `docker restart NAME` (docker CLI 20-27) for the containers the hosts name.
FAKE_DOCKER = textwrap.dedent(
    """\
    #!/bin/sh
    echo "$*" >> "$(dirname "$0")/docker-calls.log"
    [ "$1" = restart ] || { echo "unexpected docker call: $*" >&2; exit 64; }
    case "$2" in
      agent-running) echo "$2"; exit 0 ;;
      agent-absent) echo "Error response from daemon: No such container: $2" >&2; exit 1 ;;
      agent-daemon-down)
        echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." \\
             "Is the docker daemon running?" >&2; exit 1 ;;
      agent-usage) echo "unknown flag: --bogus" >&2; exit 2 ;;
    esac
    echo "unexpected container $2" >&2; exit 64
    """
)


def path_without_docker(*first: pathlib.Path) -> str:
    """This process's PATH without any directory holding a ``docker``, after ``first``."""
    dirs = [str(d) for d in first] + [str(BIN)]
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if d and not os.path.lexists(os.path.join(d, "docker")):
            dirs.append(d)
    return os.pathsep.join(dirs)


@pytest.fixture
def docker_fleet(tmp_path, service):
    """``make(hosts, path)``: a fleet whose hosts restart the agent with docker, PATH ``path``."""
    if os.geteuid() != 0:
        pytest.skip("the handler runs docker through become unless the device user is root")

    def make(hosts: dict[str, dict], path: str) -> Fleet:
        inventory = write_inventory(tmp_path / "inventory.yml", hosts, mtls_agent_restart="docker")
        return Fleet(tmp_path, service, inventory=inventory, env={"PATH": path})

    return make


def test_device_without_docker_is_provisioned_and_says_why_nothing_was_restarted(docker_fleet):
    path = path_without_docker()
    assert shutil.which("docker", path=path) is None, path
    fleet = docker_fleet({"edge-nodocker": {"mtls_agent_container": "orchestrator_agent"}}, path)
    run = fleet.play("provision.yml")
    assert run.rc == 0, explain(run)
    assert run.recap["edge-nodocker"]["failed"] == 0, explain(run)
    assert f"No docker command on edge-nodocker, so no container orchestrator_agent: {NOTHING_RESTARTED}" in run.output
    assert "No container orchestrator_agent" not in run.output
    row = fleet.rows()["edge-nodocker"]
    assert row["action"] == "created" and row["verify"] == "ok", row
    assert fleet.gate_accepts(fleet.cert("edge-nodocker"), fleet.key("edge-nodocker"))


def test_docker_answers_are_told_apart(docker_fleet, tmp_path):
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    docker = fake_bin / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    hosts = {
        "edge-running": {"mtls_agent_container": "agent-running"},
        "edge-absent": {"mtls_agent_container": "agent-absent"},
        "edge-daemon-down": {"mtls_agent_container": "agent-daemon-down"},
        "edge-usage": {"mtls_agent_container": "agent-usage"},
    }
    fleet = docker_fleet(hosts, path_without_docker(fake_bin))
    run = fleet.play("provision.yml")
    assert run.rc != 0, explain(run)
    recap = run.recap
    # restarted; no container: both fine
    assert recap["edge-running"]["failed"] == 0 and recap["edge-absent"]["failed"] == 0, explain(run)
    assert f"No container agent-absent on edge-absent: {NOTHING_RESTARTED}" in run.output, explain(run)
    assert "No container agent-running" not in run.output and "No docker command" not in run.output
    # any other answer is a failure, whatever its exit code
    assert recap["edge-daemon-down"]["failed"] == 1, explain(run)
    assert recap["edge-usage"]["failed"] == 1, explain(run)
    assert "Cannot connect to the Docker daemon" in run.output
    calls = sorted((fake_bin / "docker-calls.log").read_text().splitlines())
    assert calls == [f"restart agent-{name}" for name in ("absent", "daemon-down", "running", "usage")]
    # the identity itself was provisioned everywhere: only the restart failed
    assert all(fleet.cert(host).exists() for host in hosts)


def test_docker_that_cannot_be_executed_is_a_failure_not_a_missing_docker(docker_fleet, tmp_path):
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    docker = fake_bin / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o644)  # present, not executable: the command module gets EACCES, not ENOENT
    fleet = docker_fleet({"edge-noexec": {"mtls_agent_container": "agent-running"}}, path_without_docker(fake_bin))
    run = fleet.play("provision.yml")
    assert run.rc != 0, explain(run)
    assert run.recap["edge-noexec"]["failed"] == 1, explain(run)
    assert "No docker command" not in run.output and NOTHING_RESTARTED not in run.output
