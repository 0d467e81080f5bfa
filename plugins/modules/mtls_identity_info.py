#!/usr/bin/python
# -*- coding: utf-8 -*-
# fleet-mtls: read-only facts about a device's mTLS identity.
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: mtls_identity_info
short_description: Report the mTLS identity held by a device, without changing anything
description:
  - Reads the identity directory written by M(autonomy_edge.fleet_mtls.mtls_identity) and reports the agent ID, the
    certificate's fingerprint, serial and dates, whether the key matches the certificate,
    file modes and owners, and any problem found.
  - Never writes, never uses the network, never returns key material. Symbolic links are not
    followed; they are reported as problems.
  - An identity the module cannot read (permissions) fails the task; RV(exists) is false only when
    there is no identity.
version_added: "1.0.0"
author:
  - fleet-mtls contributors (@autonomy-edge)
requirements:
  - python >= 3.9
  - cryptography >= 3.3
options:
  path:
    description:
      - Identity directory. Default C(~/.mtls) of O(owner) (its home from the password database).
    type: str
  owner:
    description:
      - The agent's user (name or numeric ID) whose identity to read. Default the user the module runs as.
      - When given, the owners of the directory, key and certificate are reported as problems if they are not its.
      - Run as root (C(become)) to read another user's identity; only reading, so the ownership rules of
        M(autonomy_edge.fleet_mtls.mtls_identity) (which writes) do not apply.
    type: str
  id_pattern:
    description: Regular expression the certificate CN must match to count as a valid agent ID.
    type: str
    default: ^[0-9A-F]{8}$
  renew_before_days:
    description: The identity is reported as RV(due) when it expires in fewer days than this.
    type: int
    default: 30
attributes:
  check_mode:
    description: Read-only; runs the same in check mode.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
  platform:
    description: POSIX hosts.
    support: full
    platforms: posix
seealso:
  - module: autonomy_edge.fleet_mtls.mtls_identity
"""

EXAMPLES = r"""
- name: Read the identity of the agent's user (as root, which reads any user's files)
  autonomy_edge.fleet_mtls.mtls_identity_info:
    owner: agent
  become: true
  register: identity_info

- name: Fail when the identity has problems
  ansible.builtin.assert:
    that:
      - identity_info.exists
      - identity_info.problems | length == 0
    fail_msg: "{{ identity_info.problems | join('; ') }}"
"""

RETURN = r"""
exists:
  description: A readable certificate and a key matching it are present.
  returned: always
  type: bool
  sample: true
dir_path:
  description: The identity directory (expanded).
  returned: always
  type: str
  sample: /home/agent/.mtls
cert_path:
  description: Path of the certificate.
  returned: always
  type: str
  sample: /home/agent/.mtls/client.crt
key_path:
  description: Path of the private key (never its content).
  returned: always
  type: str
  sample: /home/agent/.mtls/client.key
agent_id:
  description: CN of the certificate; null when there is no readable certificate.
  returned: always
  type: str
  sample: "07048933"
fingerprint_sha256:
  description: SHA-256 fingerprint of the certificate (DER), lower-case hex; null without certificate.
  returned: always
  type: str
  sample: 9c5fc7f7ab60d3a5e0b1c6a8e2c4d1f09a7b3e5d2c8f4a6b0e9d7c5a3b1f2e4d
serial:
  description: Serial number, upper-case hex; null without certificate.
  returned: always
  type: str
  sample: 3A5F0C9B2D4E6F8011223344556677889900AABB
not_before:
  description: Start of validity (ISO 8601, UTC); null without certificate.
  returned: always
  type: str
  sample: "2026-11-27T16:55:02Z"
not_after:
  description: End of validity (ISO 8601, UTC); null without certificate.
  returned: always
  type: str
  sample: "2027-11-27T17:00:02Z"
days_left:
  description: Whole days until expiry (negative when expired); null without certificate.
  returned: always
  type: int
  sample: 364
due:
  description: Expired, or expiring within O(renew_before_days); null without certificate.
  returned: always
  type: bool
  sample: false
key_size:
  description: RSA key size in bits; null when unknown.
  returned: always
  type: int
  sample: 4096
key_matches:
  description: Whether the private key belongs to the certificate; null when either is unreadable.
  returned: always
  type: bool
  sample: true
self_signed:
  description: Whether the certificate is self-signed (false when a CA issued it); null without certificate.
  returned: always
  type: bool
  sample: true
subject:
  description: Subject attributes of the certificate (C, ST, L, O, OU, CN); null without certificate.
  returned: always
  type: dict
  sample: {C: BR, ST: SP, L: SaoPaulo, O: AutonomyLogic, OU: Development, CN: "07048933"}
files:
  description: Mode, owner, group, uid and gid of the directory, the key and the certificate (null when absent).
  returned: always
  type: dict
  sample:
    directory: {mode: "0700", owner: agent, group: agent, uid: 1000, gid: 1000}
    key: {mode: "0600", owner: agent, group: agent, uid: 1000, gid: 1000}
    cert: {mode: "0644", owner: agent, group: agent, uid: 1000, gid: 1000}
pending:
  description:
    - State left by an interrupted run. C(staged_key)/C(staged_cert) tell whether staging files
      exist; C(journal) is the content of the journal (no secret) or null.
  returned: always
  type: dict
  sample: {staged_key: false, staged_cert: false, journal: null}
problems:
  description: Problems found, for humans; empty when the identity is healthy.
  returned: always
  type: list
  elements: str
  sample: []
"""


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import option_table
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.certinfo import CRYPTOGRAPHY_IMPORT_ERROR
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import IdentityError, fail_when_missing


def main():
    spec = option_table.argument_spec(option_table.INFO_OPTIONS)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    fail_when_missing(module, ("cryptography", CRYPTOGRAPHY_IMPORT_ERROR))
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import location
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.facts import identity_facts
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.files import Modes

    p = module.params
    error = None
    try:
        d = option_table.defaults(("dir_mode", "key_mode", "cert_mode"))
        modes = Modes(dir_mode=d["dir_mode"], key_mode=d["key_mode"], cert_mode=d["cert_mode"])
        facts = identity_facts(location.resolve(p["path"], p["owner"]), p["id_pattern"], p["renew_before_days"],
                               modes)
    except IdentityError as exc:
        error = exc
    if error is not None:
        module.fail_json(msg=error.msg)
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
