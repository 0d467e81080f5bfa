# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report's rows, totals and renderings: pure functions, no file access.

Rows keep their values as they came (a host name is the inventory's); every rendering for
people writes them through ``visible``: the table, the CSV (whose cells are also neutralised
against spreadsheet formulas) and the AWX artifact carry no raw control character, and the
JSON carries JSON's own escapes. So one host is one line whatever its name.

Rows: one per host of the play (``run_rows``): its ``mtls_identity_status``; ``unreachable``
for a host that left the play without one; ``not run`` for a host the play did not reach (a
later serial batch, or every batch after a canary stop). Every row has every column of
``COLUMNS`` (unknown values "" or null).

Merging: into the fleet report of earlier runs (``merge_into_fleet``: this run's row replaces a
host's row, a ``not run`` row only fills a host that has none), or several reports of sliced
jobs (``merge_reports``: the newest ``checked_at`` per host wins).

Batches: ``ends_the_play`` says whether the play ends after the current serial batch, so that
the table is printed once per run.

Controller-side (the mtls_report role's action plugin), standard library and ansible-core's
module_utils only.
"""
from __future__ import annotations

import csv
import datetime
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.certinfo import parse_time
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.visible import visible, visible_data


class ReportError(Exception):
    """The report cannot be built or read; the message says why."""


# The status row (DESIGN "Status row") in report order, with types; unknown values are ""/null.
COLUMNS = (
    ("host", str), ("agent_id", str), ("action", str), ("reason", str), ("phase", str), ("error", str),
    ("fingerprint_sha256", str), ("serial", str), ("key_size", int), ("not_before", str),
    ("not_after", str), ("days_left", int), ("renew_after", str), ("config", str),
    ("config_changed", bool), ("restarted", bool), ("blackout_ms", int), ("verify", str),
    ("verify_failure", str), ("verify_protocol", str), ("tls_version", str), ("checked_at", str),
    ("failed_task", str), ("replaces", str), ("cloud", str), ("agent_uptime_s", int), ("heartbeat_at", str),
    ("takeover", str), ("keygen", str), ("keygen_ms", int), ("keygen_wait_ms", int),
)
IDENTITY = ("agent_id", "fingerprint_sha256", "serial", "key_size", "not_before", "not_after", "renew_after")
TABLE = (
    ("HOST", "host"), ("AGENT ID", "agent_id"), ("ACTION", "action"), ("FINGERPRINT", "fingerprint_sha256"),
    ("NOT AFTER", "not_after"), ("RENEW AFTER", "renew_after"), ("DAYS", "days_left"), ("KEYGEN", "keygen"),
    ("CONFIG", "config"),
    ("RESTART", "restarted"), ("VERIFY", "verify"), ("CLOUD", "cloud"), ("ERROR", "error"),
)
OUTCOMES = ("ok", "changed", "failed", "unreachable", "not_run")
UNCHANGED_ACTIONS = ("", "unchanged", "valid", "due")
RELEASED_ACTIONS = ("decommissioned", "removed locally")
NOT_RUN = "not run"
_KEY_MATERIAL = re.compile(r"PRIVATE KEY|BEGIN [A-Z ]*KEY-----")
# OWASP's CSV injection list: a cell starting with one of these is a formula to a spreadsheet.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def utc(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _typed(kind, value):
    if value is None or value == "":
        return "" if kind is str else None
    if kind is str:
        return " ".join(str(value).split()) if not isinstance(value, (dict, list)) else json.dumps(value)
    if kind is bool:
        return boolean(value, strict=False)
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


# ---- rows


def typed_row(values, host=None):
    """Every column of a row, typed; extra keys are dropped (metadata only)."""
    row = {name: _typed(kind, values.get(name)) for name, kind in COLUMNS}
    row["host"] = host or row["host"]
    return row


def unreachable_row(host, now, previous=None):
    """A host that left the play without a status; its identity as last seen, when known."""
    row = typed_row({"action": "unreachable", "phase": "unreachable", "verify": NOT_RUN, "checked_at": utc(now),
                     "error": "unreachable: the host left the play before it had a status"}, host)
    if previous and previous.get("agent_id"):
        row.update({key: previous.get(key) for key in IDENTITY})
        row["reason"] = (previous["reason"] if previous.get("action") == "unreachable"  # an earlier batch's row
                         else "identity as last seen at %s" % (previous.get("checked_at") or "an earlier run"))
    return row


def run_rows(hosts, statuses, active, batch, now, previous, final):
    """This run's row for each host: its status, unreachable (left the play without one) or
    not run (in the play, no status: later batch, stopped before its batch, or no status set)."""
    rows = []
    for host in hosts:
        status = statuses.get(host)
        if isinstance(status, Mapping) and status:
            row = typed_row(status, host)
            row["checked_at"] = row["checked_at"] or utc(now)
        elif host not in active:
            row = unreachable_row(host, now, previous.get(host))
        else:
            why = ("the play set no mtls_identity_status for it" if host in batch
                   else "the play stopped before its serial batch" if final else "waiting for its serial batch")
            row = typed_row({"action": NOT_RUN, "verify": NOT_RUN, "reason": why}, host)
        rows.append(row)
    return rows


def outcome(row):
    """One of OUTCOMES: each host is counted once."""
    if row["action"] == "unreachable" or row["phase"] == "unreachable":
        return "unreachable"
    if row["action"] == "failed" or row["phase"] or row["error"]:
        return "failed"
    if row["action"] == NOT_RUN:
        return "not_run"
    if row["action"] not in UNCHANGED_ACTIONS or row["config_changed"] or row["restarted"]:
        return "changed"
    return "ok"


def refresh_days_left(row, now):
    not_after = parse_time(row["not_after"]) if row["not_after"] else None
    if not_after is not None:
        row["days_left"] = (not_after - now).days  # as of this report, also for kept rows
    return row


def due_for_rotation(row, now, days):
    if row["action"] in RELEASED_ACTIONS or outcome(row) == "not_run":
        return False
    when = parse_time(row["renew_after"] or row["not_after"]) if (row["renew_after"] or row["not_after"]) else None
    return when is not None and when <= now + datetime.timedelta(days=days)


def totals(rows, now, due_days):
    counts = dict.fromkeys(OUTCOMES, 0)
    for row in rows:
        counts[outcome(row)] += 1
    due = sum(1 for row in rows if due_for_rotation(row, now, due_days))
    return {"hosts": len(rows), **counts, "due_for_rotation": due, "due_days": due_days}


def summary(rows):
    """The report's first summary (kept for its readers)."""
    actions = {}
    for row in rows:
        actions[row["action"]] = actions.get(row["action"], 0) + 1
    return {"hosts": len(rows), "actions": actions,
            "verified": sum(1 for r in rows if r["verify"] == "ok"),
            "verify_failed": sum(1 for r in rows if r["verify"] == "failed"),
            "errors": sum(1 for r in rows if r["error"])}


def merge_into_fleet(existing, rows):
    """The fleet's rows after this run: a host's row is replaced when this run has one for it;
    a `not run` row only fills a host that has none. A failed row that could not read the
    device (no agent ID) keeps the identity the host was last seen with."""
    fleet = {row["host"]: row for row in existing}
    for row in rows:
        previous = fleet.get(row["host"])
        if outcome(row) == "not_run" and previous is not None:
            continue
        if outcome(row) == "failed" and not row["agent_id"] and previous and previous.get("agent_id"):
            row = dict(row, **{key: previous.get(key) for key in IDENTITY})
        fleet[row["host"]] = row
    return [fleet[host] for host in sorted(fleet)]


def _freshness(row):
    checked = parse_time(row["checked_at"]) if row["checked_at"] else None
    floor = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)
    return (outcome(row) != "not_run", checked or floor)


def merge_reports(row_lists):
    """One row per host from several reports: the newest checked_at wins (a `not run` row loses
    to any other; on a tie the later report wins)."""
    best = {}
    for rows in row_lists:
        for row in rows:
            if row["host"] not in best or _freshness(row) >= _freshness(best[row["host"]]):
                best[row["host"]] = row
    return [best[host] for host in sorted(best)]


# ---- serial batches


@dataclass
class PlayState:
    hosts_all: list
    active: list  # ansible_play_hosts: not failed, not unreachable
    batch: list  # ansible_play_batch: the active hosts of this batch
    serial: list
    max_fail_percentage: float | None = None
    any_errors_fatal: bool = False
    order: str | None = None


def serial_batches(hosts, serial):
    """The play's batches, as ansible-playbook cuts them (PlaybookExecutor._get_serialized_batches)."""
    sizes, left, batches = list(serial) or [-1], list(hosts), []
    while left:
        size = sizes[min(len(batches), len(sizes) - 1)]
        if isinstance(size, str) and size.endswith("%"):
            size = int(int(size[:-1]) / 100.0 * len(hosts)) or 1
        size = int(size)
        if size <= 0:
            size = len(left)
        batches.append(left[:size])
        left = left[size:]
    return batches


def ends_the_play(play, failed_hosts, reported):
    """Whether the play ends after this batch: its last one, or one whose failures stop it."""
    if play.order == "shuffle":  # batches cannot be recomputed: ends when no host is left to run
        return all(h in reported or h in play.batch or h not in play.active for h in play.hosts_all)
    batches = serial_batches(play.hosts_all, play.serial)
    current = next((b for b in batches if play.batch and play.batch[0] in b), batches[-1] if batches else [])
    if not batches or current is batches[-1]:
        return True
    # Hosts that left the play count as failures: printing twice beats never printing.
    lost = [h for h in current if h in failed_hosts or h not in play.active]
    if len(lost) == len(current) or (play.any_errors_fatal and lost):
        return True
    limit = play.max_fail_percentage
    return limit is not None and len(lost) / len(current) > float(limit) / 100.0


# ---- rendering


def _table_cell(row, key):
    value = row.get(key)
    if key == "fingerprint_sha256" and value:
        return visible(value[:16]) + "..."
    if key in ("not_after", "renew_after") and value:
        return visible(value[:10])
    if key == "verify" and row["verify_failure"]:
        return "%s (%s)" % (visible(value), visible(row["verify_failure"]))
    if key == "cloud":
        if value in ("", "not asked"):
            return "-"
        uptime = row["agent_uptime_s"]
        return visible(value) if uptime is None else "%s %ds" % (visible(value), uptime)
    if key == "keygen":  # how long the device took for this run's key: the slow boards stand out
        if not value or row["keygen_ms"] is None:
            return visible(value) or "-"
        return "%.1f s%s" % (row["keygen_ms"] / 1000.0, " inline" if value == "inline" else "")
    if key == "restarted":
        return "-" if not value else ("%d ms" % row["blackout_ms"] if row["blackout_ms"] is not None else "yes")
    text = visible(value)
    if key == "error" and not text and row["action"] == NOT_RUN and row["reason"]:
        text = "(%s)" % visible(row["reason"])
    elif key == "error" and text:
        text = ("[%s] " % visible(row["phase"]) if row["phase"] else "") + text
        text = text if len(text) <= 120 else text[:117] + "..."
    return text or "-"


def totals_line(counts):
    return ("totals: %(hosts)d host(s): %(ok)d ok, %(changed)d changed, %(failed)d failed, %(unreachable)d "
            "unreachable, %(not_run)d not run; %(due_for_rotation)d due for rotation within %(due_days)d days"
            % counts)


def table_lines(name, rows, counts, orphans, check_mode=False):
    cells = [[_table_cell(row, key) for _title, key in TABLE] for row in rows]
    headers = [title for title, _key in TABLE]
    widths = [max([len(headers[i])] + [len(c[i]) for c in cells]) for i in range(len(headers))]

    def line(values):
        return "  ".join(v.ljust(widths[i]) for i, v in enumerate(values)).rstrip()

    title = "fleet-mtls report %s: %d host(s)%s" % (name, len(rows), " (check mode)" if check_mode else "")
    lines = [title, line(headers)] + [line(c) for c in cells] + [totals_line(counts)]
    if orphans is None:
        lines.append("orphaned IDs: not listed (no inventory hosts or no readable ledger)")
    elif orphans:
        lines.append("orphaned IDs (in the ledger, held by no host of the inventory): %d" % len(orphans))
        lines += ["  %s  last held by %s, last seen %s" % (
            visible(o["agent_id"]), ", ".join(visible(h) for h in o["hosts"]), visible(o["last_seen"]) or "-")
            for o in orphans]
    return lines


def _csv_cell(value):
    text = "" if value is None else ("true" if value is True else "false" if value is False else str(value))
    # A cell starting like a formula is data, not a formula, in a spreadsheet.
    if text.startswith(_FORMULA_START) and not re.fullmatch(r"-?[0-9]+", text):
        text = "'" + text
    return visible(text)


def csv_text(rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow([name for name, _kind in COLUMNS])
    for row in rows:
        writer.writerow([_csv_cell(row[name]) for name, _kind in COLUMNS])
    return buffer.getvalue()


def json_text(document):
    # ensure_ascii: every control character (C0, DEL, C1) is a JSON escape.
    text = json.dumps(document, indent=2, default=str) + "\n"
    if _KEY_MATERIAL.search(text):
        raise ReportError("refusing to write a report that contains key material")
    return text


def artifact(document, keys):
    """The AWX artifact (set_stats) of a report document: ``keys`` of it, every string visible
    (AWX and the callbacks that print it show strings as they are)."""
    return visible_data({key: document[key] for key in keys})


# ---- documents


def report_document(name, playbook, now, rows, counts, orphans, check_mode, **extra):
    document = {"report": name, "playbook": playbook, "generated_at": utc(now), "check_mode": check_mode,
                "summary": summary(rows), "totals": counts, "orphaned_ids": orphans}
    document.update(extra)
    document["hosts"] = rows
    return document


def rows_of_document(document, source):
    """The typed rows of a report document, or of AWX artifacts holding one (``mtls_report``)."""
    if isinstance(document, Mapping) and isinstance(document.get("mtls_report"), Mapping):
        document = document["mtls_report"]
    rows = document.get("hosts") if isinstance(document, Mapping) else None
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) and r.get("host") for r in rows):
        raise ReportError("%s is not a fleet-mtls report (no \"hosts\" list of rows with a host)" % source)
    return [typed_row(row) for row in rows]
