# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side identity ledger: which agent ID and certificate each host holds, and held.

One JSON file (the role variable ``mtls_ledger_path``)::

    {"format": "fleet-mtls identity ledger", "version": 1, "updated_at": "2026-12-01T11:00:00Z",
     "hosts": {"edge-01": {"agent_id": "07048933", "fingerprint_sha256": "9c5f...",
                           "first_seen": "...", "last_seen": "...",
                           "history": [{"time": "...", "action": "created",
                                        "agent_id": "07048933", "fingerprint_sha256": "9c5f..."}]}}}

``agent_id`` is what the host holds now ("" once it was decommissioned or wiped); ``history``
has one event per change of ID or certificate. Nothing is ever removed: a host's entry and its
events stay, so an ID that no host holds any more is still known (``orphans``).

Several forks and several ansible-playbook runs write it. Every change is a read-modify-write
under an exclusive ``flock`` on ``<path>.lock`` (never removed: a process waiting on a removed
lock file would hold a lock nobody else sees), written to a temporary file in the same
directory, fsynced and renamed over the ledger. Readers take no lock: a rename replaces the
whole file at once, so a reader sees one complete version or the other.

A file at the path that is not a ledger (not JSON, another document, a newer version) is never
overwritten: every call fails with ``LedgerError`` saying so.

Controller-side, standard library only.
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import fcntl
import json
import os
import tempfile
import time

FORMAT = "fleet-mtls identity ledger"
VERSION = 1
LOCK_TIMEOUT = 60  # seconds; a run that holds the lock longer is stuck
# last_seen moves on at most once a day: a re-run of an unchanged fleet writes nothing.
LAST_SEEN_RESOLUTION = 86400
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Actions after which the host holds no identity any more. "decommissioned" also retires the
# ID (the registry deleted it); "removed locally" leaves it registered, hence orphaned.
RELEASING_ACTIONS = ("decommissioned", "removed locally")
RETIRING_ACTIONS = ("decommissioned",)
# Report rows that say nothing about the host's identity: never recorded.
UNRECORDED_ACTIONS = ("not run", "unreachable", "failed", "skipped")


class LedgerError(Exception):
    """The ledger cannot be read or written; the message says which file and what to do."""


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime(TIME_FORMAT)


def _seconds_between(earlier, later):
    try:
        return (datetime.datetime.strptime(later, TIME_FORMAT)
                - datetime.datetime.strptime(earlier, TIME_FORMAT)).total_seconds()
    except (TypeError, ValueError):
        return float("inf")


@contextlib.contextmanager
def locked(path, timeout=LOCK_TIMEOUT):
    """Hold an exclusive flock on ``<path>.lock`` (created 0644 when missing)."""
    lock_path = path + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise LedgerError("cannot open the lock file %s: %s" % (lock_path, exc.strerror or exc))
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LedgerError("%s is locked by another run for more than %d s (its lock: %s)"
                                      % (path, timeout, lock_path))
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_atomic(path, text, mode=0o644):
    """Replace ``path`` with ``text``: temporary file in the same directory, fsync, rename,
    fsync of the directory. A reader sees the old or the new file, never a part."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def empty_ledger():
    return {"format": FORMAT, "version": VERSION, "updated_at": "", "hosts": {}}


def _refuse(path, why):
    return LedgerError("%s %s: refusing to use or overwrite it (move it away, or set "
                       "mtls_ledger_path to another file)" % (path, why))


def render(data):
    """The ledger's text: one line per host (diffable), each encoded by json's C encoder (an
    indented dump is pure Python, ~15 times slower on a 10,000-host ledger)."""
    head = {key: data[key] for key in ("format", "version", "updated_at")}
    lines = ["%s: %s" % (json.dumps(host), json.dumps(data["hosts"][host], sort_keys=True, separators=(",", ":")))
             for host in sorted(data["hosts"])]
    return json.dumps(head)[:-1] + ', "hosts": {\n' + ",\n".join(lines) + "\n}}\n"


def parse(text, path="the ledger"):
    """The ledger document in ``text`` (empty text: an empty ledger), checked for shape."""
    if not text.strip():
        return empty_ledger()
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _refuse(path, "is not valid JSON (%s)" % exc)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _refuse(path, 'is not a fleet-mtls identity ledger (no "format": "%s")' % FORMAT)
    if not isinstance(data.get("version"), int) or not 1 <= data["version"] <= VERSION:
        raise _refuse(path, "has ledger version %r; this fleet-mtls reads version %d"
                      % (data.get("version"), VERSION))
    hosts = data.get("hosts")
    if not isinstance(hosts, dict):
        raise _refuse(path, 'is damaged: "hosts" is not an object')
    for host, entry in hosts.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("history"), list) \
                or not all(isinstance(event, dict) for event in entry["history"]):
            raise _refuse(path, "is damaged: the entry of host %r is not a ledger entry" % host)
    return data


def load(path):
    """The ledger at ``path`` (missing file: an empty ledger)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return empty_ledger()
    except (OSError, UnicodeDecodeError) as exc:
        raise _refuse(path, "cannot be read (%s)" % (getattr(exc, "strerror", None) or exc))
    return parse(text, path)


def _text(value):
    return "" if value is None else str(value).strip()


def _event(time_, action, agent_id, fingerprint):
    return {"time": time_, "action": action, "agent_id": agent_id, "fingerprint_sha256": fingerprint}


def apply_row(entry, row, now, resolution=LAST_SEEN_RESOLUTION):
    """The host's entry after ``row`` (a status row of the report), or None when the row says
    nothing about the identity (unreachable, failed before the identity, not run). The same
    identity again moves last_seen on only when it is ``resolution`` seconds old."""
    agent_id = _text(row.get("agent_id"))
    fingerprint = _text(row.get("fingerprint_sha256")).lower()
    action = _text(row.get("action")) or "seen"
    if action in RELEASING_ACTIONS:
        if entry is None or not entry["agent_id"]:
            return None
        entry = copy.deepcopy(entry)
        entry["history"].append(_event(now, action, entry["agent_id"], entry["fingerprint_sha256"]))
        entry.update(agent_id="", fingerprint_sha256="", last_seen=now)
        return entry
    if not agent_id or not fingerprint:
        return None
    if entry is None:
        entry = {"agent_id": "", "fingerprint_sha256": "", "first_seen": now, "last_seen": now, "history": []}
    else:
        entry = copy.deepcopy(entry)
    if (entry["agent_id"], entry["fingerprint_sha256"]) != (agent_id, fingerprint):
        entry["history"].append(_event(now, action, agent_id, fingerprint))
        entry.update(agent_id=agent_id, fingerprint_sha256=fingerprint, last_seen=now)
    elif _seconds_between(entry["last_seen"], now) >= resolution:
        entry["last_seen"] = now
    return entry


def _merge_entries(mine, theirs):
    """One host's entry from two ledgers: every event of both (in time order, each once), the
    current identity of the one seen last."""
    events, seen = [], set()
    for event in sorted(mine["history"] + theirs["history"], key=lambda e: _text(e.get("time"))):
        key = tuple(_text(event.get(k)) for k in ("time", "action", "agent_id", "fingerprint_sha256"))
        if key not in seen:
            seen.add(key)
            events.append(event)
    latest = theirs if _text(theirs.get("last_seen")) > _text(mine.get("last_seen")) else mine
    firsts = [t for t in (_text(mine.get("first_seen")), _text(theirs.get("first_seen"))) if t]
    return {"agent_id": latest.get("agent_id", ""), "fingerprint_sha256": latest.get("fingerprint_sha256", ""),
            "first_seen": min(firsts) if firsts else "",
            "last_seen": max(_text(mine.get("last_seen")), _text(theirs.get("last_seen"))),
            "history": copy.deepcopy(events)}


def _id_timeline(hosts):
    """{agent_id: {host: (since, last seen, held now)}} over every host's history."""
    spans = {}
    for host, entry in hosts.items():
        previous = ""
        for event in entry["history"]:
            agent_id, when = _text(event.get("agent_id")), _text(event.get("time"))
            if previous and previous != agent_id:
                spans[previous][host][1] = when  # replaced at this event
            if agent_id:
                spans.setdefault(agent_id, {}).setdefault(host, [when, when])[1] = when
            previous = "" if event.get("action") in RELEASING_ACTIONS else agent_id
        current = _text(entry.get("agent_id"))
        if current and host in spans.get(current, {}):
            spans[current][host][1] = _text(entry.get("last_seen")) or spans[current][host][1]
    return {agent_id: {host: (span[0], span[1], agent_id == _text(hosts[host].get("agent_id")))
                       for host, span in per_host.items()}
            for agent_id, per_host in spans.items()}


def _retired_ids(hosts):
    """IDs whose last event, over all hosts, decommissioned them (the registry deleted them)."""
    last = {}
    for entry in hosts.values():
        for event in entry["history"]:
            agent_id, when = _text(event.get("agent_id")), _text(event.get("time"))
            if agent_id and when >= last.get(agent_id, ("", ""))[0]:
                last[agent_id] = (when, _text(event.get("action")))
    return {agent_id for agent_id, (_when, action) in last.items() if action in RETIRING_ACTIONS}


class Ledger:
    """The identity ledger at ``path``. Every method reads the file as it is now."""

    def __init__(self, path, clock=utc_now, lock_timeout=LOCK_TIMEOUT, last_seen_resolution=LAST_SEEN_RESOLUTION):
        self.path = path
        self.clock = clock
        self.lock_timeout = lock_timeout
        self.last_seen_resolution = last_seen_resolution

    # ---- reading
    def hosts(self):
        return load(self.path)["hosts"]

    def lookup(self, host):
        """The host's entry (a copy), or None when the ledger never saw it."""
        entry = self.hosts().get(host)
        return copy.deepcopy(entry) if entry is not None else None

    def claims(self, agent_id):
        """Which hosts hold or held ``agent_id``: [{host, current, since, last_seen}], by host."""
        per_host = _id_timeline(self.hosts()).get(_text(agent_id), {})
        return [{"host": host, "current": held, "since": first, "last_seen": last}
                for host, (first, last, held) in sorted(per_host.items())]

    def duplicate_ids(self, planned, current_hosts=None):
        """IDs that two hosts would use: {agent_id: [hosts]}. ``planned`` maps each host of the
        run to its pre-assigned ID ("" or None: the ID the ledger has for it). Hosts outside
        ``planned`` use the ID the ledger says they hold (only those in ``current_hosts``, when
        given: a host gone from the inventory does not block its ID)."""
        hosts = self.hosts()
        use = {}
        for host, agent_id in planned.items():
            use[host] = _text(agent_id) or _text(hosts.get(host, {}).get("agent_id"))
        current = None if current_hosts is None else set(current_hosts)
        for host, entry in hosts.items():
            if host not in planned and (current is None or host in current):
                use[host] = _text(entry.get("agent_id"))
        by_id = {}
        for host, agent_id in use.items():
            if agent_id:
                by_id.setdefault(agent_id, []).append(host)
        return {agent_id: sorted(users) for agent_id, users in sorted(by_id.items()) if len(users) > 1}

    def orphans(self, current_hosts):
        """IDs of the ledger that no host of ``current_hosts`` holds any more and that were not
        decommissioned: [{agent_id, hosts (that held it), last_seen}], by ID."""
        hosts = self.hosts()
        current = set(current_hosts)
        held = {_text(hosts[h].get("agent_id")) for h in current if h in hosts}
        retired = _retired_ids(hosts)
        result = []
        for agent_id, per_host in sorted(_id_timeline(hosts).items()):
            if agent_id in held or agent_id in retired:
                continue
            result.append({"agent_id": agent_id, "hosts": sorted(per_host),
                           "last_seen": max(last for _since, last, _held in per_host.values())})
        return result

    # ---- writing
    def record(self, host, row):
        """Record what ``row`` (a status row) says about the host's identity. Returns the new
        history event, or None when nothing changed (only last_seen may have moved on)."""
        return self.record_many({host: row}).get(host)

    def record_status(self, host, row):
        """``record`` for a report row, ignoring rows without an identity (not run, unreachable,
        failed before the identity, ...); None when nothing was recorded."""
        if not row.get("agent_id") or row.get("action") in UNRECORDED_ACTIONS:
            return None
        return self.record(host, row)

    def record_many(self, rows):
        """``record`` for {host: row} in one locked write; returns {host: new event}."""
        def change(data, now):
            events, changed = {}, False
            for host, row in rows.items():
                host = _text(host)
                if not host:
                    raise LedgerError("a ledger record needs a host name")
                before = data["hosts"].get(host)
                after = apply_row(before, row, now, self.last_seen_resolution)
                if after is None or after == before:
                    continue
                data["hosts"][host], changed = after, True
                if before is None or len(after["history"]) > len(before["history"]):
                    events[host] = after["history"][-1]
            return events, changed

        return self._update(change)

    def merge(self, other):
        """Add every host and event of ``other`` (a Ledger, a path or a ledger document), e.g.
        the ledger of another job slice. Returns the number of events added."""
        if isinstance(other, Ledger):
            theirs = load(other.path)
        elif isinstance(other, str):
            theirs = load(other)
        else:
            theirs = parse(json.dumps(other), "the ledger to merge")

        def change(data, now):
            before = copy.deepcopy(data["hosts"])
            for host, entry in theirs["hosts"].items():
                mine = data["hosts"].get(host)
                data["hosts"][host] = copy.deepcopy(entry) if mine is None else _merge_entries(mine, entry)
            added = sum(len(e["history"]) for e in data["hosts"].values()) - \
                sum(len(e["history"]) for e in before.values())
            return added, data["hosts"] != before

        return self._update(change)

    def _update(self, change):
        """Read the ledger under the lock, apply ``change(data, now) -> (result, changed)``,
        write the ledger when it changed, return the result."""
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        except OSError as exc:
            raise LedgerError("cannot create the ledger directory %s: %s" % (directory, exc.strerror or exc))
        with locked(self.path, self.lock_timeout):
            data = load(self.path)
            now = self.clock()
            result, changed = change(data, now)
            if changed:
                data["updated_at"] = now
                try:
                    write_atomic(self.path, render(data))
                except OSError as exc:
                    raise LedgerError("cannot write the ledger %s: %s" % (self.path, exc.strerror or exc))
            return result
