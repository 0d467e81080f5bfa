# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Documentation only: the work is done by action_plugins/mtls_report_write.py on the controller.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: mtls_report_write
short_description: Write the fleet report of mTLS identities on the controller
description:
  - Writes C(<dir>/<name>.json), C(.csv) and C(.txt) atomically (0644, directory 0755) with one row per
    host, merged by host with the existing report; the run's rows also to C(<dir>/history/).
  - Never a change (the report is output, not managed state); written in check mode too.
    Refuses to write anything that looks like key material.
options:
  dir:
    description: Report directory on the controller.
    type: path
    required: true
  name:
    description: Base name of the report files.
    type: str
    required: true
  hosts:
    description: Hosts to report; default the play's hosts (C(ansible_play_hosts_all)).
    type: list
    elements: str
  sources:
    description: Merge these report files (or directories of them) into the report instead.
    type: list
    elements: path
  ledger:
    description: The identity ledger whose orphaned IDs the report lists.
    type: path
  ledgers:
    description: With O(sources), ledgers merged into O(ledger) first.
    type: list
    elements: path
    default: []
  current_hosts:
    description: The fleet, for the orphaned IDs; default the inventory (C(groups.all)).
    type: list
    elements: str
  due_days:
    description: Horizon of the due-for-rotation total, in days.
    type: int
    default: 30
  history:
    description: Keep the run's timestamped copy.
    type: bool
    default: true
  playbook:
    description: Name of the play recorded in the report; default C(ansible_play_name).
    type: str
  metrics_file:
    description:
      - Also write the fleet's certificate expiry metrics to this Prometheus textfile-collector
        file (0644, atomically, never through a symlink; the last success and rotation times are
        read back from the file it replaces). Not written in check mode. Unset, no metrics.
      - A failure to write it is a warning, not a failure of the report.
    type: path
author:
  - fleet-mtls contributors (@autonomy-edge)
"""

EXAMPLES = r"""
- name: Write the fleet report (JSON, CSV, table and metrics)
  autonomy_edge.fleet_mtls.mtls_report_write:
    # Relative: in the directory ansible-playbook runs in (your project), as the role's default.
    dir: fleet-mtls-state
    name: provision-report
    metrics_file: fleet-mtls-state/fleet-mtls.prom
  run_once: true
  delegate_to: localhost

- name: Merge the reports of two job slices into the fleet report
  autonomy_edge.fleet_mtls.mtls_report_write:
    dir: /srv/reports
    name: provision-report
    sources: [/srv/slices/1/provision-report.json, /srv/slices/2/]
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
files:
  description: The report files written (JSON, CSV, text table).
  returned: success
  type: list
  elements: path
  sample: [/srv/reports/provision-report.json, /srv/reports/provision-report.csv, /srv/reports/provision-report.txt]
table:
  description:
    - The text table of this run, one line per element (title, header, one line per host, totals),
      for the batch after which the play ends; empty for the other batches.
  returned: success
  type: list
  elements: str
final:
  description: Whether the play ends after this batch (the table is printed then).
  returned: success
  type: bool
failing_hosts:
  description:
    - The hosts of this batch whose row names a failed phase (their fact C(mtls_identity_status)), which the
      playbooks then fail; with none, their last task is skipped once for the batch.
  returned: success
  type: list
  elements: str
history:
  description: This run's timestamped copy of its rows, or null (not the final batch, or O(history=false)).
  returned: success
  type: str
totals:
  description:
    - Counts over this run's rows - hosts, ok, changed, failed, unreachable, not_run,
      due_for_rotation (within due_days).
  returned: success
  type: dict
  sample: {"hosts": 2, "ok": 1, "changed": 1, "failed": 0, "unreachable": 0, "not_run": 0,
           "due_for_rotation": 0, "due_days": 30}
fleet_totals:
  description: The same counts over the whole fleet report.
  returned: success
  type: dict
stats:
  description: This run's report document without the table, for C(set_stats) (the AWX job artifact C(mtls_report)).
  returned: success
  type: dict
orphaned_ids:
  description: Agent IDs of the ledger that no host of the fleet holds, or null when not listed.
  returned: success
  type: list
  elements: str
skipped:
  description: Files of source directories that are not reports (e.g. a ledger next to them).
  returned: success
  type: list
  elements: str
metrics_file:
  description: The metrics file written, or null.
  returned: success
  type: str
  sample: /srv/reports/fleet-mtls.prom
"""
