# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Documentation only: the work is done by action_plugins/mtls_ledger.py on the controller.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: mtls_ledger
short_description: What the controller's identity ledger says about the hosts of a batch
version_added: "1.0.0"
description:
  - Reads the identity ledger (host, agent ID, fingerprint, history) on the controller, once
    per batch (C(run_once)), and sets the fact C(mtls_ledger) - for each host, the ID the
    ledger holds for it (C(ledger_id)) and a C(conflict) message when two hosts would use one
    agent ID (pre-assigned IDs, or an ID the ledger says another host of the inventory holds),
    and C(new_key) - whether the host is expected to need a new key in this run (not in the ledger
    yet, or due by the renewal date it holds), which picks the hosts of the role's background key
    generation (M(autonomy_edge.fleet_mtls.mtls_prekey)) on the controller; and the fact
    C(mtls_ledger_keygen_hosts) - the hosts of the batch that pass will start a key on (C(new_key),
    or C(mtls_rotate=always) among the host's variables), so that a batch with none skips the
    pass once rather than once per host.
  - M(autonomy_edge.fleet_mtls.mtls_identity) refuses a host with a conflict before anything
    changes, and hands a device that lost its identity its ledger ID (O(ignore:lost_identity)).
  - The ledger is written by the report (M(autonomy_edge.fleet_mtls.mtls_report_write)), once per
    batch, and each host's record is appended, right after its module run, to the pending file
    C(<path>.pending) beside it, which every reader applies. Before it answers (not in check mode),
    this module writes the pending records of an earlier run into the ledger; with
    O(write_pending) it only does that (the role's last task, so that the ledger file is whole
    after a play without the report too).
author:
  - fleet-mtls contributors (@autonomy-edge)
options:
  path:
    description: The ledger file on the controller (a missing file is an empty ledger).
    type: path
    required: true
  hosts:
    description: The hosts to answer for. Default the batch (C(ansible_play_batch)).
    type: list
    elements: str
  agent_id_variable:
    description: The host variable holding a pre-assigned agent ID.
    type: str
    default: mtls_agent_id
  write_pending:
    description:
      - Only write the pending records (the batch's hosts' records) into the ledger and remove
        the pending file; answer nothing and set no fact. Nothing is written in check mode.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reads only; writes nothing into the ledger.
  diff_mode:
    support: none
    description: Nothing to compare.
  platform:
    platforms: all
    support: full
    description: Runs on the controller.
notes:
  - An action plugin - it runs on the controller and transfers nothing; this file holds only its
    documentation.
seealso:
  - module: autonomy_edge.fleet_mtls.mtls_identity
"""

EXAMPLES = r"""
- name: Ask the identity ledger about the batch's hosts
  autonomy_edge.fleet_mtls.mtls_ledger:
    # Relative: in the directory ansible-playbook runs in (your project), as the role's default.
    path: fleet-mtls-state/identity-ledger.json
  run_once: true

- name: Write the batch's pending records into the ledger file
  autonomy_edge.fleet_mtls.mtls_ledger:
    path: fleet-mtls-state/identity-ledger.json
    write_pending: true
  run_once: true
"""

RETURN = r"""
conflicts:
  description: The hosts that share an agent ID with another host.
  returned: unless O(write_pending)
  type: list
  elements: str
  sample: [edge-sp-02, edge-sp-03]
ansible_facts:
  description: C(mtls_ledger) - per host, C(ledger_id), C(conflict) and C(new_key);
    C(mtls_ledger_keygen_hosts) - the hosts of the batch expected to need a new key.
  returned: unless O(write_pending)
  type: dict
  sample: {mtls_ledger: {edge-sp-01: {ledger_id: "07048933", conflict: "", new_key: false}},
           mtls_ledger_keygen_hosts: []}
written:
  description: With O(write_pending), how many pending records were written into the ledger.
  returned: when O(write_pending)
  type: int
  sample: 30
"""
