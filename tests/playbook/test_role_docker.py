"""A container agent through the role (mtls_agent_restart=docker), with real containers.

No Docker engine runs here; podman is CLI-compatible (``mtls_agent_docker_command: podman``).
Each host's agent is a container named as the role expects: one started the way the agent
must be (the identity directory mounted read-only at /root/.mtls, ``--env-file agent.env``),
one without the mount, one without the env file. A rotation restarts the right one (its start
time changes) and its verification passes; the other two fail with the exact ``docker run``
flags to use. The stock-agent stand-in then connects from inside the right container, with the
container's own environment, and fails from inside the one without ``SSL_CERT_FILE``.

The stand-in needs aiohttp and python-socketio in the container: the image has neither and
there is no network, so the controller's virtualenv libraries are mounted read-only (same
Python minor version as the image's, else that part is skipped).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import sysconfig

import pytest

from tests.fixtures.playbook_fleet import REPO, RoleFleet

IMAGE = "localhost/debian-py:bookworm"
GOOD, NO_MOUNT, NO_ENV_FILE = "dk-good", "dk-no-mount", "dk-no-env-file"
HOSTS = (GOOD, NO_MOUNT, NO_ENV_FILE)
SITE = "/opt/fleet-mtls-site"
STOCK_AGENT = "/opt/stock_agent.py"


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: rc {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def podman_usable() -> bool:
    return shutil.which("podman") is not None and podman("image", "exists", IMAGE, check=False).returncode == 0


pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not podman_usable(), reason=f"needs podman and the image {IMAGE}")]


def started_at(name: str) -> str:
    return podman("inspect", "--type", "container", "--format", "{{.State.StartedAt}}", name).stdout.strip()


def libraries_match() -> bool:
    """The image's python3 can import the controller's aiohttp/socketio builds."""
    image = podman("run", "--rm", IMAGE, "python3", "-c", "import sys; print(sys.version_info[:2])").stdout.strip()
    return image == str(sys.version_info[:2])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, shared_service):
    shared_service.clear_faults()
    prefix = "fleet-mtls-test-" + secrets.token_hex(4)
    names = {host: f"{prefix}-{host}" for host in HOSTS}
    fleet = RoleFleet(tmp_path_factory.mktemp("docker"), shared_service,
                      {h: {"mtls_agent_container": names[h]} for h in HOSTS},
                      mtls_agent_restart="docker", mtls_agent_docker_command="podman")
    fleet.containers = names
    try:
        # No container yet: nothing to restart, not a failure.
        fleet.first = fleet.play("provision.yml")
        for host in HOSTS:
            identity = fleet.host_dir(host)
            flags = {GOOD: ["-v", f"{identity}:/root/.mtls:ro", "--env-file", f"{identity}/agent.env"],
                     NO_MOUNT: ["--env-file", f"{identity}/agent.env"],
                     NO_ENV_FILE: ["-v", f"{identity}:/root/.mtls:ro"]}[host]
            podman("run", "-d", "--name", names[host], "--network", "host", "--init", *flags,
                   "-v", f"{sysconfig.get_paths()['purelib']}:{SITE}:ro", "-e", f"PYTHONPATH={SITE}",
                   "-v", f"{REPO / 'tests' / 'fixtures' / 'stock_agent.py'}:{STOCK_AGENT}:ro",
                   IMAGE, "sleep", "infinity")
        fleet.started = {host: started_at(names[host]) for host in HOSTS}
        fleet.rotation = fleet.play("provision.yml", "-e", "mtls_rotate=always")
        yield fleet
    finally:
        for name in names.values():
            podman("rm", "-f", "-t", "0", name, check=False)


def test_without_containers_nothing_is_restarted_and_nothing_fails(fleet):
    assert fleet.first.rc == 0, fleet.first.explain()
    for host in HOSTS:
        assert fleet.first.recap[host]["failed"] == 0, fleet.first.explain()
        assert fleet.agent_env(host) == {"SSL_CERT_FILE": "/root/.mtls/server-ca.crt"}  # as the container sees it


def test_a_rotation_restarts_the_agent_container_and_verifies_it(fleet):
    run = fleet.rotation
    assert run.rc != 0, run.explain()  # the two misconfigured containers fail
    good = fleet.rows()[GOOD]
    assert (good["action"], good["restarted"], good["verify"], good["phase"]) == ("rotated", True, "ok", ""), good
    assert started_at(fleet.containers[GOOD]) != fleet.started[GOOD]
    assert isinstance(good["blackout_ms"], int)


@pytest.mark.parametrize(("host", "problem"), [
    (NO_MOUNT, "it does not mount {dir} at /root/.mtls"),
    (NO_ENV_FILE, "its SSL_CERT_FILE is unset, not /root/.mtls/server-ca.crt"),
])
def test_a_container_that_does_not_get_its_files_fails_with_the_docker_run_flags(fleet, host, problem):
    identity = fleet.host_dir(host)
    row = fleet.rows()[host]
    assert (row["action"], row["phase"], row["verify"], row["verify_failure"]) == (
        "rotated", "verify", "failed", "container"), row
    flags = f"docker run -v {identity}:/root/.mtls:ro --env-file {identity}/agent.env ..."
    assert row["error"] == (f"the agent container {fleet.containers[host]} does not get what the agent reads: "
                            f"{problem.format(dir=identity)}. Recreate it with: {flags}"), row["error"]
    assert fleet.rotation.recap[host]["failed"] == 1


def exec_stock_agent(fleet, host):
    proc = podman("exec", fleet.containers[host], "python3", STOCK_AGENT, fleet.service.gate_url, check=False)
    return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {"stderr": proc.stderr}


def test_the_stock_agent_connects_from_inside_the_container(fleet):
    if not libraries_match():
        pytest.skip("the image's Python differs from the controller's: aiohttp/socketio cannot be mounted in")
    inside = exec_stock_agent(fleet, GOOD)
    assert inside.get("connected") is True, inside
    without = exec_stock_agent(fleet, NO_ENV_FILE)
    assert without.get("connected") is False and "CERTIFICATE_VERIFY_FAILED" in without["detail"], without
