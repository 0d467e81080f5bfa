"""No takeover (issue 18, item 1): a creation with a pre-assigned ID first learns whether a device
holds it, from the cloud's heartbeat route (the api-service deployment), and is refused before
any key or upload when one does, unless ``agent_id_takeover`` says this host replaces it.

Device r9 holds its ID and runs its agent (the stand-in, as a service manager runs it); a new
host is given r9's ID by a controller whose ledger does not know r9 (mtls_identity through real
Ansible, no ledger). The holders that may legitimately re-use the ID (the device itself, a lost
identity restored from the ledger for the same host) are not refused.
"""

from __future__ import annotations

import types

import pytest

from tests.fixtures.ansible_runner import run_task
from tests.fixtures.api_service import ASKERS, api_service_args

pytestmark = pytest.mark.integration

UPLOAD = "/agent/certificate"


@pytest.fixture
def r9(svc, tmp_path, service_agent):
    """Device r9: its registered identity and its agent, active in the cloud."""
    home = tmp_path / "r9"
    home.mkdir()
    agent = service_agent(svc, home)
    args = api_service_args(svc, tmp_path, home, "controller", agent_id=svc.reserve_id(), agent_restart="command",
                            agent_restart_command=str(agent.restart_script))
    run = run_task(tmp_path, "mtls_identity", args)
    assert not run.failed and run.result["status"]["cloud"] == "active", run.output[-3000:]
    return types.SimpleNamespace(args=args, agent=agent, home=home, agent_id=args["agent_id"],
                                 fingerprint=run.result["fingerprint_sha256"])


def new_host(svc, tmp_path, r9, asker, name="new-host", **kw):
    home = tmp_path / name
    home.mkdir(exist_ok=True)
    return home, api_service_args(svc, tmp_path, home, asker, agent_id=r9.agent_id, **kw)


def assert_refused(run, r9, home, svc, evidence):
    row = run.result["status"]
    assert run.failed and row["phase"] == "identity", run.output[-3000:]
    assert row["error"].startswith("agent ID %s already belongs to a device: %s" % (r9.agent_id, evidence)), row
    assert "agent_id_takeover=true" in row["error"], row
    # The refused creation made the directory (and put the API's CA in it) for nothing: none is left.
    ident = home / ".mtls"
    assert not ident.exists(), sorted(p.name for p in ident.iterdir())
    assert sorted(p.name for p in home.iterdir()) == [], "something was written beside the identity directory"
    assert svc.request_count(UPLOAD) == 0
    assert svc.registrations()[r9.agent_id] == r9.fingerprint
    assert svc.gate_accepts(r9.home / ".mtls" / "client.crt", r9.home / ".mtls" / "client.key")


@pytest.mark.parametrize("asker", ASKERS)
def test_an_id_whose_agent_is_active_is_refused_before_any_key_or_upload(svc, tmp_path, r9, asker):
    home, args = new_host(svc, tmp_path, r9, asker)
    svc.clear_faults()
    run = run_task(tmp_path, "mtls_identity", args)
    assert_refused(run, r9, home, svc, "the cloud sees its agent active (uptime ")


def test_an_id_recently_seen_is_refused_too(svc, tmp_path, r9):
    """r9's agent stopped (dead hardware, a network cut): the cloud still knows it was there."""
    r9.agent.stop()
    svc.wait_for_heartbeat(r9.agent_id, until=lambda status, body: body["status"] == "inactive")
    home, args = new_host(svc, tmp_path, r9, "module")
    svc.clear_faults()
    run = run_task(tmp_path, "mtls_identity", args)
    assert_refused(run, r9, home, svc, "the cloud has heard from its agent (inactive since ")


def test_the_override_takes_the_id_over_and_the_report_records_it(svc, tmp_path, r9):
    home, args = new_host(svc, tmp_path, r9, "controller", agent_id_takeover=True)
    run = run_task(tmp_path, "mtls_identity", args)
    row = run.result["status"]
    assert not run.failed and (row["action"], row["agent_id"]) == ("created", r9.agent_id), run.output[-3000:]
    assert row["takeover"].startswith("the cloud sees its agent active"), row
    assert "taking agent ID %s over from another device (agent_id_takeover=true)" % r9.agent_id in run.output
    assert svc.registrations()[r9.agent_id] == row["fingerprint_sha256"] != r9.fingerprint
    assert not svc.gate_accepts(r9.home / ".mtls" / "client.crt", r9.home / ".mtls" / "client.key")


def test_the_device_itself_and_its_restored_identity_are_not_a_takeover(svc, tmp_path, r9):
    """r9 re-running with its own ID is unchanged; r9 having lost its files gets its ID back from
    the ledger (its agent, still active on the lost identity, is its own)."""
    again = run_task(tmp_path, "mtls_identity", r9.args)
    assert not again.failed and again.result["status"]["action"] == "unchanged", again.output[-3000:]
    for name in ("client.crt", "client.key"):
        (r9.home / ".mtls" / name).unlink()
    lost = {k: v for k, v in r9.args.items() if k != "agent_id"}
    restored = run_task(tmp_path, "mtls_identity", dict(lost, ledger_id=r9.agent_id))
    row = restored.result["status"]
    assert not restored.failed and (row["action"], row["agent_id"]) == ("restored", r9.agent_id), row
    assert row["takeover"] == "" and row["cloud"] == "active", row
