# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side action: the fleet report (JSON, CSV, text table) of every host of the play.

One row per host of the play: its ``mtls_identity_status``; ``unreachable`` for a host that
left the play without one; ``not run`` for a host the play did not reach (a later serial batch,
or every batch after a canary stop). The fleet files ``<dir>/<name>.*`` are merged by host with
what is there: this run's row replaces a host's row, except that a ``not run`` row only fills a
host that has none, so ``--limit`` and canary runs keep the other hosts' last known rows. The
run's own rows also go to ``<dir>/history/<name>-<UTC time>.json`` (created once, never
overwritten) and to ``stats`` for set_stats. With ``metrics_file``, the fleet's expiry metrics
go to that Prometheus textfile (metrics.py; not in check mode: a plan is not a rotation).

It runs once per serial batch (run_once). The table to print, the history copy and ``final``
are for the batch after which the play ends: its last batch, or the one whose failures stop it
(the play's ``serial``, ``max_fail_percentage`` and ``any_errors_fatal``, evaluated the way
ansible-playbook does; a failed row counts as a host the play fails after the report).

With ``sources`` it merges report files instead (sliced jobs): the newest ``checked_at`` per
host wins. An action plugin rather than templates: the report lives on the controller, so
writing it needs no module round trip.
"""
from __future__ import annotations

import glob
import json
import os
import re

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import ledger, metrics, report
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.statedir import StateDir
from ansible_collections.autonomy_edge.fleet_mtls.plugins.plugin_utils import operator_paths

SPEC = {
    "dir": {"type": "path", "required": True},
    "name": {"type": "str", "required": True},
    "hosts": {"type": "list", "elements": "str"},
    "sources": {"type": "list", "elements": "path"},
    "ledger": {"type": "path"},
    "ledgers": {"type": "list", "elements": "path", "default": []},
    "current_hosts": {"type": "list", "elements": "str"},
    "due_days": {"type": "int", "default": 30},
    "history": {"type": "bool", "default": True},
    "playbook": {"type": "str"},
    "metrics_file": {"type": "path"},
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
REPORT_MAX = 256 * 1024 * 1024


def read_report(path, missing_ok=True, state=None):
    """The typed rows of the report file at ``path`` ([] when it is missing and that is fine);
    with ``state`` (the open report directory) read through it, never through a symlink."""
    try:
        if state is not None:
            data = state.read(os.path.basename(path), REPORT_MAX)
            if data is None:
                raise FileNotFoundError(path)
            document = json.loads(data.decode("utf-8"))
        else:
            with open(path, encoding="utf-8") as handle:
                document = json.load(handle)
    except FileNotFoundError:
        if missing_ok:
            return []
        raise report.ReportError("%s does not exist" % path)
    except (OSError, ValueError) as exc:
        raise report.ReportError("%s is not a readable fleet-mtls report (%s)" % (path, exc))
    return report.rows_of_document(document, path)


def read_sources(sources, skipped):
    """The rows of each report named by ``sources``: a file must be a report; a directory's
    ``*.json`` files that are not reports (a ledger next to them, ...) go to ``skipped``."""
    row_lists = []
    for source in sources:
        if not os.path.isdir(source):
            row_lists.append(read_report(source, missing_ok=False))
            continue
        for path in sorted(glob.glob(os.path.join(glob.escape(source), "*.json"))):
            try:
                row_lists.append(read_report(path))
            except report.ReportError:
                skipped.append(path)
    return row_lists


def create_new(directory, stem, text):
    """Write ``<stem>.json`` (or ``<stem>-2.json``, ...) in ``directory`` (a path, or an open
    StateDir), whole, never over a file that exists; returns its path."""
    if isinstance(directory, StateDir):
        return directory.join(directory.create_new(stem, ".json", text))
    with StateDir.open(directory, resolve=True) as state:
        return state.join(state.create_new(stem, ".json", text))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(SPEC)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self.validate_argument_spec(argument_spec=SPEC)[1]
        name, directory = args["name"], args["dir"]  # paths are shown as the operator gave them
        if not _NAME.fullmatch(name):
            raise AnsibleActionFail("report name %r must be a plain file name" % name)
        if args["sources"] == []:
            raise AnsibleActionFail("nothing to merge: set mtls_report_merge_sources to report files or directories")
        try:  # the operator's state, never inside an installed collection
            args["dir"] = operator_paths.state_path(args["dir"], "mtls_report_dir")
            args["ledger"] = operator_paths.state_path(args["ledger"], "mtls_ledger_path")
        except ConfigError as exc:
            raise AnsibleActionFail(str(exc)) from None
        now = report.utc_now()
        directory = args["dir"]
        fleet_path = os.path.join(directory, name + ".json")
        warnings, skipped = [], []
        try:
            # Every file, lock and folder of the report directory through its descriptor
            # (statedir): a symlink planted there is refused, never followed.
            with StateDir.open(directory, resolve=True) as state, \
                    state.locked(name + ".json.lock", ledger.LOCK_TIMEOUT, what=fleet_path):
                # runs that share the report merge into it in turn
                existing = read_report(fleet_path, state=state)
                if args["sources"] is None:
                    final, rows = self._rows_of_play(args, task_vars, existing, now)
                    fleet = report.merge_into_fleet(existing, rows)
                else:
                    final = True
                    rows = fleet = report.merge_reports([existing] + read_sources(args["sources"], skipped))
                fleet = [report.refresh_days_left(row, now) for row in fleet]
                if args["sources"] is None and not task_vars.get("ansible_check_mode"):
                    self._record(args, rows, warnings)
                orphans = self._orphans(args, task_vars, warnings)
                written = self._write(args, now, task_vars, state, fleet, rows, orphans, final)
        except (report.ReportError, ledger.LedgerError) as exc:
            raise AnsibleActionFail("cannot write the report %s: %s" % (fleet_path, exc))
        except OSError as exc:
            raise AnsibleActionFail("cannot write the report in %s: %s" % (directory, exc.strerror or exc))
        written["metrics_file"] = self._metrics(args, task_vars, fleet, now, warnings)
        result.update(written, changed=False, final=final, orphaned_ids=orphans, skipped=skipped,
                      failing_hosts=self._failing_hosts(task_vars))
        if warnings:
            result["warnings"] = warnings
        return result

    def _rows_of_play(self, args, task_vars, existing, now):
        play = self._play_state(task_vars)
        hosts = args["hosts"] if args["hosts"] is not None else play.hosts_all
        statuses = {host: self._status(task_vars, host) for host in hosts}
        previous = {row["host"]: row for row in existing}
        rows = report.run_rows(hosts, statuses, play.active, play.batch, now, previous, final=False)
        failed = {row["host"] for row in rows if report.outcome(row) == "failed"}
        final = report.ends_the_play(play, failed, {h for h, s in statuses.items() if s})
        if final:  # the hosts still without a row will not be reached
            rows = report.run_rows(hosts, statuses, play.active, play.batch, now, previous, final=True)
        return final, [report.refresh_days_left(row, now) for row in rows]

    def _play_state(self, task_vars):
        try:
            play = self._task.get_play()
        except AttributeError:  # not in a play: one batch
            play = None
        return report.PlayState(
            hosts_all=list(task_vars.get("ansible_play_hosts_all") or []),
            active=list(task_vars.get("ansible_play_hosts") or []),
            batch=list(task_vars.get("ansible_play_batch") or []),
            serial=list(getattr(play, "serial", None) or []),
            max_fail_percentage=getattr(play, "max_fail_percentage", None),
            any_errors_fatal=bool(getattr(play, "any_errors_fatal", False)),
            order=getattr(play, "order", None))

    def _failing_hosts(self, task_vars):
        """The hosts of this batch whose row names the phase that failed: the playbooks' last
        task fails them, and is skipped once for the batch when there are none."""
        batch = task_vars.get("ansible_play_batch") or []
        return sorted(host for host in batch if (self._status(task_vars, host) or {}).get("phase"))

    @staticmethod
    def _status(task_vars, host):
        try:
            return task_vars["hostvars"][host].get("mtls_identity_status")
        except KeyError:
            return None

    @staticmethod
    def _record(args, rows, warnings):
        """The identity ledger learns this batch's identities: one locked write per batch."""
        if not args["ledger"]:
            return
        known = {row["host"]: row for row in rows if row.get("agent_id") and row.get("action") not in
                 ledger.UNRECORDED_ACTIONS}
        if known:
            ledger.Ledger(args["ledger"]).record_many(known, warnings)

    @staticmethod
    def _orphans(args, task_vars, warnings):
        """Orphaned IDs of the ledger (None: not listed), after merging the ``ledgers``."""
        path = args["ledger"]
        if not path:
            return None
        the_ledger = ledger.Ledger(path)
        for other in args["ledgers"]:
            the_ledger.merge(other)  # asked for: a failure fails the task
        current = args["current_hosts"]
        if current is None:
            current = list((task_vars.get("groups") or {}).get("all") or [])
        if not current:
            warnings.append("orphaned IDs not listed: no inventory hosts (run with the fleet's inventory)")
            return None
        try:
            return the_ledger.orphans(current)
        except ledger.LedgerError as exc:
            warnings.append("orphaned IDs not listed: %s" % exc)
            return None

    @staticmethod
    def _metrics(args, task_vars, fleet, now, warnings):
        """Write the fleet's rows to the metrics file; its path, or None. A failure is a warning:
        the report is written, and the file's generated timestamp goes stale for monitoring."""
        path = args["metrics_file"]
        if not path or task_vars.get("ansible_check_mode"):
            return None
        # The controller's own directory, chosen by the operator like the report's: resolved
        # here, then written without following any symlink (metrics.py).
        directory = os.path.realpath(os.path.dirname(os.path.abspath(path)))
        try:
            return metrics.write(directory, fleet, name=os.path.basename(path), now=int(now.timestamp()),
                                 keep_other_hosts=True)
        except metrics.MetricsError as exc:
            warnings.append("the metrics file was not written: %s" % exc)
            return None

    def _write(self, args, now, task_vars, state, fleet, rows, orphans, final):
        name, directory = args["name"], args["dir"]  # paths are shown as the operator gave them
        check_mode = bool(task_vars.get("ansible_check_mode"))
        playbook = args["playbook"] if args["playbook"] is not None else str(task_vars.get("ansible_play_name") or "")
        due = args["due_days"]
        run_totals, fleet_totals = report.totals(rows, now, due), report.totals(fleet, now, due)
        run_doc = report.report_document(name, playbook, now, rows, run_totals, orphans, check_mode)
        run_text = report.json_text(run_doc)  # also checks the set_stats rows for key material
        history = None
        if final and args["history"]:
            stem = "%s-%s" % (name, now.strftime("%Y%m%dT%H%M%SZ"))
            with state.subdir("history") as folder:
                history = os.path.join(directory, "history", folder.create_new(stem, ".json", run_text))
        fleet_doc = report.report_document(
            name, playbook, now, fleet, fleet_totals, orphans, check_mode,
            run={"playbook": playbook, "hosts": len(rows), "totals": run_totals, "history": history})
        fleet_text = report.json_text(fleet_doc)
        files = []
        for suffix, text in (("json", fleet_text), ("csv", report.csv_text(fleet)),
                             ("txt", "\n".join(report.table_lines(name, fleet, fleet_totals, orphans)) + "\n")):
            files.append(os.path.join(directory, "%s.%s" % (name, suffix)))
            state.write_atomic(os.path.basename(files[-1]), text)
        table = []
        if final:
            kept = len({r["host"] for r in fleet} - {r["host"] for r in rows})
            table = report.table_lines(name, rows, run_totals, orphans, check_mode) + [
                "fleet report %s: %d host(s), %d kept from earlier runs%s"
                % (files[0], len(fleet), kept, "; this run: %s" % history if history else "")]
            if args["ledger"]:
                table.append("identity ledger %s" % args["ledger"])
        stats = report.artifact(run_doc, ("report", "playbook", "generated_at", "check_mode", "totals",
                                          "orphaned_ids", "hosts"))
        return {"files": files, "history": history, "table": table, "totals": run_totals,
                "fleet_totals": fleet_totals, "stats": stats}
