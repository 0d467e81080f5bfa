"""The cloud confirms the running agent, through the role, with the agent run as it really runs.

- **systemd**: a Debian 12 container booting systemd (the pull tests' image), the device reached
  with the ``containers.podman.podman`` connection and its own ``/usr/bin/python3`` (Debian's
  cryptography and requests); the stand-in agent (``tests/fixtures/agent_daemon.py``, the venv's
  site-packages mounted read-only for python-socketio and aiohttp) is a unit the role's drop-in
  gives its ``agent.env``; ``mtls_agent_restart: systemd`` restarts it.
- **docker**: the stand-in agent in a podman container (``docker`` is podman), the identity
  mounted read-only at ``/root/.mtls`` and ``--env-file agent.env``, the way the agent must run;
  ``mtls_agent_restart: docker`` restarts it.
- **verify.yml**: the audit shows the cloud's view of every host and flags the silent ones.

The api-service deployment (JSON upload with the bearer token, pre-assigned IDs): confirmation
is the default, and the controller holds the token (the demo inventory's ``mtls_api_headers``),
so it asks. The agents heartbeat every 0.5 s. Waits are bounded polls.
"""

from __future__ import annotations

import secrets
import sys
import sysconfig

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.playbook_fleet import REPO, RoleFleet
from tests.fixtures.servicectl import AgentEvents
from tests.playbook.test_pull_timer import device_image, podman, wait_for_boot  # noqa: F401 - device_image: a fixture

pytestmark = pytest.mark.integration

HEARTBEAT = "/agent/heartbeat"
SITE = "/opt/fleet-mtls-site"
DAEMON = "/opt/agent_daemon.py"
AGENT_LOG = "/var/log/agent"
API_SERVICE = {"mtls_api_flavor": "api_service", "mtls_confirm_timeout": 20,
               "mtls_api_ca": "", "mtls_api_ca_src": "{{ lookup('ansible.builtin.env', 'MTLS_DEMO_CA') }}"}
BOOKWORM = "localhost/debian-py:bookworm"


def daemon_argv(gate_url: str) -> list[str]:
    """The stand-in agent as the container or the unit runs it (test-speed intervals)."""
    return ["/usr/bin/python3", DAEMON, gate_url, "--log", f"{AGENT_LOG}/agent.log",
            "--interval", "0.5", "--retry-delay", "0.2", "--backoff-base", "0.2", "--backoff-max", "1"]


def libraries_match(image: str) -> bool:
    """The image's python3 can import the venv's python-socketio/aiohttp builds (same minor)."""
    out = podman("run", "--rm", image, "python3", "-c", "import sys; print(sys.version_info[:2])").stdout.strip()
    return out == str(sys.version_info[:2])


def row_of(fleet, host):
    return fleet.rows()[host]


def started_pids(events: AgentEvents) -> list[int]:
    return [event["pid"] for event in events.read("started")]


# --------------------------------------------------------------------------- systemd


@pytest.fixture(scope="module")
def systemd_device(device_image, tmp_path_factory, shared_service):  # noqa: F811 - the imported fixture
    if not libraries_match(device_image):
        pytest.skip("the image's Python differs from the venv's: python-socketio cannot be mounted in")
    shared_service.clear_faults()
    root = tmp_path_factory.mktemp("confirm-systemd")
    logs = root / "agent-log"
    logs.mkdir()
    logs.chmod(0o777)
    name = "fleet-mtls-confirm-sd-" + secrets.token_hex(4)
    unit = "stand-in-agent"
    unit_file = root / f"{unit}.service"
    unit_file.write_text(
        "[Unit]\nDescription=the stock agent's stand-in (tests/fixtures/agent_daemon.py)\n\n"
        f"[Service]\nEnvironment=HOME=/root PYTHONPATH={SITE}\n"
        f"ExecStart={' '.join(daemon_argv(shared_service.gate_url))}\n")
    podman("run", "-d", "--name", name, "--hostname", "sd-agent", "--systemd=always", "--network", "host",
           "-v", f"{sysconfig.get_paths()['purelib']}:{SITE}:ro",
           "-v", f"{REPO / 'tests' / 'fixtures' / 'agent_daemon.py'}:{DAEMON}:ro",
           "-v", f"{logs}:{AGENT_LOG}", device_image, "/sbin/init")
    try:
        wait_for_boot(name)
        podman("cp", str(unit_file), f"{name}:/etc/systemd/system/{unit}.service")
        agent_id = shared_service.reserve_id()
        fleet = RoleFleet(root, shared_service, {"sd-agent": {
            "ansible_connection": "containers.podman.podman", "ansible_host": name,
            "ansible_python_interpreter": "/usr/bin/python3", "mtls_dir": "", "mtls_agent_id": agent_id}},
            mtls_agent_restart="systemd", mtls_agent_service=unit, **API_SERVICE)
        fleet.agent_id_given, fleet.events, fleet.container = agent_id, AgentEvents(logs / "agent.log"), name
        # Not under /tmp: a container booting systemd mounts a tmpfs there, which podman's file
        # transfer (through the container's storage) does not see.
        fleet.env_extra["ANSIBLE_REMOTE_TEMP"] = "/var/tmp/ansible-remote"
        fleet.first = fleet.play("provision.yml")
        yield fleet
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


def test_systemd_the_new_device_is_confirmed_by_the_unit_the_role_restarted(systemd_device):
    fleet = systemd_device
    run = fleet.first
    assert run.rc == 0, run.explain()
    row = row_of(fleet, "sd-agent")
    assert (row["action"], row["agent_id"], row["restarted"], row["cloud"], row["phase"]) == (
        "created", fleet.agent_id_given, True, "active", ""), row
    assert row["agent_uptime_s"] is not None and row["heartbeat_at"], row
    pid = started_pids(fleet.events)[-1]
    fleet.events.wait_for("connected", pid=pid)  # the unit's agent, in the container's systemd


def test_systemd_an_unchanged_run_asks_once_and_a_rotation_is_confirmed_by_a_new_process(systemd_device):
    fleet = systemd_device
    before = started_pids(fleet.events)
    fleet.service.clear_faults()
    again = fleet.play("provision.yml")
    row = row_of(fleet, "sd-agent")
    assert again.rc == 0 and (row["action"], row["cloud"], row["restarted"]) == ("unchanged", "active", False), (
        again.explain())
    assert fleet.service.request_count(HEARTBEAT) == 1 and started_pids(fleet.events) == before

    rotated = fleet.play("provision.yml", "-e", "mtls_rotate=always")
    row = row_of(fleet, "sd-agent")
    assert rotated.rc == 0, rotated.explain()
    assert (row["action"], row["restarted"], row["cloud"]) == ("rotated", True, "active"), row
    new = started_pids(fleet.events)[-1]
    assert new not in before and fleet.events.read("stopped", pid=before[-1])
    assert row["fingerprint_sha256"] == fleet.service.registrations()[fleet.agent_id_given]


# --------------------------------------------------------------------------- docker (podman)


@pytest.fixture(scope="module")
def docker_device(tmp_path_factory, shared_service):
    if podman("image", "exists", BOOKWORM, check=False).returncode != 0:
        pytest.skip(f"no {BOOKWORM} image (tests/bootstrap.sh builds it)")
    if not libraries_match(BOOKWORM):
        pytest.skip("the image's Python differs from the venv's: python-socketio cannot be mounted in")
    shared_service.clear_faults()
    root = tmp_path_factory.mktemp("confirm-docker")
    container = "fleet-mtls-confirm-dk-" + secrets.token_hex(4)
    agent_id = shared_service.reserve_id()
    fleet = RoleFleet(root, shared_service, {"dk-agent": {"mtls_agent_container": container,
                                                          "mtls_agent_id": agent_id}},
                      mtls_agent_restart="docker", mtls_agent_docker_command="podman", **API_SERVICE)
    fleet.agent_id_given, fleet.container = agent_id, container
    fleet.logs = root / "agent-log"
    fleet.logs.mkdir()
    fleet.events = AgentEvents(fleet.logs / "agent.log")
    try:
        # A new device: no agent container yet. Nothing to restart and nothing to wait for: the
        # cloud's view is reported as it is (never seen), not a failure.
        fleet.first = fleet.play("provision.yml")
        identity = fleet.host_dir("dk-agent")
        podman("run", "-d", "--name", container, "--network", "host", "--init",
               "-v", f"{identity}:/root/.mtls:ro", "--env-file", f"{identity}/agent.env", "-e", "HOME=/root",
               "-v", f"{sysconfig.get_paths()['purelib']}:{SITE}:ro", "-e", f"PYTHONPATH={SITE}",
               "-v", f"{REPO / 'tests' / 'fixtures' / 'agent_daemon.py'}:{DAEMON}:ro",
               "-v", f"{fleet.logs}:{AGENT_LOG}", BOOKWORM, *daemon_argv(shared_service.gate_url))
        yield fleet
    finally:
        podman("rm", "-f", "-t", "0", container, check=False)


def test_docker_a_new_device_without_its_container_is_reported_as_the_cloud_sees_it(docker_device):
    fleet = docker_device
    assert fleet.first.rc == 0, fleet.first.explain()
    row = row_of(fleet, "dk-agent")
    assert (row["action"], row["restarted"], row["cloud"], row["phase"]) == ("created", False, "unseen", ""), row


def test_docker_a_rotation_restarts_the_container_and_the_cloud_confirms_it(docker_device):
    fleet = docker_device
    fleet.service.wait_for_heartbeat(fleet.agent_id_given, lambda status, body: status == 200
                                     and body["status"] == "active", timeout=30, what="the container's agent")
    fleet.service.clear_faults()
    again = fleet.play("provision.yml")
    row = row_of(fleet, "dk-agent")
    assert again.rc == 0 and (row["action"], row["cloud"]) == ("unchanged", "active"), again.explain()
    assert fleet.service.request_count(HEARTBEAT) == 1
    starts = len(fleet.events.read("started"))

    rotated = fleet.play("provision.yml", "-e", "mtls_rotate=always")
    row = row_of(fleet, "dk-agent")
    assert rotated.rc == 0, rotated.explain()
    assert (row["action"], row["restarted"], row["cloud"], row["verify"]) == ("rotated", True, "active", "ok"), row
    assert len(fleet.events.read("started")) == starts + 1  # the container's agent started once more


# --------------------------------------------------------------------------- verify.yml


def test_the_audit_shows_the_clouds_view_and_flags_silent_agents(tmp_path, service, service_agent):
    """Three devices provisioned with their agents (the command method): one left running, one
    stopped (the cloud: inactive), one that never connected (its restart started nothing)."""
    hosts = {name: {"mtls_agent_id": service.reserve_id()} for name in ("au-running", "au-stopped", "au-never")}
    fleet = RoleFleet(tmp_path, service, hosts, mtls_agent_restart="command",
                      **dict(API_SERVICE, mtls_confirm_timeout=5))
    agents = {}
    for name in ("au-running", "au-stopped"):
        agents[name] = service_agent(service, fleet.home(name))
        hosts[name]["mtls_agent_restart_command"] = str(agents[name].restart_script)
    hosts["au-never"]["mtls_agent_restart_command"] = "/bin/true"
    fleet.hosts = hosts
    fleet.write_inventory()
    run = fleet.play("provision.yml")
    rows = fleet.rows()
    assert rows["au-never"]["phase"] == "confirm" and rows["au-never"]["cloud"] == "unseen", run.explain()
    assert {rows[h]["cloud"] for h in agents} == {"active"}, run.explain()
    agents["au-stopped"].stop()
    service.wait_for_heartbeat(hosts["au-stopped"]["mtls_agent_id"],
                               lambda status, body: status == 200 and body["status"] == "inactive")

    service.clear_faults()
    audit = fleet.play("verify.yml", "-e", "mtls_confirm_stale_minutes=0")
    rows = fleet.rows("verify-report")
    assert audit.rc != 0 and service.request_count(HEARTBEAT) >= 3, audit.explain()
    assert (rows["au-running"]["cloud"], rows["au-running"]["phase"], rows["au-running"]["action"]) == (
        "active", "", "valid"), rows["au-running"]
    assert (rows["au-stopped"]["cloud"], rows["au-stopped"]["phase"]) == ("inactive", "confirm"), rows["au-stopped"]
    assert "has been silent for more than 0 minutes (mtls_confirm_stale_minutes)" in rows["au-stopped"]["error"]
    assert (rows["au-never"]["cloud"], rows["au-never"]["phase"]) == ("unseen", "confirm"), rows["au-never"]
    assert "the cloud has no heartbeat from agent" in rows["au-never"]["error"]
    table = audit.output[audit.output.index("fleet-mtls report verify-report"):]
    assert "CLOUD" in table and "active " in table and "inactive" in table and "unseen" in table
    # Nothing was restarted or written by the audit; the agents are as they were.
    assert agents["au-running"].running() and not agents["au-stopped"].running()
    prom = (fleet.reports / "fleet-mtls.prom").read_text()
    connected = {s.labels["host"]: s.value for family in text_string_to_metric_families(prom)
                 for s in family.samples if s.name == "fleet_mtls_agent_connected"}
    assert connected == {"au-running": 1, "au-stopped": 0, "au-never": 0}
