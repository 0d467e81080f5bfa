"""The agent's restart with mtls_agent_restart=docker (the role's default), run for real.

Each case is a real ``ansible-playbook playbooks/provision.yml`` over local "devices" against the
reference service: the mtls_identity module restarts the container right after the device's own
swap (no handler) and then inspects it (the identity mounted read-only at ``~/.mtls``, the right
``SSL_CERT_FILE``). What differs is the ``docker`` the devices find on their PATH:

- none at all (a device without docker): nothing to restart, not a failure for a new device
  (its agent reads the identity when it starts), a failure for a rotation (the running agent
  would keep presenting the old certificate), owed to the next run;
- a stand-in ``docker`` that answers per container name like the real CLI does (restarted, "No
  such container", daemon down, a usage error; ``inspect`` with the mounts and environment of a
  well-made agent container): only the missing container of a new device is tolerated;
- a ``docker`` file that cannot be executed: a failure, not "no docker".

The stand-in is a shell script because no docker daemon runs here; its answers are the CLI's.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import textwrap

import pytest

from tests.fixtures.playbook_fleet import BIN, Fleet, explain, write_inventory

pytestmark = pytest.mark.integration

NOTHING_RESTARTED = "nothing restarted (the agent will read the new identity when it starts)"
# ansible-core's run_command turns a missing program into a module failure of its own unless
# told not to: the module then loses its report row (see the report of this test suite).
RUN_COMMAND_ENOENT = "No such file or directory: b'docker'"

# Answers of `docker restart NAME` and `docker inspect --type container NAME` (docker CLI
# 20-27) for the containers the hosts name; inspect-NAME.json next to the script is the
# container's inspect answer.
FAKE_DOCKER = textwrap.dedent(
    """\
    #!/bin/sh
    echo "$*" >> "$(dirname "$0")/docker-calls.log"
    case "$1" in
      restart) name="$2" ;;
      inspect) [ "$2 $3" = "--type container" ] || { echo "unexpected docker call: $*" >&2; exit 64; }; name="$4" ;;
      *) echo "unexpected docker call: $*" >&2; exit 64 ;;
    esac
    case "$name" in
      agent-running)
        [ "$1" = inspect ] && cat "$(dirname "$0")/inspect-$name.json"
        [ "$1" = restart ] && echo "$name"
        exit 0 ;;
      agent-absent)
        [ "$1" = inspect ] && { echo "Error: No such container: $name" >&2; exit 1; }
        echo "Error response from daemon: No such container: $name" >&2; exit 1 ;;
      agent-daemon-down)
        echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." \\
             "Is the docker daemon running?" >&2; exit 1 ;;
      agent-usage) echo "unknown flag: --bogus" >&2; exit 2 ;;
    esac
    echo "unexpected container $name" >&2; exit 64
    """
)


def path_without_docker(*first: pathlib.Path) -> str:
    """This process's PATH without any directory holding a ``docker``, after ``first``."""
    dirs = [str(d) for d in first] + [str(BIN)]
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if d and not os.path.lexists(os.path.join(d, "docker")):
            dirs.append(d)
    return os.pathsep.join(dirs)


def fake_docker(directory: pathlib.Path, mode: int = 0o755) -> pathlib.Path:
    directory.mkdir(exist_ok=True)
    docker = directory / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(mode)
    return directory


@pytest.fixture
def docker_fleet(tmp_path, service):
    """``make(hosts, path)``: a fleet whose hosts restart the agent with docker, PATH ``path``."""

    def make(hosts: dict[str, dict], path: str) -> Fleet:
        inventory = write_inventory(tmp_path / "inventory.yml", hosts, mtls_agent_restart="docker")
        return Fleet(tmp_path, service, inventory=inventory, env={"PATH": path})

    return make


def test_device_without_docker_is_provisioned_but_a_rotation_it_cannot_restart_fails(docker_fleet):
    path = path_without_docker()
    assert shutil.which("docker", path=path) is None, path
    fleet = docker_fleet({"edge-nodocker": {"mtls_agent_container": "orchestrator_agent"}}, path)
    run = fleet.play("provision.yml")
    if run.rc != 0 and RUN_COMMAND_ENOENT in run.output:
        pytest.fail("product: runner.py runs docker with module.run_command, which fails the module on a "
                     "missing program instead of raising FileNotFoundError for restart._run")
    assert run.rc == 0, explain(run)
    assert run.recap["edge-nodocker"]["failed"] == 0, explain(run)
    row = fleet.rows()["edge-nodocker"]
    assert (row["action"], row["verify"], row["restarted"], row["blackout_ms"]) == ("created", "ok", False, None), row
    assert fleet.gate_accepts(fleet.cert("edge-nodocker"), fleet.key("edge-nodocker"))
    # A rotation, where the running agent would keep its old certificate, fails the host with
    # why nothing was restarted (mtls_confirm none: nobody else can tell), and owes the restart.
    run = fleet.play("provision.yml", "-e", "mtls_rotate=always")
    assert run.rc != 0 and run.recap["edge-nodocker"]["failed"] == 1, explain(run)
    row = fleet.rows()["edge-nodocker"]
    assert (row["action"], row["phase"], row["restarted"], row["cloud"]) == ("rotated", "restart", False,
                                                                             "not asked"), row
    assert row["error"].startswith("no docker command on this host, so no container orchestrator_agent to "
                                   "restart: the running agent keeps presenting its old certificate"), row
    assert "mtls_agent_restart=none" in row["error"], row
    assert (fleet.host_dir("edge-nodocker") / ".mtls-restart-owed").exists()
    # Unless restarting was switched off: then the operator restarts the agent.
    run = fleet.play("provision.yml", "-e", "mtls_rotate=always", "-e", "mtls_agent_restart=none")
    assert run.rc == 0, explain(run)


def test_docker_answers_are_told_apart(docker_fleet, tmp_path):
    fake_bin = fake_docker(tmp_path / "fake-bin")
    hosts = {
        "edge-running": {"mtls_agent_container": "agent-running"},
        "edge-absent": {"mtls_agent_container": "agent-absent"},
        "edge-daemon-down": {"mtls_agent_container": "agent-daemon-down"},
        "edge-usage": {"mtls_agent_container": "agent-usage"},
    }
    fleet = docker_fleet(hosts, path_without_docker(fake_bin))
    # A well-made agent container: the identity read-only at /root/.mtls, its CA as SSL_CERT_FILE.
    (fake_bin / "inspect-agent-running.json").write_text(json.dumps([{
        "Mounts": [{"Source": str(fleet.host_dir("edge-running")), "Destination": "/root/.mtls", "RW": False}],
        "Config": {"Env": ["PATH=/usr/bin", "SSL_CERT_FILE=/root/.mtls/server-ca.crt"]}}]))
    run = fleet.play("provision.yml")
    assert run.rc != 0, explain(run)
    recap, rows = run.recap, fleet.rows()
    # restarted; no container: both fine
    assert recap["edge-running"]["failed"] == 0 and recap["edge-absent"]["failed"] == 0, explain(run)
    assert (rows["edge-running"]["restarted"], rows["edge-running"]["verify"]) == (True, "ok"), rows["edge-running"]
    assert rows["edge-running"]["blackout_ms"] >= 0
    assert (rows["edge-absent"]["restarted"], rows["edge-absent"]["verify"]) == (False, "ok"), rows["edge-absent"]
    # any other answer is a failure of the restart phase, whatever its exit code
    assert recap["edge-daemon-down"]["failed"] == 1, explain(run)
    assert recap["edge-usage"]["failed"] == 1, explain(run)
    assert rows["edge-daemon-down"]["phase"] == rows["edge-usage"]["phase"] == "restart"
    assert "Cannot connect to the Docker daemon" in rows["edge-daemon-down"]["error"]
    assert "unknown flag" in rows["edge-usage"]["error"]
    # one restart each, right after the swap; the hosts that got one inspected afterwards
    calls = sorted((fake_bin / "docker-calls.log").read_text().splitlines())
    assert calls == ["inspect --type container agent-absent", "inspect --type container agent-running"] + [
        f"restart agent-{name}" for name in ("absent", "daemon-down", "running", "usage")]
    # the identity itself was provisioned everywhere: only the restart failed
    assert all(fleet.cert(host).exists() for host in hosts)
    assert {rows[h]["action"] for h in hosts} == {"created"}
    # A rotation with no container to restart fails, saying why the agent was not restarted.
    run = fleet.play("provision.yml", "--limit", "edge-absent", "-e", "mtls_rotate=always")
    assert run.rc != 0, explain(run)
    assert fleet.rows()["edge-absent"]["error"].startswith(f"no container agent-absent on this host: "
                                                           f"{NOTHING_RESTARTED}: the running agent"), explain(run)


def test_a_container_that_does_not_get_the_identity_fails_the_verification(docker_fleet, tmp_path):
    """The container restarts fine but mounts the identity read-write and lacks SSL_CERT_FILE:
    the agent in it would not use what was delivered."""
    fake_bin = fake_docker(tmp_path / "fake-bin")
    fleet = docker_fleet({"edge-running": {"mtls_agent_container": "agent-running"}}, path_without_docker(fake_bin))
    (fake_bin / "inspect-agent-running.json").write_text(json.dumps([{
        "Mounts": [{"Source": str(fleet.host_dir("edge-running")), "Destination": "/root/.mtls", "RW": True}],
        "Config": {"Env": ["PATH=/usr/bin"]}}]))
    run = fleet.play("provision.yml")
    assert run.rc != 0, explain(run)
    row = fleet.rows()["edge-running"]
    assert (row["phase"], row["verify"], row["verify_failure"], row["restarted"]) == (
        "verify", "failed", "container", True), row
    assert "mounted read-write" in row["error"] and "SSL_CERT_FILE is unset" in row["error"], row
    assert "--env-file %s" % (fleet.host_dir("edge-running") / "agent.env") in row["error"], row


def test_docker_that_cannot_be_executed_is_a_failure_not_a_missing_docker(docker_fleet, tmp_path):
    fake_bin = fake_docker(tmp_path / "fake-bin", mode=0o644)  # present, not executable: EACCES, not ENOENT
    fleet = docker_fleet({"edge-noexec": {"mtls_agent_container": "agent-running"}}, path_without_docker(fake_bin))
    run = fleet.play("provision.yml")
    assert run.rc != 0, explain(run)
    assert run.recap["edge-noexec"]["failed"] == 1, explain(run)
    assert "no docker command" not in run.output and NOTHING_RESTARTED not in run.output
    assert "Permission denied" in run.output
