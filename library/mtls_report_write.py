# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Documentation only: the work is done by action_plugins/mtls_report_write.py on the controller.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: mtls_report_write
short_description: Write the fleet report of mTLS identities on the controller
version_added: "1.0.0"
description:
  - Writes C(<dir>/<name>.json), C(<dir>/<name>.csv) and C(<dir>/<name>.txt) atomically (mode
    0644, directory created 0755 when missing) and returns the table lines for printing.
  - Refuses to write anything that looks like key material.
  - Runs on the controller whatever the host; writing the report is never a change (it is
    output, not managed state), and it is written in check mode too.
  - An action plugin (it runs on the controller and transfers nothing); this file holds only its
    documentation.
options:
  rows:
    description: One dict per host (host, agent_id, action, fingerprint_sha256, not_after, days_left, verify, ...).
    type: list
    elements: dict
    required: true
  dir:
    description: Report directory on the controller.
    type: path
    required: true
  name:
    description: Base name of the report files.
    type: str
    required: true
  playbook:
    description: Name of the play, recorded in the JSON report.
    type: str
    default: ""
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
summary:
  description: Counts over the hosts (hosts, actions, verified, verify_failed, errors).
  returned: success
  type: dict
  sample: {"hosts": 2, "actions": {"created": 2}, "verified": 2, "verify_failed": 0, "errors": 0}
"""
