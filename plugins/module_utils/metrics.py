# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certificate expiry as a Prometheus textfile-collector file, from status rows.

Device-side (one row: the module's ``status``, in ``mtls_metrics_dir``) and controller-side
(every row of the fleet report, ``<mtls_report_dir>/fleet-mtls.prom``). Standard library only.

Per host, labelled ``host`` and ``agent_id`` (control characters written as visible escapes,
``visible.py``: a host name cannot forge a sample line)::

    fleet_mtls_certificate_not_before_timestamp_seconds   the certificate's notBefore
    fleet_mtls_certificate_not_after_timestamp_seconds    its notAfter
    fleet_mtls_certificate_days_left                      whole days left at the file's time
    fleet_mtls_last_run_timestamp_seconds                 the run the row is from (checked_at)
    fleet_mtls_last_run_success                           1 when that run succeeded, else 0
    fleet_mtls_last_success_timestamp_seconds             the last run that succeeded
    fleet_mtls_last_rotation_timestamp_seconds            the last run that put a new pair in place
    fleet_mtls_action_info{..., action="rotated"} 1       what that run did
    fleet_mtls_agent_connected                            1 when the cloud saw the agent active, else 0
                                                          (only for a run that asked it: the cloud column)
    fleet_mtls_agent_heartbeat_timestamp_seconds          the agent's last heartbeat the cloud had

plus ``fleet_mtls_metrics_generated_timestamp_seconds`` (when the file was written: a stale
file means the writer stopped). A row says nothing about earlier runs, so the last success and
the last rotation are read back from the file being replaced: a failed run keeps the last
success time. Per host the newer run wins (a row older than the file's is not written over
it), so two reports sharing one file cannot move a host back in time. A decommissioned host
keeps only its run and action metrics: no expiry alert for a certificate nobody uses.

The file is written atomically through directory file descriptors (``statedir``): every component of the
directory opened with O_NOFOLLOW from ``/`` (a symlink is refused), a temporary file created
O_EXCL|O_NOFOLLOW in the same directory (its name does not end in ``.prom``, so the collector
never reads it), fsync, rename over the old file, fsync of the directory; mode 0644.
"""
from __future__ import annotations

import calendar
import os
import re
import time

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.statedir import StateDir
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.visible import visible

PREFIX = "fleet_mtls_"
DEFAULT_NAME = "fleet-mtls.prom"
MAX_PREVIOUS_SIZE = 64 * 1024 * 1024  # ~1 KiB per host: room for 60,000 hosts
ROTATION_ACTIONS = ("created", "rotated", "restored")
RELEASED_ACTIONS = ("decommissioned", "removed locally")
NOT_RUN = "not run"

# (suffix, help) of the per-host gauges, in file order.
GAUGES = (
    ("certificate_not_before_timestamp_seconds", "notBefore of the client certificate, seconds since the epoch."),
    ("certificate_not_after_timestamp_seconds", "notAfter of the client certificate, seconds since the epoch."),
    ("certificate_days_left", "Whole days until the client certificate expires, when the file was written."),
    ("last_run_timestamp_seconds", "When the last fleet-mtls run for the host finished, seconds since the epoch."),
    ("last_run_success", "1 if the last fleet-mtls run for the host succeeded, else 0."),
    ("last_success_timestamp_seconds", "When a fleet-mtls run for the host last succeeded, seconds since the epoch."),
    ("last_rotation_timestamp_seconds", "When a fleet-mtls run last put a new key and certificate in place."),
    ("agent_connected", "1 if the cloud saw the host's agent active when the last run asked it, else 0."),
    ("agent_heartbeat_timestamp_seconds", "When the host's agent sent the last heartbeat the cloud had "
                                          "(the agent's clock), seconds since the epoch."),
)
ACTION = ("action_info", "What the last fleet-mtls run did to the host's identity (the action label); always 1.")
GENERATED = ("metrics_generated_timestamp_seconds", "When this file was written, seconds since the epoch.")
KEPT = ("last_success_timestamp_seconds", "last_rotation_timestamp_seconds")

_SAMPLE = re.compile(r'^(%s[a-z_]+)\{((?:[a-z_]+="(?:[^"\\\n]|\\.)*",?)*)\} (\S+)$' % PREFIX)
_LABEL = re.compile(r'([a-z_]+)="((?:[^"\\\n]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_TIME = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.\d+)?(Z|[+-]\d\d:?\d\d)?$")


class MetricsError(Exception):
    """The metrics file cannot be written; the message names the path and why."""


# ---------------------------------------------------------------------------------- values
def epoch(value):
    """Seconds since the epoch of an ISO 8601 time ("...Z", an offset, or naive UTC), or None."""
    match = _TIME.match(str(value or "").strip())
    if not match:
        return None
    year, month, day, hour, minute, second, zone = match.groups()
    seconds = calendar.timegm((int(year), int(month), int(day), int(hour), int(minute), int(second)))
    if zone and zone != "Z":
        sign = -1 if zone[0] == "+" else 1
        digits = zone[1:].replace(":", "")
        seconds += sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return seconds


def host_label(row):
    """The row's host as its ``host`` label: control characters written visibly (``visible``),
    so a name cannot forge a line of the file, and a name is read back as it was written."""
    return visible(row.get("host") or "")


def succeeded(row):
    """The report's rule (report.outcome): no failure, phase or error, and the run reached the host."""
    action = row.get("action") or ""
    return bool(action) and action not in ("failed", "unreachable", NOT_RUN) and not row.get("phase") \
        and not row.get("error")


def host_series(row, now, previous=None):
    """The metric values of one status row: {"labels": {...}, "action": str, "values": {...}}.
    ``previous`` is the host's entry read from the file being replaced (or None)."""
    action = str(row.get("action") or "")
    ran_at = epoch(row.get("checked_at")) if row.get("checked_at") else (None if action == NOT_RUN else now)
    values = {}
    if action not in RELEASED_ACTIONS:
        values["certificate_not_before_timestamp_seconds"] = epoch(row.get("not_before"))
        values["certificate_not_after_timestamp_seconds"] = epoch(row.get("not_after"))
    if ran_at is not None:
        values["last_run_timestamp_seconds"] = ran_at
        values["last_run_success"] = 1 if succeeded(row) else 0
    if ran_at is not None and succeeded(row):
        values["last_success_timestamp_seconds"] = ran_at
    if ran_at is not None and action in ROTATION_ACTIONS:
        values["last_rotation_timestamp_seconds"] = ran_at
    cloud = row.get("cloud") or ""
    if cloud in ("active", "inactive", "unseen") and action not in RELEASED_ACTIONS:
        values["agent_connected"] = 1 if cloud == "active" else 0
        values["agent_heartbeat_timestamp_seconds"] = epoch(row.get("heartbeat_at"))
    for name in KEPT:  # never back in time, and kept by a run that says nothing about it
        earlier = (previous or {}).get("values", {}).get(name)
        if earlier is not None and (values.get(name) is None or earlier > values[name]):
            values[name] = earlier
    series = {"labels": {"host": host_label(row), "agent_id": visible(row.get("agent_id") or "")},
              "action": visible(action), "values": {k: v for k, v in values.items() if v is not None}}
    return newer(series, previous)


def newer(series, previous):
    """``series``, unless the file already holds a later run of the host (then that, as it was)."""
    if previous is None:
        return series
    mine = series["values"].get("last_run_timestamp_seconds")
    theirs = previous["values"].get("last_run_timestamp_seconds")
    if theirs is not None and (mine is None or theirs > mine):
        return previous
    return series


def merge(rows, now, previous, keep_other_hosts=False):
    """The series of every host of ``rows``, and with ``keep_other_hosts`` those of
    ``previous`` that no row names (a file shared by several reports)."""
    hosts = {}
    for row in rows:
        host = host_label(row)  # as the file being replaced holds it
        hosts[host] = host_series(row, now, previous.get(host))
    if keep_other_hosts:
        for host, series in previous.items():
            hosts.setdefault(host, series)
    return [hosts[host] for host in sorted(hosts)]


# ---------------------------------------------------------------------------------- text
def escape_label(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels):
    return ",".join('%s="%s"' % (name, escape_label(value)) for name, value in labels.items())


def _number(value):
    return "%d" % value if float(value).is_integer() else repr(float(value))


def render(rows, now=None, previous=None, keep_other_hosts=False):
    """The text-format exposition of ``rows`` (status rows) as of ``now`` (epoch seconds)."""
    now = int(time.time() if now is None else now)
    all_series = merge(rows, now, previous or {}, keep_other_hosts)
    for series in all_series:
        not_after = series["values"].get("certificate_not_after_timestamp_seconds")
        if not_after is not None:
            series["values"]["certificate_days_left"] = (not_after - now) // 86400
        else:
            series["values"].pop("certificate_days_left", None)
    lines = []
    for suffix, text in GAUGES:
        _family(lines, suffix, text, [(s["labels"], s["values"][suffix]) for s in all_series if suffix in s["values"]])
    _family(lines, ACTION[0], ACTION[1], [(dict(s["labels"], action=s["action"]), 1) for s in all_series])
    _family(lines, GENERATED[0], GENERATED[1], [({}, now)])
    return "\n".join(lines) + "\n"


def _family(lines, suffix, text, samples):
    if not samples:
        return
    name = PREFIX + suffix
    lines.append("# HELP %s %s" % (name, text.replace("\\", "\\\\").replace("\n", "\\n")))
    lines.append("# TYPE %s gauge" % name)
    for labels, value in samples:
        lines.append("%s%s %s" % (name, "{%s}" % _labels(labels) if labels else "", _number(value)))


def parse(text):
    """The per-host series of a file this module wrote: {host: series}. Lines it does not
    recognise are ignored (a hand-edited or foreign file costs the kept values, nothing else)."""
    hosts = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, label_text, number = match.groups()
        labels = {key: re.sub(r"\\.", lambda m: _UNESCAPE.get(m.group(0), m.group(0)), value)
                  for key, value in _LABEL.findall(label_text)}
        try:
            value = int(number) if re.fullmatch(r"-?\d+", number) else float(number)
        except ValueError:
            continue
        if "host" not in labels:
            continue
        series = hosts.setdefault(labels["host"], {
            "labels": {"host": labels["host"], "agent_id": labels.get("agent_id", "")}, "action": "", "values": {}})
        suffix = name[len(PREFIX):]
        if suffix == ACTION[0]:
            series["action"] = labels.get("action", "")
        elif suffix in dict(GAUGES):
            series["values"][suffix] = value
    return hosts


# ---------------------------------------------------------------------------------- files
def write(directory, rows, name=DEFAULT_NAME, now=None, keep_other_hosts=False):
    """Write the metrics of ``rows`` to ``<directory>/<name>``, keeping what the file being
    replaced knew: the last success and rotation, a later run of a host, and with
    ``keep_other_hosts`` the hosts no row names. Returns the path. The directory is opened
    through ``statedir`` (a symlink on its path is refused); a metrics file that is a symlink
    (or not a regular file) is neither read nor written through: the new file replaces it."""
    if not name or "/" in name or name.startswith("."):
        raise MetricsError("the metrics file name %r must be a plain file name" % name)
    try:
        with StateDir.open(directory) as state:
            data = state.read(name, MAX_PREVIOUS_SIZE, lenient=True)
            previous = parse(data.decode("utf-8", "replace")) if data else {}
            state.write_atomic(name, render(rows, now, previous, keep_other_hosts))
    except OSError as exc:
        raise MetricsError("cannot write %s in %s: %s" % (name, directory, exc.strerror or exc)) from None
    return os.path.join(directory, name)
