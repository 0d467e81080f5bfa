"""The cloud confirms the running agent (``confirm: heartbeat``): mtls_identity through real
Ansible against the reference service, whose heartbeat route is fed only by Socket.IO sessions
the gate validated, with the stand-in agent (``tests/fixtures/agent_daemon.py``) running as a
service manager runs it and restarted by the ``command`` method (``servicectl.ServiceAgent``).

The controller asks when it holds the token (``headers``), the module when only the device
does (``headers_file``): each case runs both ways where the asker matters. Waits are bounded
polls; nothing sleeps a fixed time and nothing is timed.
"""

from __future__ import annotations

import pytest

from tests.fixtures.ansible_runner import run_task
from tests.fixtures.api_service import ASKERS
from tests.fixtures.api_service import api_service_args as confirm_args

pytestmark = pytest.mark.integration

HEARTBEAT = "/agent/heartbeat"
HEADERS_FILE = "mtls-identity-headers.json"  # the file the action plugin writes the headers into


@pytest.fixture
def device(svc, tmp_path, service_agent):
    """A pre-assigned ID (the api-service's way), a home for it, and its agent (not started)."""
    home = tmp_path / "home"
    home.mkdir()
    agent = service_agent(svc, home)
    return svc.reserve_id(), home, agent


def status(run):
    assert "status" in run.result, run.output[-3000:]
    return run.result["status"]


@pytest.mark.parametrize("asker", ASKERS)
def test_a_rotation_is_confirmed_by_the_restarted_agent_and_an_unchanged_run_asks_once(svc, tmp_path, device,
                                                                                       asker):
    agent_id, home, agent = device
    args = confirm_args(svc, tmp_path, home, asker, agent_id=agent_id, agent_restart="command",
                        agent_restart_command=str(agent.restart_script))
    created = run_task(tmp_path, "mtls_identity", args)
    row = status(created)
    assert not created.failed, created.output[-3000:]
    assert (row["action"], row["restarted"], row["cloud"], row["phase"]) == ("created", True, "active", ""), row
    first = agent.pid
    assert row["agent_uptime_s"] is not None and row["heartbeat_at"], row

    svc.clear_faults()
    again = run_task(tmp_path, "mtls_identity", args)
    row = status(again)
    assert not again.failed and row["action"] == "unchanged" and row["cloud"] == "active", again.output[-3000:]
    assert svc.request_count(HEARTBEAT) == 1  # asked once, no wait
    assert agent.pid == first and row["restarted"] is False

    rotated = run_task(tmp_path, "mtls_identity", dict(args, rotate="always"))
    row = status(rotated)
    assert not rotated.failed, rotated.output[-3000:]
    assert (row["action"], row["cloud"]) == ("rotated", "active") and agent.pid != first, row


@pytest.fixture
def running(svc, tmp_path, device):
    """A device created with the ``asker`` of the test, its agent started by the restart
    command and confirmed by the cloud: (args, agent, agent_id)."""

    def make(asker):
        agent_id, home, agent = device
        args = confirm_args(svc, tmp_path, home, asker, agent_id=agent_id, agent_restart="command",
                            agent_restart_command=str(agent.restart_script))
        created = run_task(tmp_path, "mtls_identity", args)
        assert not created.failed and status(created)["cloud"] == "active", created.output[-3000:]
        return args, agent, agent_id

    return make


@pytest.mark.parametrize("asker", ASKERS)
def test_an_agent_not_restarted_fails_with_the_clouds_view_and_the_next_run_heals_it(svc, tmp_path, running, asker):
    """A rotation whose agent keeps running (restart none: it was not restarted) fails with what
    the cloud says; the next run (the restart method back) restarts the agent it finds on the
    identity swapped out, and the cloud confirms it."""
    args, agent, agent_id = running(asker)
    old = agent.pid
    rotated = run_task(tmp_path, "mtls_identity", dict(args, rotate="always", agent_restart="none"))
    row = status(rotated)
    assert rotated.failed and (row["action"], row["phase"], row["cloud"]) == ("rotated", "confirm", "active"), row
    assert row["error"].startswith("the cloud does not confirm agent %s within 5s" % agent_id), row
    assert "active but started before the swap: the agent still runs the old identity" in row["error"], row
    assert agent.pid == old and svc.registrations()[agent_id] == row["fingerprint_sha256"]

    healed = run_task(tmp_path, "mtls_identity", args)
    row = status(healed)
    assert not healed.failed, healed.output[-3000:]
    assert (row["action"], row["restarted"], row["cloud"], row["phase"]) == ("unchanged", True, "active", ""), row
    assert healed.result["changed"] and agent.pid != old
    assert "the agent was restarted: the cloud shows agent %s active but started before the last swap" % (
        agent_id) in row["reason"], row


@pytest.mark.parametrize("asker", ASKERS)
def test_an_agent_that_never_connects_is_404_never_seen(svc, tmp_path, device, asker):
    """The restart command restarts nothing that connects: the cloud never hears from the agent."""
    agent_id, home, _agent = device
    args = confirm_args(svc, tmp_path, home, asker, agent_id=agent_id, agent_restart="command",
                        agent_restart_command="/bin/true")
    run = run_task(tmp_path, "mtls_identity", args)
    row = status(run)
    assert run.failed and (row["action"], row["phase"], row["cloud"]) == ("created", "confirm", "unseen"), row
    assert row["error"] == ("the cloud does not confirm agent %s within 5s (confirm_timeout): 404 never seen "
                            "(No heartbeat data found for agent %s)" % (agent_id, agent_id)), row
    assert svc.registrations()[agent_id] == row["fingerprint_sha256"]  # the identity part stands


def test_an_agent_that_dies_after_the_swap_is_inactive_since_its_last_heartbeat(svc, tmp_path, running):
    """The restart command stops the agent and starts none: the cloud marks it inactive."""
    args, agent, agent_id = running("controller")
    stop = "sh -c 'kill -TERM \"$(cat %s)\"'" % agent.pid_file
    rotated = run_task(tmp_path, "mtls_identity", dict(args, rotate="always", agent_restart_command=stop))
    row = status(rotated)
    assert rotated.failed and (row["phase"], row["cloud"]) == ("confirm", "inactive"), row
    assert "within 5s (confirm_timeout): inactive since %s" % row["heartbeat_at"] in row["error"], row
    assert not agent.running()


@pytest.mark.parametrize("asker", ASKERS)
def test_check_mode_asks_nothing(svc, tmp_path, running, asker):
    args, _agent, _agent_id = running(asker)
    svc.clear_faults()
    for rotate in ("auto", "always"):
        check = run_task(tmp_path, "mtls_identity", dict(args, rotate=rotate), check=True)
        assert not check.failed and status(check)["cloud"] == "not asked", check.output[-3000:]
    assert svc.request_count(HEARTBEAT) == 0


def test_a_deleted_id_whose_agent_is_still_active_is_reported(svc, tmp_path, running):
    """Decommission on the api-service deployment: the server deletes the ID, but the agent's
    session (validated at connect only) stays active: reported, not hidden."""
    args, agent, agent_id = running("controller")
    deregister = {"path": args["path"], "confirm": agent_id, "api_url": svc.api_url, "endpoint": "/orchestrators/{id}",
                  "headers": svc.auth_headers(), "ca_path": str(svc.ca_path), "api_flavor": "api_service"}
    run = run_task(tmp_path, "mtls_deregister", deregister)
    result = run.result
    assert not run.failed and result["action"] == "decommissioned" and agent_id in svc.deleted_ids(), run.output[-3000:]
    assert result["cloud"] == "active" and result["still_active"].startswith("the cloud sees its agent active"), result
    assert "the cloud still sees agent %s active after the deletion" % agent_id in result["reason"]
    assert "the cloud still sees agent %s active after the deletion" % agent_id in run.output  # the warning


def test_an_audit_has_the_controller_ask_and_sends_the_device_no_token(svc, tmp_path, running):
    """The audit (check mode, ``audit``): the controller, holding the token, asks the cloud once
    and flags what it says; the module gets no headers file (nothing reaches the device). With
    the token only on the device, nobody asks: the device sends nothing in an audit."""
    args, agent, agent_id = running("controller")
    svc.clear_faults()
    audit = run_task(tmp_path, "mtls_identity", dict(args, audit=True), check=True, verbosity=3)
    row = status(audit)
    assert not audit.failed and (row["cloud"], row["audit"]) == ("active", "valid"), audit.output[-3000:]
    assert svc.request_count(HEARTBEAT) == 1
    assert HEADERS_FILE not in audit.output  # no `cat > .../mtls-identity-headers.json`: the token stayed here
    # Check mode, which asks nothing, does not send it either; control: a run does (-vvv shows it).
    assert HEADERS_FILE not in run_task(tmp_path, "mtls_identity", args, check=True, verbosity=3).output
    assert HEADERS_FILE in run_task(tmp_path, "mtls_identity", args, verbosity=3).output
    agent.stop()
    svc.wait_for_heartbeat(agent_id, until=lambda code, body: code == 200 and body["status"] == "inactive")
    silent = run_task(tmp_path, "mtls_identity", dict(args, audit=True, confirm_stale_minutes=0), check=True)
    row = status(silent)
    assert silent.failed and (row["phase"], row["cloud"]) == ("confirm", "inactive"), silent.output[-3000:]
    assert "has been silent for more than 0 minutes (confirm_stale_minutes)" in row["error"], row

    device_token = confirm_args(svc, tmp_path, tmp_path / "home", "module", agent_id=agent_id)
    svc.clear_faults()
    alone = run_task(tmp_path, "mtls_identity", dict(device_token, audit=True), check=True)
    assert status(alone)["cloud"] == "not asked" and svc.request_count(HEARTBEAT) == 0, alone.output[-3000:]
