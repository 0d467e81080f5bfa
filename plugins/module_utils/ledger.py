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

``agent_id`` is what the host holds now ("" once it was decommissioned or wiped), ``renew_after``
the date its certificate becomes due (the report's, with the host's jitter; absent in entries
written before it was kept); ``history``
has one event per change of ID or certificate (a new ID that replaced one the registry forgot
carries ``"replaces": <old ID>``, after a ``forgotten by the registry`` event of the old one;
an ID recorded for a host while another holds it, a renamed host most often, moves: ``moved``
with ``"to": <host>`` on the other one).
Nothing is ever removed: a host's entry and its events stay, so an ID that no host holds any
more is still known (``orphans``).

Several forks and several ansible-playbook runs write it. Every change is a read-modify-write
under an exclusive ``flock`` on ``<path>.lock`` (never removed: a process waiting on a removed
lock file would hold a lock nobody else sees), written to a temporary file in the same
directory, fsynced and renamed over the ledger. Readers take no lock: a rename replaces the
whole file at once, so a reader sees one complete version or the other.

Each host's own record, right after its module run (``append_status``), is one line appended
to ``<path>.pending`` under the same lock and fsynced: its cost does not grow with the fleet
(a read-modify-write of a 10,000-host ledger costs 50-110 ms, and the lock serializes every
host's: bench/ledger_cost.py). The file starts with ``{"pending": <random id>}``; each line is
``{"time", "host", "row"}``. Every reader applies the pending lines, in order, to what it read
(the pending file first, then the ledger: a fold in between is seen in the ledger); every
change under the lock (the report's once-per-batch write, ``fold``) writes them into the ledger,
which keeps ``"folded": {<pending id>: <lines>}`` for its last ``FOLDED_KEPT`` pending files, and
then removes the pending file - a run stopped in between applies none of them twice.

A file at the path that is not a ledger (not JSON, another document, a newer version) is never
overwritten: every call fails with ``LedgerError`` saying so. The ledger's directory is opened
once (``statedir``) and the ledger, its lock and its temporary files only through it: a
symlink at any of them is refused, never followed.

Controller-side, standard library only.
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import json
import os
import secrets

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.certinfo import parse_time
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.statedir import StateDir, StateDirError

FORMAT = "fleet-mtls identity ledger"
VERSION = 1
LOCK_TIMEOUT = 60  # seconds; a run that holds the lock longer is stuck
# last_seen moves on at most once a day: a re-run of an unchanged fleet writes nothing.
LAST_SEEN_RESOLUTION = 86400
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Actions after which the host holds no identity any more ("moved": another host recorded it).
# "decommissioned" also retires the
# ID (the registry deleted it), and so does "forgotten by the registry" (a restore found the
# registry no longer knows it and enrolled a new ID that replaces it); "removed locally" leaves
# it registered, hence orphaned.
FORGOTTEN = "forgotten by the registry"
MOVED = "moved"  # another host (a renamed one, most often) holds the ID now
RELEASING_ACTIONS = ("decommissioned", "removed locally", FORGOTTEN, MOVED)
RETIRING_ACTIONS = ("decommissioned", FORGOTTEN)
# Report rows that say nothing about the host's identity: never recorded.
UNRECORDED_ACTIONS = ("not run", "unreachable", "failed", "skipped")
# Rows where the run put the ID on the device and the registry accepted its certificate (a
# rotation under another ID happens only when agent_id names it: identity/plan.py).
ASSIGNING_ACTIONS = ("created", "restored", "rotated")


class LedgerError(Exception):
    """The ledger cannot be read or written; the message says which file and what to do."""


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime(TIME_FORMAT)


def _seconds_between(earlier, later):
    try:  # parse_time, not strptime: its first call compiles the locale's patterns in every worker
        return (parse_time(later) - parse_time(earlier)).total_seconds()
    except TypeError:  # one of them unreadable (None)
        return float("inf")


MAX_LEDGER = 256 * 1024 * 1024  # ~300 bytes per host and event: far beyond any fleet
PENDING_SUFFIX = ".pending"
FOLDED_KEPT = 16  # a reader between its two reads would have to miss this many folds


def _state_dir(path, create):
    """(the open directory of ``path``, or None when it is missing, the file's name)."""
    directory, name = os.path.split(os.path.abspath(path))
    return StateDir.open(directory, create=create, resolve=True), name


@contextlib.contextmanager
def locked(path, timeout=LOCK_TIMEOUT):
    """Hold an exclusive flock on ``<path>.lock`` (created 0644 when missing, never through a
    symlink)."""
    try:
        state, name = _state_dir(path, create=True)
    except OSError as exc:
        raise LedgerError("cannot open the directory of %s: %s" % (path, exc.strerror or exc)) from None
    with state:
        try:
            with state.locked(name + ".lock", timeout, what=path):
                yield state
        except StateDirError as exc:
            raise LedgerError(str(exc)) from None


def empty_ledger():
    return {"format": FORMAT, "version": VERSION, "updated_at": "", "hosts": {}}


def _refuse(path, why):
    return LedgerError("%s %s: refusing to use or overwrite it (move it away, or set "
                       "mtls_ledger_path to another file)" % (path, why))


def render(data):
    """The ledger's text: one line per host (diffable), each encoded by json's C encoder (an
    indented dump is pure Python, ~15 times slower on a 10,000-host ledger)."""
    head = {key: data[key] for key in ("format", "version", "updated_at")}
    if data.get("folded"):
        head["folded"] = data["folded"]
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
    folded = data.get("folded", {})
    if not isinstance(folded, dict) or not all(isinstance(n, int) for n in folded.values()):
        raise _refuse(path, 'is damaged: "folded" is not an object of line counts')
    for host, entry in hosts.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("history"), list) \
                or not all(isinstance(event, dict) for event in entry["history"]):
            raise _refuse(path, "is damaged: the entry of host %r is not a ledger entry" % host)
    return data


def _read_base(path, state):
    try:
        data = state.read(os.path.basename(path), MAX_LEDGER)
        text = "" if data is None else data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _refuse(path, "cannot be read (%s)" % (getattr(exc, "strerror", None) or exc))
    return parse(text, path) if data is not None else empty_ledger()


def parse_pending(text):
    """(the pending file's id or None, [(time, host, row)]) from its text. A line that is not a
    record (a write cut short by a crash: it has no newline, or the next append began after it;
    no host name) is skipped: one bad line never stops every reader of the ledger."""
    pending_id, records = None, []
    for number, line in enumerate(text.split("\n")):
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if not isinstance(item, dict):
            continue
        if number == 0 and isinstance(item.get("pending"), str):
            pending_id = item["pending"]
        elif isinstance(item.get("host"), str) and item["host"].strip() and isinstance(item.get("row"), dict) \
                and isinstance(item.get("time"), str):
            records.append((item["time"], item["host"], item["row"]))
    return pending_id, records


def _read_pending(path, state):
    name = os.path.basename(path) + PENDING_SUFFIX
    try:
        data = state.read(name, MAX_LEDGER)
        return parse_pending("" if data is None else data.decode("utf-8", "replace"))
    except OSError as exc:
        raise LedgerError("cannot read %s: %s" % (state.join(name), exc.strerror or exc)) from None


def _not_folded(data, pending):
    """The pending records the ledger ``data`` does not hold yet."""
    pending_id, records = pending
    return records[data.get("folded", {}).get(pending_id, 0) if pending_id else 0:]


def load(path, state=None, resolution=None):
    """The ledger at ``path`` (missing file: an empty ledger) with its pending records applied,
    read through its directory (``state``, when the caller holds it open)."""
    if state is None:
        try:
            opened, _name = _state_dir(path, create=False)
        except OSError as exc:
            raise _refuse(path, "cannot be read (%s)" % (getattr(exc, "strerror", None) or exc))
        if opened is None:
            return empty_ledger()
        with opened:
            return load(path, opened, resolution)
    pending = _read_pending(path, state)  # first: a fold after this read is in the ledger read next
    data = _read_base(path, state)
    _apply_rows(data, _not_folded(data, pending), LAST_SEEN_RESOLUTION if resolution is None else resolution,
                None)
    return data


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
        entry.pop("renew_after", None)
        return entry
    if not agent_id or not fingerprint:
        return None
    if entry is None:
        entry = {"agent_id": "", "fingerprint_sha256": "", "first_seen": now, "last_seen": now, "history": []}
    else:
        entry = copy.deepcopy(entry)
    if (entry["agent_id"], entry["fingerprint_sha256"]) != (agent_id, fingerprint):
        replaces = _text(row.get("replaces"))
        event = _event(now, action, agent_id, fingerprint)
        if replaces and replaces != agent_id:
            held = entry["fingerprint_sha256"] if entry["agent_id"] == replaces else ""
            entry["history"].append(_event(now, FORGOTTEN, replaces, held))
            event["replaces"] = replaces
        entry["history"].append(event)
        entry.update(agent_id=agent_id, fingerprint_sha256=fingerprint, last_seen=now)
    elif _seconds_between(entry["last_seen"], now) >= resolution:
        entry["last_seen"] = now
    renew_after = _text(row.get("renew_after"))
    if renew_after:
        entry["renew_after"] = renew_after
    return entry


def unproven_change(entry, row):
    """Why the ledger keeps the ID it holds for a host whose row names another one, or None.
    Whoever writes the device's ~/.mtls can name any ID there: another ID is recorded only when
    the run assigned it (``ASSIGNING_ACTIONS``) or the cloud accepted the device's certificate
    (the agent-true check, ``verify`` ok); a run that did neither proves nothing."""
    held = _text((entry or {}).get("agent_id"))
    agent_id = _text(row.get("agent_id"))
    if not held or agent_id in ("", held):
        return None
    if _text(row.get("action")) in ASSIGNING_ACTIONS or _text(row.get("verify")) == "ok":
        return None
    return ("its device names agent ID %s, but the ledger holds %s and nothing proves the change (the run "
            "assigned no ID and the cloud did not accept the device's certificate: verify %s): the ledger "
            "keeps %s" % (agent_id, held, _text(row.get("verify")) or "not run", held))


def expects_new_key(entry, now):
    """Whether a run at ``now`` will most likely make ``entry``'s host a new key: the ledger holds
    no identity for it, or its renewal date has come. A guess for the controller (the device
    decides); an entry without a renewal date is expected to need none."""
    if entry is None or not _text(entry.get("agent_id")):
        return True
    renew_after = _text(entry.get("renew_after"))
    return bool(renew_after) and renew_after <= now


def _holders(hosts):
    """{agent_id: {hosts that hold it now}}: who holds an ID, without a walk over the fleet per
    record."""
    held = {}
    for host, entry in hosts.items():
        if entry.get("agent_id"):
            held.setdefault(entry["agent_id"], set()).add(host)
    return held


def _take_from_others(hosts, held, host, agent_id, now):
    """Release ``agent_id`` from every other host that holds it now (a ``moved`` event naming
    ``host``); return their names. ``held`` (``_holders``) is kept up to date."""
    moved = []
    for other in sorted(held.get(agent_id, ()) if agent_id else ()):
        entry = hosts[other]
        if other != host and entry.get("agent_id") == agent_id:
            event = _event(now, MOVED, agent_id, entry.get("fingerprint_sha256", ""))
            event["to"] = host
            entry["history"].append(event)
            entry.update(agent_id="", fingerprint_sha256="", last_seen=now)
            held[agent_id].discard(other)
            moved.append(other)
    return moved


def _apply_rows(data, records, resolution, warnings):
    """Apply ``records`` ([(time, host, row)], in order) to the ledger document ``data``.
    Returns ({host: new event}, changed). An ID another host held moves to the host now holding
    it (a ``moved`` event on the other host), with a message appended to ``warnings``."""
    events, changed, hosts = {}, False, data["hosts"]
    held = _holders(hosts) if records else {}
    for now, host, row in records:
        host = "" if host is None else str(host)  # the inventory's name, as it is
        if not host.strip():
            raise LedgerError("a ledger record needs a host name")
        before = hosts.get(host)
        unproven = unproven_change(before, row)
        if unproven:  # the entry stays as it is
            if warnings is not None:
                warnings.append("host %s: %s" % (host, unproven))
            continue
        after = apply_row(before, row, now, resolution)
        if after is None:
            continue
        if after != before:
            hosts[host], changed = after, True
            if before is not None and before.get("agent_id"):
                held.get(before["agent_id"], set()).discard(host)
            if after["agent_id"]:
                held.setdefault(after["agent_id"], set()).add(host)
            if before is None or len(after["history"]) > len(before["history"]):
                events[host] = after["history"][-1]
        for other in _take_from_others(hosts, held, host, after["agent_id"], now):
            changed = True
            if warnings is not None:
                warnings.append(
                    "agent ID %s moved from host %s to host %s in the identity ledger: %s was "
                    "renamed in the inventory, or both hosts hold one identity (a cloned disk): "
                    "check %s" % (after["agent_id"], other, host, other, other))
    return events, changed


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
    merged = {"agent_id": latest.get("agent_id", ""), "fingerprint_sha256": latest.get("fingerprint_sha256", ""),
              "first_seen": min(firsts) if firsts else "",
              "last_seen": max(_text(mine.get("last_seen")), _text(theirs.get("last_seen"))),
              "history": copy.deepcopy(events)}
    if latest.get("renew_after"):
        merged["renew_after"] = latest["renew_after"]
    return merged


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
        return load(self.path, resolution=self.last_seen_resolution)["hosts"]

    def snapshot(self):
        """This ledger as it is now, read once: its queries (hosts, lookup, claims,
        duplicate_ids, orphans) all answer from that one reading (a 10,000-host ledger takes
        ~50 ms to read)."""
        view = copy.copy(self)
        hosts = self.hosts()
        view.hosts = lambda: hosts
        return view

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

    def record_many(self, rows, warnings=None):
        """``record`` for {host: row} in one locked write; returns {host: new event}. An ID
        another host held moves to the host now holding it (a ``moved`` event on the other
        host, which no longer holds it), with a message appended to ``warnings``."""
        def change(data, now):
            return _apply_rows(data, [(now, host, row) for host, row in rows.items()],
                               self.last_seen_resolution, warnings)

        return self._update(change, warnings)

    def append_status(self, host, row):
        """``record_status`` at a cost that does not grow with the ledger: the row is appended
        to the pending file (one line, under the lock, fsynced), which every reader applies and
        the next locked change writes into the ledger. True when a line was written."""
        if not row.get("agent_id") or row.get("action") in UNRECORDED_ACTIONS:
            return False
        host = "" if host is None else str(host)
        if not host.strip():
            raise LedgerError("a ledger record needs a host name")
        line = json.dumps({"time": self.clock(), "host": host, "row": row}, sort_keys=True) + "\n"
        name = os.path.basename(self.path) + PENDING_SUFFIX
        with locked(self.path, self.lock_timeout) as state:
            try:
                state.append_line(name, line, header=json.dumps({"pending": secrets.token_hex(8)}) + "\n")
            except OSError as exc:
                raise LedgerError("cannot write %s: %s" % (state.join(name), exc.strerror or exc)) from None
        return True

    def fold(self, warnings=None):
        """Write the pending records into the ledger (nothing to do: no write). Returns how many
        it applied."""
        try:
            opened, _name = _state_dir(self.path, create=False)
        except OSError as exc:
            raise LedgerError("cannot open the directory of %s: %s" % (self.path, exc.strerror or exc)) from None
        if opened is None:
            return 0
        with opened:
            pending_id, records = _read_pending(self.path, opened)
        if pending_id is None and not records:
            return 0
        return self._update(lambda data, now: (None, False), warnings, count=True)

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

    def _update(self, change, warnings=None, count=False):
        """Read the ledger and its pending records under the lock, apply ``change(data, now) ->
        (result, changed)``, write the ledger when it or the pending file changed it, then
        remove the pending file; return the result (``count``: the pending records applied)."""
        with locked(self.path, self.lock_timeout) as state:
            pending = _read_pending(self.path, state)
            data = _read_base(self.path, state)
            records = _not_folded(data, pending)
            folded = _apply_rows(data, records, self.last_seen_resolution, warnings)[1]
            now = self.clock()
            result, changed = change(data, now)
            name = os.path.basename(self.path)
            if changed or folded:
                data["updated_at"] = now
                if pending[0] and pending[1]:  # a stop before the removal below applies none twice
                    kept = [(k, v) for k, v in data.get("folded", {}).items() if k != pending[0]]
                    data["folded"] = dict(kept[-(FOLDED_KEPT - 1):] + [(pending[0], len(pending[1]))])
                try:
                    state.write_atomic(name, render(data))
                except OSError as exc:
                    raise LedgerError("cannot write the ledger %s: %s" % (self.path, exc.strerror or exc))
            if state.unlink(name + PENDING_SUFFIX):  # its records are in the ledger, or changed nothing
                state.fsync()
            return len(records) if count else result
