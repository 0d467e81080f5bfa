#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: mtls_prekey
short_description: Start generating a device's new private key in the background
description:
  - The first, fast pass of the role C(autonomy_edge.fleet_mtls.mtls_identity) (variable C(mtls_background_keygen)).
    It decides, as M(autonomy_edge.fleet_mtls.mtls_identity) will and without the network, whether the device needs
    a new key in this run (no identity yet, due, broken, O(rotate=always)...), and if so starts the key's
    generation in a process of its own, detached from the connection, as the identity's owner, at the lowest CPU
    priority, and returns at once. The process writes the key into the identity directory - O_EXCL, 0600 from its
    first byte, never through a symbolic link - and nowhere else; nothing of it is ever printed.
  - M(autonomy_edge.fleet_mtls.mtls_identity) then takes that key instead of making one, waiting for it (up to its
    O(keygen_timeout)) only when it is not ready yet. So a fleet of slow devices makes its keys in parallel instead
    of one batch of forks after the other.
  - Starts nothing when a key is being made or waits already, when none is needed, or in check mode. A process
    left by an interrupted run (killed, gone after a reboot) and anything at its file names that this bundle did
    not write are removed, with a warning, before a new one starts.
  - It takes the options of M(autonomy_edge.fleet_mtls.mtls_identity) (the role's task passes the same role
    variables) and checks them as that module does before anything changes; an option that module would refuse
    starts nothing and creates nothing (a O(headers_file) on the device is read and checked, never used). Its
    action plugin checks on the controller what that module's action checks (the role's variables, the headers,
    the C(*_src) files, the ledger's conflicts) and leaves a host it would refuse untouched - the identity task
    refuses it. It never sends the headers and makes no request.
  - Never fails on the device's state - the identity task reports what is wrong - only on its arguments.
version_added: "1.0.0"
author:
  - fleet-mtls contributors (@autonomy-edge)
requirements:
  - python >= 3.9
  - cryptography >= 3.3
extends_documentation_fragment:
  - autonomy_edge.fleet_mtls.api
  - autonomy_edge.fleet_mtls.identity
attributes:
  check_mode:
    support: full
    description:
      - Decides and reports RV(keygen=would start); starts no process and writes nothing.
  diff_mode:
    support: none
    description: Nothing to show - the key is never shown.
  platform:
    platforms: posix
    support: full
    description: Linux devices (the process is identified through C(/proc)).
notes:
  - The role runs it only for the hosts its identity ledger expects to need a key (not in it yet, or due by the
    renewal date it holds) and for every host with C(mtls_rotate=always); the others skip it on the controller.
  - Where Ansible would pipeline the module (pipelining on, no async, no ANSIBLE_KEEP_REMOTE_FILES), its action
    runs the same code on the device without AnsiballZ - one Python script on the standard input of one command,
    with the module's interpreter, environment and become - so the pass does not pay for importing
    C(ansible.module_utils.basic), most of a module's CPU on a small device. The options are checked on the
    controller against this module's argument spec; path options are expanded on the device.
seealso:
  - module: autonomy_edge.fleet_mtls.mtls_identity
"""

EXAMPLES = r"""
- name: Start the new keys of the whole batch first (one short round trip each)
  autonomy_edge.fleet_mtls.mtls_prekey:
    api_url: https://api.example.com
    owner: agent
    rotate: always

- name: Rotate; each device takes the key it made in the background
  autonomy_edge.fleet_mtls.mtls_identity:
    api_url: https://api.example.com
    owner: agent
    rotate: always
"""

RETURN = r"""
keygen:
  description:
    - C(started), C(would start) (check mode), C(running) (one is being made already), C(ready) (a key made in
      the background waits), C(not needed) or C(not started) (the identity task will say why).
    - C(handed over) where Ansible pipelines, outside check mode - the action runs the pass without AnsiballZ, and
      it answers at once, then decides on the device away from the SSH session; the identity task reports what
      the device did, and the warnings of the pass.
  returned: always
  type: str
  sample: started
reason:
  description: Why, for humans.
  returned: always
  type: str
  sample: certificate expires in 12 days (renew_before_days=30)
keygen_pid:
  description: The process making the key (when one is started, running or done).
  returned: when there is one
  type: int
  sample: 41872
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import prekey
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.options import argument_spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    module.exit_json(**prekey.run_pass(module.params, check_mode=module.check_mode, warn=module.warn))


if __name__ == "__main__":
    main()
