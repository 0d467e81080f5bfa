"""The fleet report is the truth about every host, through real ansible-playbook runs.

``test_provision_playbook_reports_every_host_of_a_mixed_fleet`` runs playbooks/provision.yml
itself against the reference service: a host that is provisioned, one that fails argument
validation, one whose agent configuration is refused before the swap, one that is unreachable.

The other runs use tests/fixtures/report/provision_fixture.yml: shaped like provision.yml, it
sets ``mtls_identity_status`` for every host the way DESIGN.md "Status row" says, with a
stand-in for the module, for what a real run cannot produce on demand: exact values (a blackout
of 420 ms, fingerprints an identity ledger already knows), a host the play forgot, canary
stops and serial batches of many hosts, without a device or a service.
"""

from __future__ import annotations

import json
import pathlib
import re
import time

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.ledger import Ledger
from tests.fixtures.playbook_fleet import explain
from tests.fixtures.report_fleet import FP, ReportFleet, healthy

pytestmark = pytest.mark.integration

REPO = pathlib.Path(__file__).resolve().parents[2]
MERGE_PLAYBOOK = REPO / "playbooks" / "report-merge.yml"
TITLE = "fleet-mtls report provision-report:"


def next_second():
    """Sleep into the next second: checked_at has a one-second resolution."""
    time.sleep(1.05 - (time.time() % 1))


# --------------------------------------------------------------------------- one fleet, several runs


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("report-fleet")
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 10 * 86400))
    fleet = ReportFleet(root, {
        "ok-01": healthy("A1", FP["a"], action="created", config="changed", config_changed=True,
                         restarted=True, blackout_ms=420),
        "ok-02": healthy("A2", FP["b"], renew_after=soon),  # due for rotation within 30 days
        "bad-args": {"mtls_rotate": "sometimes"},  # fails argument validation, on this host only
        "bad-config": {"fixture_fail_phase": "config", "fixture_error": "staged check failed: untrusted server"},
        "silent-01": {"fixture_no_status": True},  # the play set no status: it used to vanish
        "gone-01": {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 9,
                    "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"},
    })
    # The ledger knows an ID ok-01 held before (A0) and a host no longer in the inventory.
    ledger = Ledger(str(fleet.reports / "identity-ledger.json"))
    ledger.record("ok-01", {"agent_id": "A0", "fingerprint_sha256": FP["c"], "action": "created"})
    ledger.record("ok-01", {"agent_id": "A1", "fingerprint_sha256": FP["a"], "action": "created"})
    ledger.record("retired-01", {"agent_id": "R1", "fingerprint_sha256": FP["d"], "action": "created"})
    fleet.first_run = fleet.play()
    return fleet


def test_a_host_failing_argument_validation_is_in_the_report_with_its_phase(fleet):
    run = fleet.first_run
    assert run.rc != 0 and run.recap["bad-args"]["failed"] == 1, explain(run)
    row = fleet.rows()["bad-args"]
    assert (row["action"], row["phase"]) == ("failed", "arguments"), row
    assert "mtls_rotate" in row["error"] and "sometimes" in row["error"], row
    assert row["checked_at"]
    other = fleet.rows()["bad-config"]
    assert (other["phase"], other["error"]) == ("config", "staged check failed: untrusted server")


def test_a_host_the_play_left_without_a_status_does_not_vanish(fleet):
    row = fleet.rows()["silent-01"]
    assert (row["action"], row["reason"]) == ("not run", "the play set no mtls_identity_status for it"), row


def test_an_unreachable_host_is_listed_unreachable(fleet):
    run = fleet.first_run
    assert run.recap["gone-01"]["unreachable"] == 1, explain(run)
    row = fleet.rows()["gone-01"]
    assert (row["action"], row["phase"], row["verify"]) == ("unreachable", "unreachable", "not run"), row
    assert "unreachable" in row["error"]


def test_the_totals_line_counts_every_host_once(fleet):
    run = fleet.first_run
    line = "totals: 6 host(s): 1 ok, 1 changed, 2 failed, 1 unreachable, 1 not run; 1 due for rotation within 30 days"
    assert run.output.count(line) == 1, explain(run)
    assert run.output.count(TITLE) == 1
    assert fleet.report()["totals"] == {"hosts": 6, "ok": 1, "changed": 1, "failed": 2, "unreachable": 1,
                                        "not_run": 1, "due_for_rotation": 1, "due_days": 30}
    assert line in (fleet.reports / "provision-report.txt").read_text()


def test_the_new_columns_are_in_every_format(fleet):
    row = fleet.rows()["ok-01"]
    assert (row["serial"], row["key_size"], row["renew_after"], row["config"], row["config_changed"],
            row["restarted"], row["blackout_ms"], row["phase"]) == (
        "3a5f", 4096, "2098-12-01T00:00:00Z", "changed", True, True, 420, "")
    header = (fleet.reports / "provision-report.csv").read_text().splitlines()[0]
    for column in ("serial", "key_size", "renew_after", "config", "config_changed", "restarted", "blackout_ms",
                   "phase", "checked_at"):
        assert '"%s"' % column in header
    assert "420 ms" in fleet.first_run.output and "RENEW AFTER" in fleet.first_run.output


def test_orphaned_ids_of_the_ledger_are_listed(fleet):
    orphans = fleet.report()["orphaned_ids"]
    assert [(o["agent_id"], o["hosts"]) for o in orphans] == [("A0", ["ok-01"]), ("R1", ["retired-01"])]
    assert "orphaned IDs (in the ledger, held by no host of the inventory): 2" in fleet.first_run.output


def test_each_run_keeps_a_timestamped_copy(fleet):
    copies = fleet.history()
    assert len(copies) >= 1
    first = json.loads(copies[0].read_text())
    assert sorted(r["host"] for r in first["hosts"]) == ["bad-args", "bad-config", "gone-01", "ok-01", "ok-02",
                                                         "silent-01"]
    assert re.fullmatch(r"provision-report-\d{8}T\d{6}Z(-\d+)?\.json", copies[0].name)


def test_a_limit_run_keeps_the_other_hosts_and_updates_its_own(fleet):
    before = fleet.rows()
    copies_before = {p: p.read_bytes() for p in fleet.history()}
    next_second()
    run = fleet.play("--limit", "ok-02")
    assert run.rc == 0, explain(run)
    after = fleet.rows()
    assert sorted(after) == sorted(before)  # the 6-host report stays a 6-host report
    assert after["ok-02"]["checked_at"] > before["ok-02"]["checked_at"]
    for host in ("ok-01", "bad-args", "bad-config", "gone-01", "silent-01"):
        assert {k: v for k, v in after[host].items() if k != "days_left"} == \
               {k: v for k, v in before[host].items() if k != "days_left"}
    # One more copy, holding this run's host only; the earlier copies are untouched.
    copies = fleet.history()
    assert len(copies) == len(copies_before) + 1
    assert all(p.read_bytes() == data for p, data in copies_before.items())
    new = next(p for p in copies if p not in copies_before)
    assert [r["host"] for r in json.loads(new.read_text())["hosts"]] == ["ok-02"]
    assert "6 host(s), 5 kept from earlier runs" in run.output


# --------------------------------------------------------------------------- the real playbook


def test_provision_playbook_reports_every_host_of_a_mixed_fleet(tmp_path, service):
    from tests.fixtures.playbook_fleet import write_inventory

    other_ca = str(service.state_dir / "enroll-ca.crt")  # a real CA, not the gate's
    inventory = write_inventory(tmp_path / "real-inventory.yml", {
        "real-ok": {},
        "real-args": {"mtls_rotate": "sometimes"},
        "real-config": {"mtls_server_ca": other_ca, "mtls_server_ca_src": ""},
        "real-gone": {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 9,
                      "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"},
    }, mtls_key_size=2048)
    fleet = ReportFleet(tmp_path, {})
    fleet.inventory = pathlib.Path(inventory)
    env = service.demo_env(tmp_path / "fleet")
    run = fleet.play("-e", "mtls_report_dir=%s" % fleet.reports, playbook=REPO / "playbooks" / "provision.yml", **env)
    assert run.rc != 0, explain(run)
    rows = fleet.rows()
    assert sorted(rows) == ["real-args", "real-config", "real-gone", "real-ok"], rows
    ok = rows["real-ok"]
    assert (ok["action"], ok["config"], ok["restarted"], ok["verify"], ok["phase"]) == (
        "created", "changed", True, "ok", ""), ok
    assert ok["blackout_ms"] >= 0 and ok["agent_id"] in service.registrations()
    args = rows["real-args"]
    assert (args["action"], args["phase"]) == ("failed", "arguments"), args
    assert "mtls_rotate" in args["error"] and "sometimes" in args["error"], args
    refused = rows["real-config"]
    assert (refused["action"], refused["phase"], refused["config"], refused["verify_failure"]) == (
        "created", "config", "refused", "untrusted_server"), refused
    assert refused["agent_id"] in service.registrations()  # the identity part succeeded
    gone = rows["real-gone"]
    assert (gone["action"], gone["phase"], gone["verify"]) == ("unreachable", "unreachable", "not run"), gone
    line = "totals: 4 host(s): 0 ok, 1 changed, 2 failed, 1 unreachable, 0 not run"
    assert run.output.count(line) == 1 and run.output.count(TITLE) == 1, explain(run)
    assert run.recap["real-args"]["failed"] == run.recap["real-config"]["failed"] == 1, explain(run)
    # The ledger (mtls_ledger_path) records the identities the run registered, and only those.
    path = fleet.reports / "identity-ledger.json"
    if not path.exists():
        pytest.fail("product: the mtls_identity action plugin never reads or writes the identity ledger "
                     "(ledger_path reaches the module unused): no record, no duplicate-ID refusal, no restore")
    ledger = Ledger(str(path))
    assert ledger.lookup("real-ok")["agent_id"] == ok["agent_id"]
    assert ledger.lookup("real-config")["agent_id"] == refused["agent_id"]
    assert ledger.lookup("real-args") is None


# --------------------------------------------------------------------------- serial batches


def test_the_table_is_printed_once_per_run_and_writing_is_no_change(tmp_path):
    fleet = ReportFleet(tmp_path, {"s-%d" % i: healthy("S%d" % i, FP["e"]) for i in range(1, 4)})
    run = fleet.play("-e", '{"mtls_serial": 1}', "--check", ANSIBLE_SHOW_CUSTOM_STATS="1")
    assert run.rc == 0, explain(run)
    assert run.output.count(TITLE) == 1, explain(run)  # three batches, one table
    assert "%s 3 host(s) (check mode)" % TITLE in run.output
    assert all(r["changed"] == 0 for r in run.recap.values()), explain(run)
    report = fleet.report()
    assert report["check_mode"] is True and sorted(fleet.rows()) == ["s-1", "s-2", "s-3"]
    assert len(fleet.history()) == 1
    # The AWX artifact: this run's rows and totals, no table text.
    stats = run.custom_stats()["mtls_report"]
    assert sorted(r["host"] for r in stats["hosts"]) == ["s-1", "s-2", "s-3"]
    assert stats["totals"]["ok"] == 3 and "table" not in stats


def test_a_canary_stop_shows_the_untouched_hosts_and_keeps_their_rows(tmp_path):
    hosts = {"c-%d" % i: healthy("C%d" % i, FP["f"]) for i in range(1, 5)}
    fleet = ReportFleet(tmp_path, hosts)
    canary = ["-e", '{"mtls_serial": [1, "100%"], "mtls_max_fail_percentage": 0}']
    assert fleet.play(*canary).rc == 0
    known = fleet.rows()

    hosts["c-1"] = {"fixture_fail_phase": "verify", "fixture_error": "refused by the gate"}
    fleet = ReportFleet(tmp_path, hosts)
    run = fleet.play(*canary)
    assert run.rc != 0, explain(run)
    assert set(run.recap) == {"c-1"}, explain(run)  # one host attempted
    assert run.output.count(TITLE) == 1
    assert "totals: 4 host(s): 0 ok, 0 changed, 1 failed, 0 unreachable, 3 not run" in run.output
    copy = {r["host"]: r for r in json.loads(fleet.history()[-1].read_text())["hosts"]}
    assert {h: copy[h]["action"] for h in copy} == {"c-1": "failed", "c-2": "not run", "c-3": "not run",
                                                    "c-4": "not run"}
    assert copy["c-2"]["reason"] == "the play stopped before its serial batch"
    rows = fleet.rows()
    assert rows["c-1"]["phase"] == "verify"
    assert all(rows[h] == known[h] | {"days_left": rows[h]["days_left"]} for h in ("c-2", "c-3", "c-4"))


# --------------------------------------------------------------------------- merging sliced jobs


def report_file(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"report": "provision-report", "hosts": rows}))


def test_report_merge_keeps_the_newest_row_per_host_and_merges_ledgers(tmp_path):
    fleet = ReportFleet(tmp_path, {h: {} for h in ("h1", "h2", "h3", "h4")})

    def row(host, checked_at, action="unchanged"):
        return {"host": host, "agent_id": "ID-" + host, "action": action, "checked_at": checked_at}

    report_file(fleet.reports / "provision-report.json", [row("h4", "2026-01-01T00:00:00Z", "valid")])
    report_file(tmp_path / "slice-1" / "provision-report.json",
                [row("h1", "2026-02-01T00:00:00Z", "created"), row("h2", "2026-02-03T00:00:00Z")])
    report_file(tmp_path / "slice-2" / "provision-report.json",
                [row("h1", "2026-02-02T00:00:00Z", "rotated"), row("h2", "2026-02-02T00:00:00Z", "older")])
    (tmp_path / "slice-2" / "artifacts.json").write_text(json.dumps(
        {"mtls_report": {"hosts": [row("h3", "2026-02-01T00:00:00Z", "restored")]}}))
    ledgers = []
    for number, (host, agent_id) in enumerate((("h1", "L1"), ("h3", "L3")), start=1):
        ledgers.append(str(tmp_path / ("slice-%d" % number) / "identity-ledger.json"))
        Ledger(ledgers[-1]).record(host, {"agent_id": agent_id, "fingerprint_sha256": FP["a"], "action": "created"})
    extra = {"mtls_report_name": "provision-report", "mtls_report_merge_ledgers": ledgers,
             "mtls_report_merge_sources": [str(tmp_path / "slice-1" / "provision-report.json"),
                                           str(tmp_path / "slice-2")]}
    run = fleet.play("-e", json.dumps(extra), playbook=MERGE_PLAYBOOK)
    assert run.rc == 0, explain(run)
    rows = fleet.rows()
    assert {h: rows[h]["action"] for h in rows} == {"h1": "rotated", "h2": "unchanged", "h3": "restored",
                                                    "h4": "valid"}
    assert run.output.count(TITLE) == 1
    merged = Ledger(str(fleet.reports / "identity-ledger.json"))
    assert (merged.lookup("h1")["agent_id"], merged.lookup("h3")["agent_id"]) == ("L1", "L3")
    assert fleet.report()["orphaned_ids"] == []  # h1 and h3 are hosts of the inventory
    assert len(fleet.history()) == 1
    run = fleet.play("-e", "mtls_report_name=provision-report", playbook=MERGE_PLAYBOOK)
    assert run.rc != 0 and "nothing to merge: set mtls_report_merge_sources" in run.output, explain(run)
