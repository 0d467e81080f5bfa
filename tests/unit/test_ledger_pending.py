"""Each host's own ledger record is one line appended to ``<ledger>.pending``: every reader
applies it, the next locked change writes it into the ledger, and nothing is applied twice - not
even after a stop between writing the ledger and removing the pending file
(tests/module/test_ledger_concurrent_writers.py: appenders, folds and writers at once)."""

from __future__ import annotations

import json
import os
import pathlib

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import ledger as ledger_mod
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.ledger import Ledger, LedgerError

FP = {name: (name * 64)[:64] for name in "abcdef"}


class Clock:
    def __init__(self):
        self.tick = 0

    def __call__(self):
        self.tick += 1
        return "2026-01-01T00:%02d:%02dZ" % divmod(self.tick, 60)


def row(agent_id, fingerprint, action="created"):
    return {"agent_id": agent_id, "fingerprint_sha256": fingerprint, "action": action}


@pytest.fixture
def path(tmp_path):
    (tmp_path / "state").mkdir()
    return tmp_path / "state" / "identity-ledger.json"


@pytest.fixture
def led(path):
    return Ledger(str(path), clock=Clock())


def pending(path):
    return pathlib.Path(str(path) + ledger_mod.PENDING_SUFFIX)


def test_an_appended_record_leaves_the_ledger_file_as_it_was_and_every_reader_sees_it(led, path):
    led.record("edge-01", row("0A000001", FP["a"]))
    before = path.read_bytes()
    assert led.append_status("edge-02", row("0A000002", FP["b"]))
    assert led.append_status("edge-01", row("0A000001", FP["a"], "unchanged"))
    assert path.read_bytes() == before  # the fleet-sized file is neither read nor written
    lines = pending(path).read_text().splitlines()
    assert len(lines) == 3 and "pending" in json.loads(lines[0])
    assert json.loads(lines[1])["host"] == "edge-02"
    assert led.hosts()["edge-02"]["agent_id"] == "0A000002"
    assert led.lookup("edge-02")["history"][0]["action"] == "created"
    assert led.duplicate_ids({"edge-03": "0A000002"}) == {"0A000002": ["edge-02", "edge-03"]}


def test_rows_that_say_nothing_about_the_identity_append_nothing(led, path):
    for action in ledger_mod.UNRECORDED_ACTIONS:
        assert not led.append_status("edge-01", row("0A000001", FP["a"], action))
    assert not led.append_status("edge-01", row("", ""))
    assert not pending(path).exists()


def test_an_append_never_parses_the_ledger(led, path, monkeypatch):
    led.record("edge-01", row("0A000001", FP["a"]))

    def no_parse(*_args, **_kwargs):
        raise AssertionError("the ledger was parsed")

    monkeypatch.setattr(ledger_mod, "parse", no_parse)
    assert led.append_status("edge-01", row("0A000001", FP["b"], "rotated"))


def test_the_next_locked_change_writes_the_records_in_and_removes_the_pending_file(led, path):
    led.append_status("edge-01", row("0A000001", FP["a"]))
    led.append_status("edge-01", row("0A000001", FP["b"], "rotated"))
    led.record("edge-02", row("0A000002", FP["c"]))
    assert not pending(path).exists()
    hosts = json.loads(path.read_text())["hosts"]  # the file alone, as an operator's jq reads it
    assert [e["action"] for e in hosts["edge-01"]["history"]] == ["created", "rotated"]
    assert hosts["edge-01"]["fingerprint_sha256"] == FP["b"]
    assert hosts["edge-01"]["history"][0]["time"] < hosts["edge-01"]["history"][1]["time"]
    assert set(hosts) == {"edge-01", "edge-02"}


def test_fold_writes_the_records_in_and_does_nothing_without_them(led, path):
    assert led.fold() == 0 and not path.exists()
    led.append_status("edge-01", row("0A000001", FP["a"]))
    assert led.fold() == 1
    assert not pending(path).exists()
    assert json.loads(path.read_text())["hosts"]["edge-01"]["agent_id"] == "0A000001"
    stamp = path.stat().st_mtime_ns
    assert led.fold() == 0 and path.stat().st_mtime_ns == stamp


def test_a_stop_between_the_ledger_write_and_the_removal_applies_nothing_twice(led, path):
    led.append_status("edge-01", row("0A000001", FP["a"]))
    led.append_status("edge-01", row("0A000001", FP["b"], "rotated"))
    left_over = pending(path).read_bytes()
    led.fold()
    pending(path).write_bytes(left_over)  # as if the run stopped before the removal
    led.record("edge-01", row("0A000001", FP["c"], "rotated"))  # a later rotation, written in at once
    pending(path).write_bytes(left_over)
    led.append_status("edge-01", row("0A000001", FP["d"], "rotated"))  # and one appended after the stop
    for view in (led.hosts(), (led.fold(), json.loads(path.read_text())["hosts"])[1]):
        entry = view["edge-01"]
        assert entry["fingerprint_sha256"] == FP["d"], entry
        assert [e["fingerprint_sha256"] for e in entry["history"]] == [FP["a"], FP["b"], FP["c"], FP["d"]]


def test_the_ledger_keeps_the_marks_of_its_last_pending_files_only(led, path):
    for number in range(ledger_mod.FOLDED_KEPT + 3):
        led.append_status("edge-%02d" % number, row("0A0000%02d" % number, FP["a"][:62] + "%02d" % number))
        led.fold()
    folded = json.loads(path.read_text())["folded"]
    assert len(folded) == ledger_mod.FOLDED_KEPT and all(count == 1 for count in folded.values())


def test_a_line_cut_short_by_a_crash_is_skipped_and_the_next_one_stays_whole(led, path):
    led.append_status("edge-01", row("0A000001", FP["a"]))
    with open(pending(path), "a") as handle:
        handle.write('{"host": "edge-02", "row": {"agent_id": "0A0')  # no newline: the write was cut
    assert set(led.hosts()) == {"edge-01"}
    led.append_status("edge-03", row("0A000003", FP["c"]))
    assert set(led.hosts()) == {"edge-01", "edge-03"}
    assert led.fold() == 2 and set(json.loads(path.read_text())["hosts"]) == {"edge-01", "edge-03"}


def test_a_symlink_at_the_pending_file_is_refused_never_followed(led, path, tmp_path):
    led.record("edge-01", row("0A000001", FP["a"]))
    target = tmp_path / "elsewhere"
    target.write_text("operator's file\n")
    os.symlink(target, pending(path))
    with pytest.raises(LedgerError):
        led.append_status("edge-02", row("0A000002", FP["b"]))
    with pytest.raises(LedgerError):
        led.hosts()
    with pytest.raises(LedgerError):
        led.record("edge-02", row("0A000002", FP["b"]))
    with pytest.raises(LedgerError):
        led.fold()
    assert target.read_text() == "operator's file\n"


@pytest.mark.parametrize("writer", ["report", "role"])
def test_an_id_recorded_for_a_renamed_host_moves_with_a_warning_when_written_in(led, path, writer):
    """The report's write of the batch, or the role's last task (fold), shows the warning."""
    led.record("edge-old", row("0A000001", FP["a"]))
    led.append_status("edge-new", row("0A000001", FP["a"], "unchanged") | {"verify": "ok"})
    warnings = []
    if writer == "report":
        led.record_many({"edge-new": row("0A000001", FP["a"], "unchanged") | {"verify": "ok"}}, warnings)
    else:
        assert led.fold(warnings) == 1
    assert [w for w in warnings if "moved from host edge-old to host edge-new" in w], warnings
    hosts = led.hosts()
    assert (hosts["edge-old"]["agent_id"], hosts["edge-new"]["agent_id"]) == ("", "0A000001")


def test_many_rows_at_once_move_ids_between_hosts_like_one_at_a_time(tmp_path):
    rows = {"h%03d" % i: row("0A%06d" % i, ("%064x" % i)) for i in range(200)}
    moves = {"n%03d" % i: row("0A%06d" % i, ("%064x" % i), "unchanged") | {"verify": "ok"} for i in range(0, 200, 7)}
    one, many = Ledger(str(tmp_path / "one.json"), clock=Clock()), Ledger(str(tmp_path / "many.json"), clock=Clock())
    many.record_many(rows)
    many.record_many(moves)
    for host, value in rows.items():
        one.record(host, value)
    for host, value in moves.items():
        one.record(host, value)
    strip = {h: (e["agent_id"], [(x["action"], x["agent_id"], x.get("to")) for x in e["history"]])
             for h, e in one.hosts().items()}
    assert strip == {h: (e["agent_id"], [(x["action"], x["agent_id"], x.get("to")) for x in e["history"]])
                     for h, e in many.hosts().items()}
    assert many.hosts()["h007"]["agent_id"] == "" and many.hosts()["n007"]["agent_id"] == "0A000007"


@pytest.mark.parametrize("line", [
    '{"time": "2026-01-01T00:00:09Z", "host": "", "row": {"agent_id": "0A000009", "fingerprint_sha256": "9"}}',
    '{"time": "2026-01-01T00:00:09Z", "host": " ", "row": {"agent_id": "0A000009"}}',
    '{"time": 9, "host": "edge-09", "row": {"agent_id": "0A000009"}}',
    '{"time": "2026-01-01T00:00:09Z", "host": "edge-09", "row": ["0A000009"]}',
    '["edge-09"]', '\u0000\u0001 not json', '{"pending": "a second header"}',
])
def test_a_line_that_is_not_a_record_is_skipped_by_every_reader(led, path, line):
    led.append_status("edge-01", row("0A000001", FP["a"]))
    with open(pending(path), "a") as handle:
        handle.write(line + "\n")
    led.append_status("edge-02", row("0A000002", FP["b"]))
    assert set(led.hosts()) == {"edge-01", "edge-02"}
    assert led.fold() == 2
    assert set(json.loads(path.read_text())["hosts"]) == {"edge-01", "edge-02"}


def test_a_snapshot_answers_every_query_from_one_reading(led, path, monkeypatch):
    led.record("edge-01", row("0A000001", FP["a"]))
    led.append_status("edge-02", row("0A000002", FP["b"]))
    view = led.snapshot()
    reads = []
    monkeypatch.setattr(ledger_mod, "load", lambda *a, **k: reads.append(a) or ledger_mod.empty_ledger())
    assert view.duplicate_ids({"edge-03": "0A000002"}) == {"0A000002": ["edge-02", "edge-03"]}
    assert [c["host"] for c in view.claims("0A000001")] == ["edge-01"]
    assert view.lookup("edge-02")["agent_id"] == "0A000002" and view.orphans(["edge-01"]) == [
        {"agent_id": "0A000002", "hosts": ["edge-02"], "last_seen": view.hosts()["edge-02"]["last_seen"]}]
    assert reads == [] and led.hosts() == {}  # the ledger itself still reads the file now
