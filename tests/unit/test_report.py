"""The fleet report's rows, merges, totals, batches and files (plugins/module_utils/report.py
and the mtls_report_write action plugin's file helpers), as pure functions."""

from __future__ import annotations

import csv
import datetime
import importlib.util
import json
import os
import pathlib
import types

import pytest
import yaml
from ansible.executor.playbook_executor import PlaybookExecutor

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import report
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.report import PlayState, ReportError

REPO = pathlib.Path(__file__).resolve().parents[2]
NOW = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.UTC)
HOSTS = ["h1", "h2", "h3", "h4"]


def load_plugin():
    path = REPO / "plugins" / "action" / "mtls_report_write.py"
    spec = importlib.util.spec_from_file_location("mtls_report_write", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plugin = load_plugin()


def status(host, **values):
    base = {"host": host, "agent_id": "ID-" + host, "action": "unchanged", "fingerprint_sha256": "ab" * 32,
            "not_after": "2027-12-01T00:00:00Z", "renew_after": "2027-10-01T00:00:00Z", "verify": "ok",
            "checked_at": "2026-12-01T11:00:00Z"}
    base.update(values)
    return base


def typed(host, **values):
    return report.typed_row(status(host, **values))


def rows_of(hosts, statuses, active=None, batch=None, previous=None, final=True):
    active = hosts if active is None else active
    batch = active if batch is None else batch
    return {r["host"]: r for r in report.run_rows(hosts, statuses, active, batch, NOW, previous or {}, final)}


# ---- rows of a run


def test_a_status_becomes_a_row_with_every_column_typed():
    rows = rows_of(["h1"], {"h1": status("h1", key_size="4096", days_left="364", blackout_ms=812.6,
                                         config_changed="True", restarted=False, server_answer="{...}",
                                         checked_at="")})
    row = rows["h1"]
    assert list(row) == [name for name, _ in report.COLUMNS]
    assert (row["key_size"], row["days_left"], row["blackout_ms"]) == (4096, 364, 812)
    assert (row["config_changed"], row["restarted"]) == (True, False)
    assert row["phase"] == "" and row["serial"] == "" and row["not_before"] == ""
    assert "server_answer" not in row  # metadata the report does not carry is dropped
    assert row["checked_at"] == "2026-12-01T12:00:00Z"  # stamped when the status has none
    assert rows_of(["h1"], {"h1": status("h1")})["h1"]["checked_at"] == "2026-12-01T11:00:00Z"


def test_a_host_that_left_the_play_without_a_status_is_unreachable():
    row = rows_of(["h1", "h2"], {"h1": status("h1")}, active=["h1"])["h2"]
    assert (row["action"], row["phase"], row["verify"]) == ("unreachable", "unreachable", "not run")
    assert "unreachable" in row["error"] and row["checked_at"] == "2026-12-01T12:00:00Z"
    assert row["agent_id"] == "" and report.outcome(row) == "unreachable"


def test_an_unreachable_host_keeps_its_last_known_identity():
    previous = {"h2": typed("h2", serial="1f", key_size=4096)}
    row = rows_of(["h2"], {}, active=[], batch=[], previous=previous)["h2"]
    assert row["action"] == "unreachable"
    assert (row["agent_id"], row["serial"], row["key_size"], row["not_after"]) == ("ID-h2", "1f", 4096,
                                                                                  "2027-12-01T00:00:00Z")
    assert row["reason"] == "identity as last seen at 2026-12-01T11:00:00Z"
    # A later batch of the same run finds that row in the file: the reason stays the same.
    again = rows_of(["h2"], {}, active=[], batch=[], previous={"h2": row})["h2"]
    assert again["reason"] == row["reason"]


@pytest.mark.parametrize("batch, final, reason", [
    (["h1"], False, "waiting for its serial batch"),
    (["h1"], True, "the play stopped before its serial batch"),
    (["h1", "h2"], True, "the play set no mtls_identity_status for it"),
])
def test_a_host_of_the_play_without_a_status_is_not_run(batch, final, reason):
    row = rows_of(["h1", "h2"], {"h1": status("h1")}, batch=batch, final=final)["h2"]
    assert (row["action"], row["verify"], row["reason"], row["error"]) == ("not run", "not run", reason, "")
    assert row["checked_at"] == ""  # never checked
    assert report.outcome(row) == "not_run"


# ---- outcomes and totals


@pytest.mark.parametrize("values, expected", [
    ({}, "ok"),
    ({"action": "valid"}, "ok"),
    ({"action": "due"}, "ok"),
    ({"action": "created"}, "changed"),
    ({"action": "rotated"}, "changed"),
    ({"action": "restored"}, "changed"),
    ({"action": "decommissioned"}, "changed"),
    ({"config_changed": True}, "changed"),
    ({"restarted": True}, "changed"),
    ({"action": "failed", "phase": "identity", "error": "HTTP 500"}, "failed"),
    ({"phase": "arguments", "error": "value of mtls_rotate must be one of"}, "failed"),
    ({"action": "created", "verify": "failed", "error": "untrusted server"}, "failed"),
    ({"action": "not run", "error": "mtls_agent_id is a float"}, "failed"),
    ({"action": "not run"}, "not_run"),
    ({"action": "unreachable", "phase": "unreachable", "error": "x"}, "unreachable"),
])
def test_each_host_has_one_outcome(values, expected):
    assert report.outcome(typed("h1", **values)) == expected


def test_totals_count_every_outcome_and_the_hosts_due_for_rotation():
    rows = [
        typed("ok-1"),
        typed("due-renew", renew_after="2026-12-20T00:00:00Z"),  # renewal date within 30 days
        typed("due-expiry", renew_after="", not_after="2026-12-15T00:00:00Z"),  # no renewal date: expiry
        typed("changed", action="rotated", config_changed=True),
        typed("failed", action="failed", phase="config", error="refused"),
        typed("overdue-failed", action="failed", phase="verify", error="x", renew_after="2026-11-01T00:00:00Z"),
        typed("gone", action="decommissioned", renew_after="2026-11-01T00:00:00Z"),  # no identity left
        report.unreachable_row("unreach", NOW),
        report.typed_row({"host": "later", "action": "not run"}),
    ]
    totals = report.totals(rows, NOW, 30)
    assert totals == {"hosts": 9, "ok": 3, "changed": 2, "failed": 2, "unreachable": 1, "not_run": 1,
                      "due_for_rotation": 3, "due_days": 30}
    assert report.totals(rows, NOW, 10)["due_for_rotation"] == 1  # only the overdue one
    assert report.totals_line(totals) == (
        "totals: 9 host(s): 3 ok, 2 changed, 2 failed, 1 unreachable, 1 not run; 3 due for rotation within 30 days")


def test_days_left_is_recomputed_for_the_report_date():
    row = report.refresh_days_left(typed("h1", days_left=400, not_after="2026-12-31T12:00:00Z"), NOW)
    assert row["days_left"] == 30
    assert report.refresh_days_left(typed("h1", days_left=5, not_after=""), NOW)["days_left"] == 5
    assert report.refresh_days_left(typed("h1", not_after="2026-11-30T13:00:00Z"), NOW)["days_left"] == -1


# ---- merges


def test_limit_run_replaces_its_hosts_and_keeps_the_others():
    fleet = [typed(h, checked_at="2026-11-01T00:00:00Z") for h in HOSTS]
    run = [typed("h2", action="rotated", checked_at="2026-12-01T11:00:00Z")]
    merged = {r["host"]: r for r in report.merge_into_fleet(fleet, run)}
    assert list(merged) == HOSTS
    assert merged["h2"]["action"] == "rotated" and merged["h2"]["checked_at"] == "2026-12-01T11:00:00Z"
    assert all(merged[h] == fleet[i] for i, h in enumerate(HOSTS) if h != "h2")


def test_not_run_rows_fill_new_hosts_only():
    fleet = [typed("h1", checked_at="2026-11-01T00:00:00Z")]
    run = [report.typed_row({"host": h, "action": "not run"}) for h in ("h1", "h5")]
    merged = {r["host"]: r for r in report.merge_into_fleet(fleet, run)}
    assert merged["h1"] == fleet[0]  # a canary stop does not erase the host's last known row
    assert merged["h5"]["action"] == "not run"
    # A failure and an unreachable host are news: they replace the row.
    failed = typed("h1", action="failed", phase="arguments", error="bad")
    assert report.merge_into_fleet(fleet, [failed]) == [failed]
    unreachable = report.unreachable_row("h1", NOW, fleet[0])
    assert report.merge_into_fleet(fleet, [unreachable]) == [unreachable]


def test_merged_reports_keep_the_newest_row_per_host():
    slice_a = [typed("h1", checked_at="2026-11-01T00:00:00Z", action="created"),
               typed("h2", checked_at="2026-11-20T00:00:00Z")]
    slice_b = [typed("h1", checked_at="2026-11-02T00:00:00+00:00", action="rotated"),
               typed("h2", checked_at="2026-11-19T23:00:00Z", action="older"),
               report.typed_row({"host": "h3", "action": "not run"})]
    old_run = [typed("h3", checked_at="2020-01-01T00:00:00Z", action="valid"),
               typed("h4", checked_at="not a time", action="garbled")]
    merged = {r["host"]: r for r in report.merge_reports([old_run, slice_a, slice_b])}
    assert [merged[h]["action"] for h in HOSTS] == ["rotated", "unchanged", "valid", "garbled"]
    # A tie goes to the later report.
    same = typed("h1", checked_at="2026-11-01T00:00:00Z", action="second")
    assert report.merge_reports([slice_a, [same]])[0]["action"] == "second"


# ---- serial batches


class _Inventory:
    def __init__(self, hosts):
        self.hosts = hosts

    def get_hosts(self, pattern, order=None):
        return list(self.hosts)


@pytest.mark.parametrize("count", [1, 7, 10])
@pytest.mark.parametrize("serial", [[], [1], [3], ["100%"], ["30%"], [1, "100%"], [1, "10%", "100%"],
                                    [2, 1], ["1%"], [0]])
def test_batches_are_cut_as_ansible_playbook_cuts_them(serial, count):
    hosts = ["h%02d" % i for i in range(count)]
    executor = types.SimpleNamespace(_inventory=_Inventory(hosts))
    play = types.SimpleNamespace(hosts="all", order=None, serial=serial)
    expected = PlaybookExecutor._get_serialized_batches(executor, play)
    assert report.serial_batches(hosts, serial) == expected


def play(batch, active=None, serial=(1, "100%"), mfp=None, fatal=False, order=None):
    return PlayState(hosts_all=HOSTS, active=HOSTS if active is None else active, batch=batch,
                     serial=list(serial), max_fail_percentage=mfp, any_errors_fatal=fatal, order=order)


@pytest.mark.parametrize("state, failed, ends", [
    (play(HOSTS, serial=()), set(), True),  # one batch
    (play(["h2", "h3", "h4"]), set(), True),  # the last batch
    (play(["h1"]), set(), False),  # the canary passed: the play goes on
    (play(["h1"], mfp=0), {"h1"}, True),  # the canary failed, max_fail_percentage 0
    (play(["h1"]), {"h1"}, True),  # every host of the batch failed: ansible-playbook stops anyway
    (play(["h1", "h2"], serial=(2,)), {"h1"}, False),  # half failed, no threshold
    (play(["h1", "h2"], serial=(2,), mfp=40), {"h1"}, True),  # 50% > 40%
    (play(["h1", "h2"], serial=(2,), mfp=50), {"h1"}, False),  # 50% is not more than 50%
    (play(["h2"], active=["h2", "h3", "h4"], serial=(2,)), {"h2"}, True),  # h1 left the play, h2 failed
    (play(["h2"], active=["h2", "h3", "h4"], serial=(2,)), set(), False),
    (play(["h1", "h2"], serial=(2,), fatal=True), {"h2"}, True),
])
def test_the_batch_that_ends_the_play(state, failed, ends):
    assert report.ends_the_play(state, failed, reported=set(state.batch)) is ends


def test_shuffled_batches_end_when_no_host_is_left_without_a_row():
    state = play(["h3"], order="shuffle")
    assert report.ends_the_play(state, set(), reported={"h1", "h2"}) is False
    assert report.ends_the_play(state, set(), reported={"h1", "h2", "h4"}) is True


# ---- renderings


def test_the_table_shows_the_new_columns_the_totals_and_the_orphans():
    rows = [typed("h1", action="rotated", restarted=True, blackout_ms=640, config="changed", cloud="active",
                  agent_uptime_s=3, keygen="background", keygen_ms=61234, keygen_wait_ms=12000),
            typed("h2", action="failed", phase="config", error="staged check failed: untrusted server"),
            report.typed_row({"host": "h3", "action": "not run", "reason": "the play stopped before its serial batch"})]
    orphans = [{"agent_id": "OLD1", "hosts": ["h1"], "last_seen": "2026-11-01T00:00:00Z"}]
    lines = report.table_lines("provision-report", rows, report.totals(rows, NOW, 30), orphans, check_mode=True)
    assert lines[0] == "fleet-mtls report provision-report: 3 host(s) (check mode)"
    assert lines[1].split() == ["HOST", "AGENT", "ID", "ACTION", "FINGERPRINT", "NOT", "AFTER", "RENEW", "AFTER",
                                "DAYS", "KEYGEN", "CONFIG", "RESTART", "VERIFY", "CLOUD", "ERROR"]
    assert "640 ms" in lines[2] and "2027-10-01" in lines[2] and "abababababababab..." in lines[2]
    assert "  61.2 s  " in lines[2]  # the device's making of this run's key
    assert "active 3s" in lines[2] and lines[3].split()[11:13] == ["-", "[config]"]  # h2: the cloud not asked
    assert lines[3].endswith("[config] staged check failed: untrusted server")
    assert lines[4].endswith("(the play stopped before its serial batch)")
    assert lines[5].startswith("totals: 3 host(s): 0 ok, 1 changed, 1 failed, 0 unreachable, 1 not run")
    assert lines[6:] == ["orphaned IDs (in the ledger, held by no host of the inventory): 1",
                         "  OLD1  last held by h1, last seen 2026-11-01T00:00:00Z"]
    assert report.table_lines("r", rows, report.totals(rows, NOW, 30), [])[-1].startswith("totals:")
    assert "not listed" in report.table_lines("r", rows, report.totals(rows, NOW, 30), None)[-1]


def test_csv_has_every_column_and_neutralises_formulas():
    rows = [typed("h1", config_changed=True, restarted=False, error="=HYPERLINK(\"x\")", days_left=-3)]
    lines = report.csv_text(rows).splitlines()
    assert lines[0] == ",".join('"%s"' % name for name, _ in report.COLUMNS)
    for column in ("serial", "key_size", "renew_after", "config", "config_changed", "restarted", "blackout_ms",
                   "phase", "checked_at"):
        assert '"%s"' % column in lines[0]
    values = dict(zip([name for name, _ in report.COLUMNS], next(csv.reader(lines[1:])), strict=True))
    assert (values["config_changed"], values["restarted"], values["days_left"]) == ("true", "false", "-3")
    assert values["error"].startswith("'=")


def test_no_key_material_is_ever_written():
    with pytest.raises(ReportError, match="key material"):
        report.json_text({"hosts": [typed("h1", error="-----BEGIN PRIVATE KEY----- MIIE")]})


def test_rows_are_read_from_reports_and_from_awx_artifacts():
    document = report.report_document("r", "p", NOW, [typed("h1")], {}, [], False)
    assert report.rows_of_document(document, "x")[0]["host"] == "h1"
    assert report.rows_of_document({"mtls_report": document}, "x")[0]["agent_id"] == "ID-h1"
    old = {"hosts": [{"host": "h1", "action": "created"}]}  # a report of an earlier version
    assert report.rows_of_document(old, "x")[0]["phase"] == ""
    for foreign in ({"format": "fleet-mtls identity ledger", "hosts": {}}, [1, 2], {"hosts": [{"action": "x"}]}):
        with pytest.raises(ReportError, match="x is not a fleet-mtls report"):
            report.rows_of_document(foreign, "x")


# ---- the plugin's files


def test_history_copies_are_never_overwritten(tmp_path):
    paths = [plugin.create_new(str(tmp_path / "history"), "provision-report-20261201T120000Z", "run %d\n" % i)
             for i in range(3)]
    assert [os.path.basename(p) for p in paths] == ["provision-report-20261201T120000Z.json",
                                                    "provision-report-20261201T120000Z-2.json",
                                                    "provision-report-20261201T120000Z-3.json"]
    assert [pathlib.Path(p).read_text() for p in paths] == ["run 0\n", "run 1\n", "run 2\n"]
    assert sorted(os.listdir(tmp_path / "history")) == sorted(os.path.basename(p) for p in paths)  # no temp left
    assert all(os.stat(p).st_mode & 0o777 == 0o644 for p in paths)


def test_an_existing_file_that_is_not_a_report_is_refused(tmp_path):
    assert plugin.read_report(str(tmp_path / "missing.json")) == []
    with pytest.raises(ReportError, match="does not exist"):
        plugin.read_report(str(tmp_path / "missing.json"), missing_ok=False)
    (tmp_path / "notes.json").write_text("my notes, not JSON")
    with pytest.raises(ReportError, match="not a readable fleet-mtls report"):
        plugin.read_report(str(tmp_path / "notes.json"))
    (tmp_path / "other.json").write_text(json.dumps({"hosts": "all"}))
    with pytest.raises(ReportError, match="not a fleet-mtls report"):
        plugin.read_report(str(tmp_path / "other.json"))


def test_sources_name_reports_and_directories_of_them(tmp_path):
    document = report.report_document("r", "p", NOW, [typed("h1")], {}, [], False)
    (tmp_path / "d").mkdir()
    for name in ("b.json", "a.json"):
        (tmp_path / "d" / name).write_text(json.dumps(document))
    (tmp_path / "d" / "identity-ledger.json").write_text(json.dumps({"format": "fleet-mtls identity ledger"}))
    (tmp_path / "d" / "notes.txt").write_text("not JSON")
    (tmp_path / "x.json").write_text(json.dumps({"mtls_report": document}))
    skipped = []
    rows = plugin.read_sources([str(tmp_path / "x.json"), str(tmp_path / "d")], skipped)
    assert [[r["host"] for r in rows_] for rows_ in rows] == [["h1"]] * 3
    assert skipped == [str(tmp_path / "d" / "identity-ledger.json")]
    # A file named as a source must be a report.
    with pytest.raises(ReportError, match="identity-ledger.json is not a fleet-mtls report"):
        plugin.read_sources([str(tmp_path / "d" / "identity-ledger.json")], skipped)
    with pytest.raises(ReportError, match="does not exist"):
        plugin.read_sources([str(tmp_path / "missing.json")], skipped)


def test_the_plugin_documents_exactly_its_options():
    stub = (REPO / "plugins" / "modules" / "mtls_report_write.py").read_text()
    documented = yaml.safe_load(stub.split('DOCUMENTATION = r"""', 1)[1].split('"""', 1)[0])["options"]
    assert sorted(documented) == sorted(plugin.SPEC)
    for option, spec in plugin.SPEC.items():
        assert documented[option]["type"] == spec["type"], option
        assert documented[option].get("default") == spec.get("default"), option


def test_a_failed_row_that_could_not_read_the_device_keeps_the_last_known_identity():
    earlier = [typed("h1"), typed("h2")]
    failed = typed("h1", agent_id="", fingerprint_sha256="", not_after="", renew_after="", action="failed",
                   phase="preflight", error="agent ID would be used by h1 and h2")
    fleet = {r["host"]: r for r in report.merge_into_fleet(earlier, [failed])}
    assert fleet["h1"]["action"] == "failed" and fleet["h1"]["phase"] == "preflight"
    assert fleet["h1"]["agent_id"] == "ID-h1" and fleet["h1"]["fingerprint_sha256"] == "ab" * 32
    # A failed row that knows the identity (it changed before a later phase failed) keeps its own.
    rotated = typed("h2", agent_id="ID-h2", fingerprint_sha256="cd" * 32, action="rotated", phase="config")
    fleet = {r["host"]: r for r in report.merge_into_fleet(earlier, [rotated])}
    assert fleet["h2"]["fingerprint_sha256"] == "cd" * 32


def test_the_table_says_how_long_each_device_took_for_its_key():
    made = [typed("slow", keygen="background", keygen_ms=95500, keygen_wait_ms=0),
            typed("fast", keygen="inline", keygen_ms=1200),
            typed("same", action="unchanged")]
    assert [report._table_cell(r, "keygen") for r in made] == ["95.5 s", "1.2 s inline", "-"]
