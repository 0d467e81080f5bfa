"""The fleet knows its IDs: the identity ledger through the real playbooks/provision.yml.

A provisioned fleet of three; a device's identity directory is removed (``rm -rf``) and the
next run restores its ID (with a warning) or, with ``mtls_lost_identity``, fails before any
change or mints a new ID (the old one then listed as orphaned). Two hosts given the same
``mtls_agent_id`` are both refused before any request. Every run here but the first uses
--limit, so each also shows the ledger merging instead of dropping the other hosts.
"""

from __future__ import annotations

import json
import shutil

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.ledger import Ledger
from tests.fixtures.playbook_fleet import RoleFleet

pytestmark = pytest.mark.integration

HOSTS = ("lg-01", "lg-02", "lg-03")
SERVICE_ENDPOINTS = ("/generate-orchestrator-id", "/upload-orchestrator-certificate", "/agent/certificate")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, shared_service):
    shared_service.clear_faults()
    fleet = RoleFleet(tmp_path_factory.mktemp("ledger"), shared_service, {h: {} for h in HOSTS})
    run = fleet.play("provision.yml")
    assert run.rc == 0, run.explain()
    fleet.ids = {h: fleet.agent_id(h) for h in HOSTS}
    # Each host's record was appended as it ended; the report wrote them into the file itself.
    assert not (fleet.reports / "identity-ledger.json.pending").exists()
    assert {h: e["agent_id"] for h, e in fleet.ledger().items()} == fleet.ids
    return fleet


def requests(svc):
    counts = svc.faults()["requests"]
    return {endpoint: counts.get(endpoint, 0) for endpoint in SERVICE_ENDPOINTS}


def test_a_lost_identity_gets_its_id_back_with_a_warning(fleet):
    host = "lg-01"
    old = fleet.fingerprint(host)
    others = {h: fleet.ledger()[h] for h in HOSTS if h != host}
    shutil.rmtree(fleet.host_dir(host))
    run = fleet.play("provision.yml", "--limit", host)
    assert run.rc == 0, run.explain()
    row = fleet.rows()[host]
    assert (row["action"], row["agent_id"], row["verify"]) == ("restored", fleet.ids[host], "ok"), row
    assert f"[WARNING]: this device lost its identity: it gets back the ID {fleet.ids[host]}" in run.output
    assert fleet.agent_id(host) == fleet.ids[host] and fleet.fingerprint(host) != old
    assert fleet.service.registrations()[fleet.ids[host]] == fleet.fingerprint(host)
    ledger = fleet.ledger()
    assert ledger[host]["agent_id"] == fleet.ids[host] and ledger[host]["history"][-1]["action"] == "restored"
    assert {h: ledger[h] for h in others} == others, "the --limit run changed or dropped other hosts' entries"


def test_lost_identity_fail_stops_before_any_change(fleet):
    host = "lg-02"
    shutil.rmtree(fleet.host_dir(host))
    before = requests(fleet.service)
    run = fleet.play("provision.yml", "--limit", host, "-e", "mtls_lost_identity=fail")
    assert run.rc != 0 and run.recap[host]["failed"] == 1, run.explain()
    row = fleet.rows()[host]
    assert (row["action"], row["phase"]) == ("failed", "identity"), row
    assert fleet.ids[host] in row["error"] and "mtls_lost_identity=restore" in row["error"], row
    assert requests(fleet.service) == before, "a request reached the service"
    assert fleet.ledger()[host]["agent_id"] == fleet.ids[host]
    assert not fleet.host_dir(host).exists(), (
        f"the run recreated {fleet.host_dir(host)} ({sorted(p.name for p in fleet.host_dir(host).iterdir())}) "
        f"and reported changed={run.recap[host]['changed']}")


def test_lost_identity_new_mints_a_new_id_and_lists_the_old_one_orphaned(fleet):
    host = "lg-02"
    shutil.rmtree(fleet.host_dir(host), ignore_errors=True)
    run = fleet.play("provision.yml", "--limit", host, "-e", "mtls_lost_identity=new")
    assert run.rc == 0, run.explain()
    row = fleet.rows()[host]
    assert row["action"] == "created" and row["agent_id"] not in ("", fleet.ids[host]), row
    assert f"{fleet.ids[host]}, which the ledger held for it, stays registered (orphaned)" in run.output
    orphans = {o["agent_id"]: o["hosts"] for o in fleet.report()["orphaned_ids"]}
    assert orphans == {fleet.ids[host]: [host]}, orphans
    assert fleet.ids[host] in fleet.service.registrations()  # still registered: the operator decommissions it
    assert sorted(fleet.ledger()) == sorted(HOSTS)


def test_two_hosts_with_one_agent_id_are_both_refused_before_any_request(tmp_path, shared_service):
    agent_id = "SHARED01"
    twins = RoleFleet(tmp_path, shared_service, {"dup-01": {"mtls_agent_id": agent_id},
                                                 "dup-02": {"mtls_agent_id": agent_id}})
    before = requests(shared_service)
    run = twins.play("provision.yml")
    assert run.rc != 0, run.explain()
    assert requests(shared_service) == before, "a request reached the service"
    rows = twins.rows()
    for host, other in (("dup-01", "dup-02"), ("dup-02", "dup-01")):
        assert run.recap[host]["failed"] == 1, run.explain()
        assert (rows[host]["action"], rows[host]["phase"]) == ("failed", "preflight"), rows[host]
        assert f"agent ID {agent_id} would be used by {host} and by {other}" in rows[host]["error"], rows[host]
        assert not twins.home(host).exists(), f"{host} was touched"


ROLE_ALONE = """
- name: The role without the report
  hosts: all
  gather_facts: false
  become: "{{ mtls_become | default(true) }}"
  tasks:
    - name: Apply the mtls_identity role
      ansible.builtin.import_role:
        name: autonomy_edge.fleet_mtls.mtls_identity
"""


def test_the_role_alone_writes_its_batch_into_the_ledger_file(tmp_path, shared_service):
    """Without the report, each host's record is appended to the pending file as its module run
    ends, and the role's last task writes the batch's into the ledger file: whole for jq or a
    backup, and the next run restores a lost identity from it."""
    hosts = ("al-01", "al-02")
    alone = RoleFleet(tmp_path, shared_service, {h: {} for h in hosts})
    playbook = tmp_path / "role-alone.yml"
    playbook.write_text(ROLE_ALONE)
    path = alone.reports / "identity-ledger.json"
    pending = alone.reports / "identity-ledger.json.pending"
    run = alone.play(str(playbook))
    assert run.rc == 0, run.explain()
    ids = {h: alone.agent_id(h) for h in hosts}
    assert not pending.exists(), pending.read_text()
    written = json.loads(path.read_text())
    assert {h: e["agent_id"] for h, e in written["hosts"].items()} == ids
    assert list(written["folded"].values()) == [len(hosts)], "the hosts' records were not appended lines"
    shutil.rmtree(alone.host_dir("al-01"))
    run = alone.play(str(playbook), "--check")
    assert run.rc == 0, run.explain()
    assert not pending.exists()
    run = alone.play(str(playbook))
    assert run.rc == 0, run.explain()
    assert alone.agent_id("al-01") == ids["al-01"], "the lost identity did not get its ID back"
    assert not pending.exists()
    assert json.loads(path.read_text())["hosts"]["al-01"]["history"][-1]["action"] == "restored"
    assert Ledger(str(path)).hosts()["al-01"]["agent_id"] == ids["al-01"]
