"""The controller's identity ledger: records, queries, merge, refusal of foreign files
(tests/module/test_ledger_concurrent_writers.py: several processes writing at once)."""

from __future__ import annotations

import fcntl
import json
import os
import stat

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import ledger as ledger_mod
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.ledger import Ledger, LedgerError

FP = {name: (name * 64)[:64] for name in "abcdefgh"}


class Clock:
    """Times one second apart, in the ledger's format."""

    def __init__(self, start=0):
        self.tick = start

    def __call__(self):
        self.tick += 1
        return "2026-01-01T00:%02d:%02dZ" % divmod(self.tick, 60)


def row(agent_id="", fingerprint="", action="unchanged"):
    return {"agent_id": agent_id, "fingerprint_sha256": fingerprint, "action": action}


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "reports" / "identity-ledger.json")


@pytest.fixture
def led(path):
    return Ledger(path, clock=Clock())


# ---- record and lookup


def test_lookup_of_an_empty_or_missing_ledger_is_none(led):
    assert led.lookup("edge-01") is None
    assert not os.path.exists(led.path)


def test_first_record_creates_the_entry_with_one_event(led):
    event = led.record("edge-01", row("A1", FP["a"], "created"))
    assert event == {"time": "2026-01-01T00:00:01Z", "action": "created", "agent_id": "A1",
                     "fingerprint_sha256": FP["a"]}
    entry = led.lookup("edge-01")
    assert entry == {"agent_id": "A1", "fingerprint_sha256": FP["a"], "first_seen": "2026-01-01T00:00:01Z",
                     "last_seen": "2026-01-01T00:00:01Z", "history": [event]}
    assert stat.S_IMODE(os.stat(led.path).st_mode) == 0o644
    assert os.path.exists(led.path + ".lock")
    assert sorted(os.listdir(os.path.dirname(led.path))) == ["identity-ledger.json", "identity-ledger.json.lock"]


def test_same_identity_again_moves_last_seen_only(path):
    led = Ledger(path, clock=Clock(), last_seen_resolution=2)
    led.record("edge-01", row("A1", FP["a"], "created"))
    assert led.record("edge-01", row("A1", FP["a"], "unchanged")) is None  # 1 s later: too soon
    assert led.lookup("edge-01")["last_seen"] == "2026-01-01T00:00:01Z"
    assert led.record("edge-01", row("A1", FP["a"], "unchanged")) is None  # 2 s later
    entry = led.lookup("edge-01")
    assert len(entry["history"]) == 1
    assert (entry["first_seen"], entry["last_seen"]) == ("2026-01-01T00:00:01Z", "2026-01-01T00:00:03Z")


def test_a_rerun_of_an_unchanged_fleet_does_not_rewrite_the_file(led):
    led.record_many({"edge-%02d" % i: row("A%d" % i, FP["a"], "created") for i in range(5)})
    before = os.stat(led.path)
    assert led.record_many({"edge-%02d" % i: row("A%d" % i, FP["a"]) for i in range(5)}) == {}
    after = os.stat(led.path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_the_file_is_json_with_one_line_per_host(led):
    led.record_many({"edge-02": row("A2", FP["b"], "created"), "edge-01": row("A1", FP["a"], "created")})
    text = open(led.path).read()
    lines = text.splitlines()
    assert lines[0].startswith('{"format": "fleet-mtls identity ledger", "version": 1, "updated_at": ')
    assert lines[1].startswith('"edge-01": {"agent_id":"A1"') and lines[2].startswith('"edge-02": ')
    assert lines[3:] == ["}}"]
    assert ledger_mod.parse(text) == json.loads(text)
    assert json.loads(ledger_mod.render(ledger_mod.empty_ledger())) == ledger_mod.empty_ledger()


@pytest.mark.parametrize("second, action", [
    (row("A1", FP["b"], "rotated"), "rotated"),  # new certificate, same ID
    (row("A2", FP["c"], "created"), "created"),  # lost identity, new ID minted
    (row("A1", FP["d"], "restored"), "restored"),  # lost identity, ledger ID handed back
])
def test_each_change_of_id_or_certificate_is_one_event(led, second, action):
    led.record("edge-01", row("A1", FP["a"], "created"))
    event = led.record("edge-01", second)
    assert event["action"] == action
    entry = led.lookup("edge-01")
    assert [e["action"] for e in entry["history"]] == ["created", action]
    assert (entry["agent_id"], entry["fingerprint_sha256"]) == (second["agent_id"], second["fingerprint_sha256"])


@pytest.mark.parametrize("nothing_known", [
    row(action="unreachable"), row(action="failed"), row(action="not run"), row("A9", "", "failed"), {},
])
def test_rows_without_an_identity_never_erase_one(led, nothing_known):
    led.record("edge-01", row("A1", FP["a"], "created"))
    before = led.lookup("edge-01")
    assert led.record("edge-01", nothing_known) is None
    assert led.lookup("edge-01") == before
    assert led.record("edge-02", nothing_known) is None
    assert led.lookup("edge-02") is None  # no empty entry for a host never seen with an identity


def test_decommissioning_releases_the_id_and_keeps_the_history(led):
    led.record("edge-01", row("A1", FP["a"], "created"))
    event = led.record("edge-01", row("A1", FP["a"], "decommissioned"))
    assert event["action"] == "decommissioned" and event["agent_id"] == "A1"
    entry = led.lookup("edge-01")
    assert (entry["agent_id"], entry["fingerprint_sha256"]) == ("", "")
    assert [e["action"] for e in entry["history"]] == ["created", "decommissioned"]
    # A second decommissioning has nothing left to release.
    assert led.record("edge-01", row(action="decommissioned")) is None


def test_the_renewal_date_predicts_which_hosts_need_a_new_key(led):
    """The role's background keygen runs only where the ledger expects a new key: a host it does
    not know or holds no ID for, or whose renewal date (kept from the report row) has come."""
    expects = ledger_mod.expects_new_key
    assert expects(None, "2026-06-01T00:00:00Z")
    led.record("edge-01", dict(row("A1", FP["a"], "created"), renew_after="2026-06-01T00:00:00Z"))
    entry = led.lookup("edge-01")
    assert entry["renew_after"] == "2026-06-01T00:00:00Z"
    assert not expects(entry, "2026-05-31T23:59:59Z") and expects(entry, "2026-06-01T00:00:00Z")
    led.record("edge-02", row("A2", FP["b"], "created"))  # an entry written before the date was kept
    assert not expects(led.lookup("edge-02"), "2099-01-01T00:00:00Z")
    led.record("edge-01", row(action="decommissioned"))
    assert "renew_after" not in led.lookup("edge-01") and expects(led.lookup("edge-01"), "2026-01-01T00:00:00Z")


def test_record_many_is_one_write_for_many_hosts(led):
    events = led.record_many({"edge-01": row("A1", FP["a"], "created"), "edge-02": row("A2", FP["b"], "created"),
                              "edge-03": row(action="unreachable")})
    assert sorted(events) == ["edge-01", "edge-02"]
    assert sorted(led.hosts()) == ["edge-01", "edge-02"]
    with pytest.raises(LedgerError, match="host name"):
        led.record("", row("A1", FP["a"]))


# ---- queries


@pytest.fixture
def history(led):
    """edge-01: A1, then A2 (lost identity, new ID); edge-02: A3; edge-03: A4, decommissioned;
    old-01 (gone from the inventory): A5."""
    led.record("edge-01", row("A1", FP["a"], "created"))
    led.record("edge-02", row("A3", FP["b"], "created"))
    led.record("edge-03", row("A4", FP["c"], "created"))
    led.record("old-01", row("A5", FP["d"], "created"))
    led.record("edge-01", row("A2", FP["e"], "created"))
    led.record("edge-03", row("A4", FP["c"], "decommissioned"))
    return led


def test_claims_say_who_holds_and_who_held_an_id(history):
    assert history.claims("A1") == [{"host": "edge-01", "current": False, "since": "2026-01-01T00:00:01Z",
                                     "last_seen": "2026-01-01T00:00:05Z"}]
    assert history.claims("A2") == [{"host": "edge-01", "current": True, "since": "2026-01-01T00:00:05Z",
                                     "last_seen": "2026-01-01T00:00:05Z"}]
    assert history.claims("A4")[0]["current"] is False
    assert history.claims("nobody") == []
    # The same ID on a second host (restored there by mistake): both claims are listed.
    history.record("edge-02", row("A1", FP["f"], "restored"))
    assert [(c["host"], c["current"]) for c in history.claims("A1")] == [("edge-01", False), ("edge-02", True)]


def test_duplicate_ids_of_preassigned_ids(history):
    assert history.duplicate_ids({"new-01": "B1", "new-02": "B1", "new-03": "B2"}) == {"B1": ["new-01", "new-02"]}
    assert history.duplicate_ids({"new-01": "B1", "new-02": "B2"}) == {}


def test_duplicate_ids_against_the_ledger(history):
    # A pre-assigned ID another host holds in the ledger (outside the run, e.g. --limit).
    assert history.duplicate_ids({"new-01": "A3"}) == {"A3": ["edge-02", "new-01"]}
    # A host without a pre-assigned ID would get its ledger ID back: that one counts too.
    assert history.duplicate_ids({"edge-02": "", "new-01": "A3"}) == {"A3": ["edge-02", "new-01"]}
    # An ID a host held before (A1, replaced) or a decommissioned one (A4) is free to take.
    assert history.duplicate_ids({"new-01": "A1", "new-02": "A4"}) == {}
    # A host gone from the inventory does not block its ID when the inventory is given.
    assert history.duplicate_ids({"new-01": "A5"}) == {"A5": ["new-01", "old-01"]}
    assert history.duplicate_ids({"new-01": "A5"}, current_hosts=["edge-01", "edge-02", "new-01"]) == {}


def test_orphans_are_ids_no_current_host_holds(history):
    orphans = history.orphans(["edge-01", "edge-02", "edge-03"])
    # A1: replaced on edge-01; A5: its host left the inventory; A4 was decommissioned (deleted).
    assert [o["agent_id"] for o in orphans] == ["A1", "A5"]
    assert orphans[0] == {"agent_id": "A1", "hosts": ["edge-01"], "last_seen": "2026-01-01T00:00:05Z"}
    assert orphans[1]["hosts"] == ["old-01"]
    assert history.orphans(["edge-01", "edge-02", "edge-03", "old-01"])[0]["agent_id"] == "A1"
    # Given back to its host (restored), an ID is no orphan any more.
    history.record("edge-01", row("A1", FP["g"], "restored"))
    assert [o["agent_id"] for o in history.orphans(["edge-01", "edge-02", "edge-03", "old-01"])] == ["A2"]


# ---- merge


def test_merge_is_a_union_that_keeps_every_event(tmp_path):
    mine = Ledger(str(tmp_path / "a.json"), clock=Clock(0))
    theirs = Ledger(str(tmp_path / "b.json"), clock=Clock(100))
    mine.record("edge-01", row("A1", FP["a"], "created"))
    mine.record("edge-02", row("A2", FP["b"], "created"))
    theirs.record("edge-02", row("A2", FP["c"], "rotated"))  # later, in another slice
    theirs.record("edge-03", row("A3", FP["d"], "created"))
    assert mine.merge(theirs) == 2
    assert sorted(mine.hosts()) == ["edge-01", "edge-02", "edge-03"]
    entry = mine.lookup("edge-02")
    assert [e["action"] for e in entry["history"]] == ["created", "rotated"]
    assert entry["fingerprint_sha256"] == FP["c"]  # the identity seen last
    assert entry["first_seen"] == "2026-01-01T00:00:02Z"
    assert mine.lookup("edge-03") == theirs.lookup("edge-03")
    # Merging again (or the other way round) adds nothing and loses nothing.
    assert mine.merge(theirs.path) == 0
    assert theirs.merge(mine) == 2
    assert theirs.hosts() == mine.hosts()


def test_merge_of_a_document_and_of_a_foreign_file(led, tmp_path):
    other = ledger_mod.empty_ledger()
    other["hosts"]["edge-09"] = {"agent_id": "Z9", "fingerprint_sha256": FP["h"], "first_seen": "t",
                                 "last_seen": "t", "history": [{"time": "t", "action": "created",
                                                                "agent_id": "Z9", "fingerprint_sha256": FP["h"]}]}
    assert led.merge(other) == 1
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"hosts": []}')
    with pytest.raises(LedgerError, match="not a fleet-mtls identity ledger"):
        led.merge(str(foreign))
    assert sorted(led.hosts()) == ["edge-09"]


# ---- files that are not a ledger


@pytest.mark.parametrize("content, why", [
    ("{not json", "is not valid JSON"),
    ('{"report": "provision-report", "hosts": []}', "is not a fleet-mtls identity ledger"),
    ('["a", "list"]', "is not a fleet-mtls identity ledger"),
    ('{"format": "fleet-mtls identity ledger", "version": 7, "hosts": {}}', "has ledger version 7"),
    ('{"format": "fleet-mtls identity ledger", "version": 1, "hosts": []}', "is damaged"),
    ('{"format": "fleet-mtls identity ledger", "version": 1, "hosts": {"h": {"history": 3}}}', "is damaged"),
    (b"\xff\xfe\x00garbage", "cannot be read"),
])
def test_a_file_that_is_not_a_ledger_is_refused_and_left_alone(path, content, why):
    os.makedirs(os.path.dirname(path))
    data = content if isinstance(content, bytes) else content.encode()
    with open(path, "wb") as handle:
        handle.write(data)
    led = Ledger(path, clock=Clock())
    for call in (lambda: led.record("edge-01", row("A1", FP["a"], "created")), lambda: led.lookup("edge-01"),
                 lambda: led.orphans(["edge-01"]), lambda: led.duplicate_ids({"edge-01": "A1"})):
        with pytest.raises(LedgerError) as caught:
            call()
        message = str(caught.value)
        assert path in message and why in message and "refusing to use or overwrite it" in message
        assert "mtls_ledger_path" in message
    with open(path, "rb") as handle:
        assert handle.read() == data


def test_an_empty_file_is_an_empty_ledger(path):
    os.makedirs(os.path.dirname(path))
    open(path, "w").close()
    led = Ledger(path, clock=Clock())
    assert led.lookup("edge-01") is None
    led.record("edge-01", row("A1", FP["a"], "created"))
    assert json.loads(open(path).read())["format"] == "fleet-mtls identity ledger"


def test_a_lock_held_too_long_is_a_clear_failure(led):
    led.record("edge-01", row("A1", FP["a"], "created"))
    fd = os.open(led.path + ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another open file description: it conflicts like another process
    try:
        led.lock_timeout = 0.2
        with pytest.raises(LedgerError, match="locked by another run"):
            led.record("edge-01", row("A1", FP["b"], "rotated"))
        assert led.lookup("edge-01")["fingerprint_sha256"] == FP["a"]  # readers take no lock
    finally:
        os.close(fd)


# ---- another ID named by a device


@pytest.mark.parametrize("action, verify", [("unchanged", "refused"), ("unchanged", "skipped"),
                                            ("repaired", ""), ("unchanged", "not run")])
def test_another_id_nothing_proves_is_not_recorded_and_takes_from_nobody(led, action, verify):
    """Whoever writes a device's ~/.mtls can name any ID there: the ledger keeps the ID it holds
    (and the other host keeps its own) unless the run assigned the new one or the cloud accepted it."""
    led.record("edge-01", row("A1", FP["a"], "created"))
    led.record("edge-02", row("B2", FP["b"], "created"))
    warnings = []
    claimed = dict(row("B2", FP["c"], action), verify=verify)
    assert led.record_many({"edge-01": claimed}, warnings) == {}
    assert led.lookup("edge-01")["agent_id"] == "A1" and led.lookup("edge-02")["agent_id"] == "B2"
    assert warnings == ["host edge-01: its device names agent ID B2, but the ledger holds A1 and nothing proves the "
                        "change (the run assigned no ID and the cloud did not accept the device's certificate: "
                        "verify %s): the ledger keeps A1" % (verify or "not run")], warnings


@pytest.mark.parametrize("action, verify", [("unchanged", "ok"), ("rotated", "skipped"), ("created", ""),
                                            ("restored", "refused")])
def test_another_id_the_run_assigned_or_the_cloud_accepted_is_recorded(led, action, verify):
    led.record("edge-01", row("A1", FP["a"], "created"))
    led.record("edge-02", row("B2", FP["b"], "created"))
    warnings = []
    led.record_many({"edge-01": dict(row("B2", FP["c"], action), verify=verify)}, warnings)
    assert led.lookup("edge-01")["agent_id"] == "B2" and led.lookup("edge-02")["agent_id"] == ""
    assert [w for w in warnings if "moved from host edge-02 to host edge-01" in w], warnings


def test_a_first_record_or_the_same_id_needs_no_proof(led):
    assert ledger_mod.unproven_change(None, row("A1", FP["a"])) is None
    led.record("edge-01", row("A1", FP["a"], "unchanged"))
    assert ledger_mod.unproven_change(led.lookup("edge-01"), row("A1", FP["b"], "repaired")) is None
