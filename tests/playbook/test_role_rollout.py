"""Safe rollout through playbooks/provision.yml: a configuration is proven before it touches the
agent, a rotation restarts each agent once, and a canary stops a fleet-wide failure after its
first host.

One module fleet walks an operator's change of the server CA: provisioned with the right CA; a
wrong CA in the inventory (refused: the live files stay byte-for-byte, no restart); the fixed
CA (applied, one restart); then a forced rotation. The canary has its own ten hosts and a gate
that refuses every certificate.
"""

from __future__ import annotations

import json

import pytest

from tests.fixtures.playbook_fleet import RoleFleet

pytestmark = pytest.mark.integration

HOSTS = ("ro-01", "ro-02", "ro-03")


@pytest.fixture(scope="module")
def rollout(tmp_path_factory, shared_service):
    shared_service.clear_faults()
    fleet = RoleFleet(tmp_path_factory.mktemp("rollout"), shared_service, {h: {} for h in HOSTS})
    fleet.first = fleet.play("provision.yml")
    return fleet


def listing(fleet, host):
    return sorted(p.name for p in fleet.host_dir(host).iterdir())


def test_a_fleet_with_the_right_server_ca_is_provisioned(rollout):
    run = rollout.first
    assert run.rc == 0, run.explain()
    rows = rollout.rows()
    for host in HOSTS:
        assert (rows[host]["action"], rows[host]["config"], rows[host]["verify"]) == ("created", "changed", "ok")
        assert rollout.restarts(host) == 1
        assert rollout.agent_env(host) == {"SSL_CERT_FILE": str(rollout.host_dir(host) / "server-ca.crt")}
        assert (rollout.host_dir(host) / "server-ca.crt").read_bytes() == rollout.service.ca_path.read_bytes()


def test_a_wrong_server_ca_is_refused_before_it_touches_any_agent(rollout):
    wrong_ca = rollout.service.state_dir / "enroll-ca.crt"  # a real CA, not the gate's
    before = {h: rollout.live_files(h) for h in HOSTS}
    names = {h: listing(rollout, h) for h in HOSTS}
    restarts = {h: rollout.restarts(h) for h in HOSTS}
    rollout.set(mtls_server_ca_src=str(wrong_ca))
    run = rollout.play("provision.yml")
    assert run.rc != 0, run.explain()
    rows = rollout.rows()
    for host in HOSTS:
        assert run.recap[host]["failed"] == 1, run.explain()
        assert rollout.live_files(host) == before[host], f"{host}: a live agent file changed"
        assert listing(rollout, host) == names[host], f"{host}: a staged file was left behind"
        assert rollout.restarts(host) == restarts[host], f"{host}: the agent was restarted"
        row = rows[host]
        assert (row["action"], row["config"], row["config_changed"], row["restarted"]) == (
            "unchanged", "refused", False, False), row
        assert (row["phase"], row["verify_failure"]) == ("config", "untrusted_server"), row
        assert row["error"].startswith("the new agent configuration was not applied (server-ca.crt), the live one "
                                       "is unchanged: untrusted server"), row
        assert "set mtls_server_ca_src" in row["error"], row
    # The printed table says it too, in the CONFIG column of each host's line.
    table = next(text for name, text in run.sections() if name.endswith("Print the fleet report"))
    header = next(line for line in table.splitlines() if line.strip().startswith('"HOST '))
    config = header.index(" CONFIG ") + 1  # the table's columns are aligned under their titles
    for host in HOSTS:
        line = next(line for line in table.splitlines() if line.strip().startswith(f'"{host} '))
        assert line[config:].split()[0] == "refused", (header, line)


def test_the_fixed_server_ca_is_applied_with_one_restart_per_host(rollout):
    bundle = rollout.root / "ca-bundle.pem"  # the service's CA and another one: new bytes, still right
    other_ca = rollout.service.state_dir / "enroll-ca.crt"
    bundle.write_bytes(rollout.service.ca_path.read_bytes() + other_ca.read_bytes())
    rollout.set(mtls_server_ca_src=str(bundle))
    restarts = {h: rollout.restarts(h) for h in HOSTS}
    run = rollout.play("provision.yml")
    assert run.rc == 0, run.explain()
    rows = rollout.rows()
    for host in HOSTS:
        assert (rollout.host_dir(host) / "server-ca.crt").read_bytes() == bundle.read_bytes()
        assert rollout.restarts(host) - restarts[host] == 1, f"{host} restarted {rollout.restarts(host)}x in all"
        row = rows[host]
        assert (row["action"], row["config"], row["config_changed"], row["restarted"], row["verify"]) == (
            "unchanged", "changed", True, True, "ok"), row
        assert row["phase"] == "" and row["error"] == ""


def test_a_rotation_restarts_each_agent_once_and_reports_its_blackout(rollout):
    ids = {h: rollout.agent_id(h) for h in HOSTS}
    fingerprints = {h: rollout.fingerprint(h) for h in HOSTS}
    restarts = {h: rollout.restarts(h) for h in HOSTS}
    run = rollout.play("provision.yml", "-e", "mtls_rotate=always")
    assert run.rc == 0, run.explain()
    rows = rollout.rows()
    registered = rollout.service.registrations()
    for host in HOSTS:
        assert rollout.restarts(host) - restarts[host] == 1, f"{host} restarted {rollout.restarts(host)}x in all"
        row = rows[host]
        assert (row["action"], row["restarted"], row["verify"]) == ("rotated", True, "ok"), row
        assert isinstance(row["blackout_ms"], int) and row["blackout_ms"] >= 0, row
        assert rollout.agent_id(host) == ids[host] and rollout.fingerprint(host) != fingerprints[host]
        assert registered[ids[host]] == rollout.fingerprint(host) == row["fingerprint_sha256"]


# --------------------------------------------------------------------------- canary


def test_a_canary_stops_a_fleet_wide_failure_after_its_first_host(tmp_path, svc):
    hosts = [f"canary-{i:02d}" for i in range(1, 11)]
    fleet = RoleFleet(tmp_path, svc, {h: {} for h in hosts})
    svc.inject("/ws", "status", count=None, status=403)  # the gate refuses every certificate
    try:
        run = fleet.play("provision.yml", "-e", json.dumps({"mtls_serial": [1, "100%"]}),
                         "-e", "mtls_max_fail_percentage=0")
    finally:
        svc.clear_faults(keep_counters=True)
    assert run.rc != 0, run.explain()
    assert set(run.recap) == {"canary-01"}, run.explain()
    # One host asked for one ID and uploaded one certificate; nine never reached the service.
    assert svc.request_count("/generate-orchestrator-id") == 1
    assert svc.request_count("/upload-orchestrator-certificate") == 1
    assert sorted(p.name for p in fleet.demo_root.iterdir()) == ["canary-01"]
    rows = fleet.rows()
    assert sorted(rows) == sorted(hosts)
    first = rows["canary-01"]
    assert (first["action"], first["config"], first["phase"], first["verify_failure"]) == (
        "created", "refused", "config", "refused"), first
    for host in hosts[1:]:
        assert (rows[host]["action"], rows[host]["reason"]) == ("not run", "the play stopped before its serial batch")
    assert "totals: 10 host(s): 0 ok, 0 changed, 1 failed, 0 unreachable, 9 not run" in run.output


def test_max_fail_percentage_zero_stops_after_a_batch_with_one_failure(tmp_path, svc):
    """A batch of two where one host fails: with a batch of one, Ansible stops anyway (the whole
    batch failed); here only mtls_max_fail_percentage=0 stops the rollout."""
    hosts = {"mf-01": {"mtls_server_ca_src": str(svc.state_dir / "enroll-ca.crt")}, "mf-02": {}, "mf-03": {},
             "mf-04": {}}
    fleet = RoleFleet(tmp_path, svc, hosts)
    run = fleet.play("provision.yml", "-e", json.dumps({"mtls_serial": [2, "100%"]}),
                     "-e", "mtls_max_fail_percentage=0")
    assert run.rc != 0, run.explain()
    assert set(run.recap) == {"mf-01", "mf-02"}, run.explain()
    rows = fleet.rows()
    assert (rows["mf-01"]["phase"], rows["mf-02"]["verify"]) == ("config", "ok")
    assert {rows[h]["action"] for h in ("mf-03", "mf-04")} == {"not run"}
    assert not fleet.home("mf-03").exists() and not fleet.home("mf-04").exists()
