"""The background keygen's record (identity/prekey.py) is the owner's file: whatever it says is
parsed strictly, and a record that is not one is None (the run then removes it as foreign)."""
from __future__ import annotations

import json
import os

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import prekey

GOOD = {"version": 1, "pid": 4242, "start": 123456, "boot": "b0", "uid": 1000, "key_size": 4096,
        "since": "2026-12-06T12:00:00Z", "made_directory": True}


def doc(**changes):
    data = dict(GOOD, **changes)
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


def test_a_record_reads_back_what_was_written():
    record = prekey.Record.parse(doc())
    assert (record.pid, record.start, record.boot, record.uid, record.key_size, record.made_directory) == (
        4242, 123456, "b0", 1000, 4096, True)
    assert prekey.Record.parse(record.to_json().encode()).to_json() == record.to_json()


def test_a_pass_nobody_heard_leaves_its_warnings_in_the_record():
    record = prekey.Record.parse(doc(notes=["removed what a background key generation left"]))
    assert record.notes == ("removed what a background key generation left",)
    assert prekey.Record.parse(record.to_json().encode()).notes == record.notes
    assert prekey.Record.parse(doc(notes=...)).notes == ()  # an older record


def test_a_warning_goes_into_the_record_as_one_printable_line():
    assert prekey._as_note("removed /home/a\nb\x1b[0m") == "removed /home/a?b?[0m"  # pylint: disable=protected-access
    long = prekey._as_note("x" * 5000)  # pylint: disable=protected-access
    assert len(long) == prekey.MAX_NOTE and long.endswith("...")
    assert prekey.Record.parse(doc(notes=[long])).notes == (long,)


def test_an_older_record_without_made_directory_never_lets_a_directory_go():
    assert prekey.Record.parse(doc(made_directory=...)).made_directory is False


@pytest.mark.parametrize("changes", [
    {"pid": 0}, {"pid": 1}, {"pid": prekey.PID_MAX_LIMIT + 1}, {"pid": 2 ** 64}, {"pid": -5}, {"pid": True},
    {"pid": 42.0}, {"pid": "42"}, {"pid": None}, {"pid": ...}, {"start": -1}, {"uid": -1}, {"uid": "0"},
    {"key_size": False}, {"boot": 7}, {"since": None}, {"made_directory": "yes"}, {"made_directory": 1},
    {"notes": "removed"}, {"notes": [1]}, {"notes": None}, {"notes": {"a": "b"}},
    {"notes": ["line\nforged"]}, {"notes": ["\x1b[2Jcleared"]}, {"notes": ["x" * (prekey.MAX_NOTE + 1)]},
], ids=repr)
def test_a_value_out_of_its_kind_is_no_record(changes):
    assert prekey.Record.parse(doc(**changes)) is None


@pytest.mark.parametrize("data", [b"", b"\xff\xfe", b"[]", b"null", b'"pid"', b"{", b'{"pid": 4242}',
                                  b"1" * 5000, json.dumps([GOOD]).encode()], ids=repr)
def test_what_is_not_a_json_object_of_a_record_is_no_record(data):
    assert prekey.Record.parse(data) is None


def test_the_largest_pid_a_kernel_allows_is_a_record():
    assert prekey.Record.parse(doc(pid=prekey.PID_MAX_LIMIT)).pid == prekey.PID_MAX_LIMIT


def test_an_impossible_pid_gets_no_process_descriptor():
    assert prekey._pidfd(2 ** 40) is None  # pylint: disable=protected-access


def _record_started_at(ticks, boot="b1"):
    return prekey.Record(1234, ticks, boot, 1000, 2048, "2026-12-07T10:00:00Z")


def test_the_making_time_meets_the_boot_clock_and_the_wall_clock():
    """The process's start is in clock ticks since boot, its key's last write in wall time: a
    process started 100 s after boot, the boot clock now at 160 s and the wall clock at 5000 s,
    so it started at 4940 s; a key written at 4970 s took 30 s."""
    ticks = os.sysconf("SC_CLK_TCK")
    record = _record_started_at(100 * ticks)
    assert prekey.making_time(record, 4970.0, boot="b1", since_boot=160.0, now=5000.0) == pytest.approx(30.0)
    assert prekey.making_time(record, 4930.0, boot="b1", since_boot=160.0, now=5000.0) == 0.0  # clocks moved


def test_the_making_time_of_another_boot_is_unknown():
    record = _record_started_at(100)
    assert prekey.making_time(record, 4970.0, boot="b2", since_boot=160.0, now=5000.0) is None
    assert prekey.making_time(None, 4970.0, boot="b1", since_boot=160.0, now=5000.0) is None
