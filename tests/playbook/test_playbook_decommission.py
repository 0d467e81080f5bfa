"""playbooks/decommission.yml against the reference service: the local identity goes only once
the server confirmed the deletion (or on an explicit local-only wipe); every other outcome
fails the host with the server's answer, its files byte-for-byte intact, its ID registered."""

from __future__ import annotations

import json
import secrets

import pytest

from tests.fixtures import module_runner as h
from tests.fixtures.playbook_fleet import Fleet, explain, write_inventory
from tests.fixtures.servicectl import ProvisioningService

pytestmark = pytest.mark.integration

HOSTS = ("dc-503", "dc-403", "dc-404", "dc-down", "dc-ok", "dc-gone", "dc-local", "dc-planted")
DELETE = "/orchestrators/<id>"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("decommission")
    with ProvisioningService(root / "service", token=secrets.token_urlsafe(24)) as service:
        inventory = write_inventory(root / "inventory.yml", {host: {} for host in HOSTS})
        fleet = Fleet(root, service, inventory=inventory)
        run = fleet.play("provision.yml")
        assert run.rc == 0, explain(run)
        yield fleet


@pytest.fixture
def host_state(fleet, request):
    """(host, agent ID, snapshot of its identity directory, its key and cert copied away)."""
    host = request.param
    fleet.service.clear_faults()
    agent_id = fleet.agent_id(host)
    assert agent_id in fleet.service.registrations()
    return host, agent_id, h.snapshot(fleet.host_dir(host))


def decommission(fleet, host, agent_id, *extra):
    return fleet.play("decommission.yml", "--limit", host, "-e", f"mtls_decommission_confirm={agent_id}", *extra)


def assert_kept(fleet, host, agent_id, before, run, *words):
    assert run.rc != 0, explain(run)
    assert run.recap[host]["failed"] == 1, explain(run)
    assert h.snapshot(fleet.host_dir(host)) == before  # every file byte-for-byte as it was
    assert agent_id not in fleet.service.deleted_ids()
    assert agent_id in fleet.service.registrations()
    assert fleet.gate_accepts(fleet.cert(host), fleet.key(host))
    row = fleet.rows("decommission-report")[host]
    assert row["action"] == "failed" and row["agent_id"] == agent_id, row
    for word in words:
        assert word in row["error"], row


@pytest.mark.parametrize("host_state", ["dc-503"], indirect=True)
def test_server_error_keeps_the_identity(fleet, host_state):
    host, agent_id, before = host_state
    fleet.service.inject(DELETE, "status", count=0, status=503, message="registry maintenance")
    run = decommission(fleet, host, agent_id, "-e", "mtls_api_retries=1")
    assert_kept(fleet, host, agent_id, before, run, "HTTP 503", "registry maintenance")
    assert fleet.service.request_count(DELETE) == 2


@pytest.mark.parametrize("host_state", ["dc-403"], indirect=True)
def test_wrong_token_keeps_the_identity(fleet, host_state):
    host, agent_id, before = host_state
    headers = json.dumps({"mtls_api_headers": {"Authorization": "Bearer wrong-token-0123456789"}})
    run = decommission(fleet, host, agent_id, "-e", headers)
    assert_kept(fleet, host, agent_id, before, run, "HTTP 403")
    assert "wrong-token-0123456789" not in run.output


@pytest.mark.parametrize("host_state", ["dc-404"], indirect=True)
def test_mistyped_endpoint_404_keeps_the_identity(fleet, host_state):
    host, agent_id, before = host_state
    run = decommission(fleet, host, agent_id, "-e", "mtls_decommission_endpoint=/orchestrator/{id}")
    assert_kept(fleet, host, agent_id, before, run, "HTTP 404", "not the registry's answer for an unknown ID")


@pytest.mark.parametrize("host_state", ["dc-down"], indirect=True)
def test_api_down_keeps_the_identity(fleet, host_state):
    host, agent_id, before = host_state
    down = f"https://127.0.0.1:{h.closed_port()}"
    run = decommission(fleet, host, agent_id, "-e", f"mtls_api_url={down}", "-e", "mtls_api_retries=0")
    assert_kept(fleet, host, agent_id, before, run, "cannot connect")


@pytest.mark.parametrize("host_state", ["dc-ok"], indirect=True)
def test_confirmed_delete_removes_the_identity(fleet, host_state, tmp_path):
    host, agent_id, _before = host_state
    (fleet.host_dir(host) / "client.key.20260101T000000Z.bak").write_bytes(b"old")
    (fleet.host_dir(host) / ".mtls-pending.json").write_text('{"id": "%s"}' % agent_id)
    cert, key = tmp_path / "c.crt", tmp_path / "c.key"
    cert.write_bytes(fleet.cert(host).read_bytes())
    key.write_bytes(fleet.key(host).read_bytes())
    run = decommission(fleet, host, agent_id)
    assert run.rc == 0, explain(run)
    assert not fleet.host_dir(host).exists()
    assert agent_id in fleet.service.deleted_ids()
    assert not fleet.gate_accepts(cert, key)
    row = fleet.rows("decommission-report")[host]
    assert row["action"] == "decommissioned" and row["agent_id"] == agent_id and row["error"] == "", row


@pytest.mark.parametrize("host_state", ["dc-gone"], indirect=True)
def test_id_already_deleted_on_the_server_counts_as_confirmed(fleet, host_state):
    host, agent_id, _before = host_state
    assert fleet.service.delete(agent_id).status_code == 200
    (fleet.host_dir(host) / "notes.txt").write_text("the operator's own file")
    run = decommission(fleet, host, agent_id)
    assert run.rc == 0, explain(run)
    assert sorted(p.name for p in fleet.host_dir(host).iterdir()) == ["notes.txt"]  # nothing else touched
    assert fleet.rows("decommission-report")[host]["action"] == "decommissioned"


@pytest.mark.parametrize("host_state", ["dc-local"], indirect=True)
def test_local_only_wipe_leaves_the_registry_alone(fleet, host_state, tmp_path):
    host, agent_id, _before = host_state
    cert, key = tmp_path / "c.crt", tmp_path / "c.key"
    cert.write_bytes(fleet.cert(host).read_bytes())
    key.write_bytes(fleet.key(host).read_bytes())
    run = decommission(fleet, host, agent_id, "-e", "mtls_decommission_local_only=true")
    assert run.rc == 0, explain(run)
    assert not fleet.host_dir(host).exists()
    assert fleet.service.request_count(DELETE) == 0
    assert agent_id not in fleet.service.deleted_ids()
    assert fleet.gate_accepts(cert, key)  # the registry still accepts the ID
    row = fleet.rows("decommission-report")[host]
    assert row["action"] == "removed locally" and row["agent_id"] == agent_id, row
    assert "registry was not asked" in row["reason"], row


@pytest.mark.parametrize("host_state", ["dc-planted"], indirect=True)
def test_confirm_all_never_deletes_an_id_the_ledger_does_not_hold_for_the_host(fleet, host_state):
    """Whoever writes a device's ~/.mtls can put a certificate there naming another device's ID;
    decommissioning "all" of a site would then delete that device's ID on the server. The ledger
    holds this host's own ID: refused, nothing deleted, nothing removed."""
    host, agent_id, _before = host_state
    victim = fleet.service.reserve_id()
    victim_cert = h.self_signed(h.new_key(2048), victim)
    assert fleet.service.upload(victim, victim_cert).status_code == 200
    fleet.cert(host).write_bytes(victim_cert)
    before = h.snapshot(fleet.host_dir(host))
    run = fleet.play("decommission.yml", "--limit", host, "-e", "mtls_decommission_confirm=all")
    assert run.rc != 0 and run.recap[host]["failed"] == 1, explain(run)
    assert h.snapshot(fleet.host_dir(host)) == before
    assert victim not in fleet.service.deleted_ids() and agent_id not in fleet.service.deleted_ids()
    assert victim in fleet.service.registrations()
    row = fleet.rows("decommission-report")[host]
    assert row["action"] == "refused", row
    assert ("the identity ledger holds %s for this host" % agent_id) in row["error"], row
    assert "mtls_decommission_confirm=%s" % victim in row["error"], row
