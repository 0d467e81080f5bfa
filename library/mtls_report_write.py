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
  - fleet-mtls contributors
"""

EXAMPLES = r"""
- name: Write the fleet report (JSON, CSV and table)
  autonomy_edge.fleet_mtls.mtls_report_write:
    rows: "{{ __mtls_report_rows }}"
    dir: "{{ playbook_dir }}/../reports"
    name: provision-report
    playbook: "{{ ansible_play_name }}"
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
  description: The text table, one line per element (title, header, one line per host).
  returned: success
  type: list
  elements: str
metrics_file:
  description: The metrics file written, or null.
  returned: success
  type: path
  sample: /srv/reports/fleet-mtls.prom
summary:
  description: Counts over the hosts (hosts, actions, verified, verify_failed, errors).
  returned: success
  type: dict
  sample: {"hosts": 2, "actions": {"created": 2}, "verified": 2, "verify_failed": 0, "errors": 0}
"""
