#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: mtls_identity
short_description: Give a device a registered mTLS identity and an agent that really connects
description:
  - One run does the device's whole job, in the order that keeps a running agent safe.
  - B(identity) - the device holds an RSA key generated on the device (0600 from its first
    byte, never in any output) and a certificate whose CN is its agent ID, registered with the
    provisioning API. A device without identity gets an ID (or O(agent_id)), a key, a
    self-signed certificate (or one the API issues for a CSR) uploaded and swapped in by atomic
    rename only after the registry accepted it; rotation keeps the ID; an interrupted run
    converges on the next one. A valid identity that is not due costs no network call.
  - B(config) - the agent's files in the identity directory (C(agent.env) with
    C(SSL_CERT_FILE) when the agent must trust a private CA, C(server-ca.crt), the
    machine-readable record C(agent-tls.ini)) and, for O(agent_restart=systemd), a drop-in
    with C(EnvironmentFile=). A change is staged beside the live files, checked as the stock
    agent connects, and swapped in only if the check passed; otherwise the live files stay
    byte-for-byte and nothing is restarted.
  - B(restart) - right after this device's own swap, when its pair or a file it reads
    changed; the time from the upload being accepted to the restart is returned as the
    blackout.
  - B(verify) - the agent-true check (the agent's user, HOME, C(~/.mtls), trust and
    protocol; see M(autonomy_edge.fleet_mtls.mtls_check)).
  - B(confirm) - with O(confirm=heartbeat), the cloud's view of the running agent (the
    api-service's heartbeat route) - after a swap or a restart, polled until it reports the
    agent C(active) with an C(uptime) no longer than the time since then (an agent process
    started after the new pair was in place, whose certificate the cloud validated at connect),
    within O(confirm_timeout); an unchanged run asks once and reports, and restarts an agent the
    cloud shows on an identity older than the last swap. The action plugin asks from the
    controller when it holds the token (O(headers), O(headers_src)); the module asks when only
    the device does (O(headers_file)).
  - Returns one O(ignore:status) row for the fleet report, also when it fails.
version_added: "1.0.0"
author:
  - fleet-mtls contributors (@autonomy-edge)
requirements:
  - python >= 3.9
  - cryptography >= 3.3
  - requests >= 2.25
extends_documentation_fragment:
  - autonomy_edge.fleet_mtls.api
  - autonomy_edge.fleet_mtls.identity
attributes:
  check_mode:
    support: full
    description:
      - Computes the whole plan (identity, configuration) without requesting an ID, uploading,
        writing or restarting; the check of the live files still runs (it changes nothing).
  diff_mode:
    support: full
    description:
      - The identity's metadata (agent ID, fingerprint, expiry, key size), never key or certificate bytes; and
        each agent file that changes (C(agent.env), C(agent-tls.ini), C(server-ca.crt), the systemd drop-in),
        before and after, also in check mode.
  platform:
    platforms: posix
    support: full
    description: Linux devices (systemd or docker for the agent, or any command).
notes:
  - Run it as root (C(become)) when O(owner) is not the connecting user, for
    O(agent_restart=systemd), and usually for C(docker).
seealso:
  - module: autonomy_edge.fleet_mtls.mtls_check
  - module: autonomy_edge.fleet_mtls.mtls_identity_info
  - module: autonomy_edge.fleet_mtls.mtls_deregister
"""

EXAMPLES = r"""
- name: Give the device its identity and point its agent at a private server CA
  autonomy_edge.fleet_mtls.mtls_identity:
    api_url: https://api.example.com
    owner: agent
    server_url: https://gate.example.com:3001
    server_ca_src: files/gate-ca.crt
    agent_restart: docker
  become: true
  register: identity

- name: Rotate now on the api-service cloud (pre-assigned ID, JSON upload, bearer token), keeping backups
  autonomy_edge.fleet_mtls.mtls_identity:
    api_url: https://api.example.com
    api_flavor: api_service
    agent_id: "07048933"
    headers_src: /run/secrets/fleet-api-headers.json
    rotate: always
    backup: true
    backup_keep: 2

- name: Give a systemd agent its environment from our own template, the key read-only
  autonomy_edge.fleet_mtls.mtls_identity:
    api_url: https://api.example.com
    owner: agent
    server_ca_src: files/gate-ca.crt
    agent_restart: systemd
    agent_env_template: templates/agent.env.j2
    key_mode: "0400"
  become: true
"""

RETURN = r"""
status:
  description:
    - The host's row of the fleet report, also when the run fails (then C(phase) and C(error)
      say where and why). Metadata only.
  returned: always
  type: dict
  contains:
    agent_id:
      description: The agent ID (the certificate CN).
      type: str
    action:
      description: C(created), C(rotated), C(restored), C(repaired), C(unchanged) (what the identity phase did).
      type: str
    reason:
      description: Why, for humans.
      type: str
    audit:
      description: C(missing), C(broken), C(due) or C(valid) before this run.
      type: str
    fingerprint_sha256:
      description: SHA-256 of the certificate (DER).
      type: str
    serial:
      description: Certificate serial number (hex).
      type: str
    not_before:
      description: Start of validity (ISO 8601 UTC).
      type: str
    not_after:
      description: End of validity (ISO 8601 UTC).
      type: str
    days_left:
      description: Whole days until expiry.
      type: int
    renew_after:
      description: When the next rotation is due (ISO 8601 UTC).
      type: str
    key_size:
      description: RSA key size.
      type: int
    replaces:
      description:
        - The ID the identity ledger held for this host when the registry answered that it no
          longer knows it (its own unknown-ID answer to a restore); the device was enrolled
          under the new C(agent_id) instead, and the ledger records it as the replacement.
          Empty otherwise.
      type: str
    config:
      description: C(changed), C(unchanged), C(refused) (the staged check failed), or empty.
      type: str
    config_changed:
      description: Whether the agent's files were replaced.
      type: bool
    restarted:
      description: Whether the agent was restarted.
      type: bool
    blackout_ms:
      description: Milliseconds from the upload being accepted to the agent restarted with the new pair.
      type: int
    verify:
      description: C(ok), C(failed), C(skipped) or C(not run).
      type: str
    verify_failure:
      description: The check's failure class (see mtls_check).
      type: str
    verify_protocol:
      description: The protocol checked.
      type: str
    tls_version:
      description: TLS version of the check.
      type: str
    cloud:
      description:
        - The cloud's view of the running agent - C(active), C(inactive), C(unseen) (it never
          heard from it) or C(not asked) (O(confirm=none), check mode, or no answer).
      type: str
    agent_uptime_s:
      description: The agent's uptime (seconds since its process started) as of its last heartbeat.
      type: int
    heartbeat_at:
      description: When the agent sent its last heartbeat (its own ISO time).
      type: str
    takeover:
      description: The evidence that a device held the ID, overridden by O(agent_id_takeover=true); else empty.
      type: str
    keygen:
      description:
        - How this run's new key was made on the device - C(background) (the role's first pass,
          M(autonomy_edge.fleet_mtls.mtls_prekey)) or C(inline) (by this call); empty when it made no key.
      type: str
    keygen_ms:
      description:
        - Wall milliseconds the new key's making took on the device (background - from its process's start
          to the key staged; inline - the generation). The slowest device's figure is a fleet run's floor.
      type: int
    keygen_wait_ms:
      description: Milliseconds this call waited for a key still being made in the background (null for inline).
      type: int
    phase:
      description: The phase that failed (identity, config, restart, verify, confirm), or empty.
      type: str
    error:
      description: The failure, once.
      type: str
    checked_at:
      description: When (ISO 8601 UTC).
      type: str
  sample:
    agent_id: "07048933"
    action: rotated
    config: unchanged
    restarted: true
    blackout_ms: 412
    verify: ok
    phase: ""
agent_id:
  description: The agent ID (the certificate CN); null in check mode before an ID is issued.
  returned: success
  type: str
  sample: "07048933"
action:
  description: As O(ignore:status.action).
  returned: success
  type: str
  sample: unchanged
fingerprint_sha256:
  description: SHA-256 fingerprint of the certificate (DER), lower-case hex.
  returned: success
  type: str
  sample: 9c5fc7f7ab60d3a5e0b1c6a8e2c4d1f09a7b3e5d2c8f4a6b0e9d7c5a3b1f2e4d
not_after:
  description: End of validity (ISO 8601, UTC).
  returned: success
  type: str
  sample: "2027-11-27T17:00:02Z"
reason:
  description: Why the identity phase did what it did, for humans.
  returned: success
  type: str
  sample: certificate valid for 364 more days
serial:
  description: Serial number of the certificate (hex).
  returned: success
  type: str
  sample: 3A5F0C9B2D4E6F8011223344556677889900AABB
not_before:
  description: Start of validity (ISO 8601, UTC).
  returned: success
  type: str
  sample: "2026-11-27T16:55:02Z"
days_left:
  description: Whole days until the certificate expires.
  returned: success
  type: int
  sample: 364
key_size:
  description: RSA key size in bits.
  returned: success
  type: int
  sample: 4096
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
backup_files:
  description: Backups made by O(backup=true) during this run.
  returned: when backups were made
  type: list
  elements: str
  sample: ["/home/agent/.mtls/client.key.20261127T170002Z.bak"]
backups_removed:
  description: Older backups removed during this run, beyond the newest O(backup_keep) pairs.
  returned: when backups were removed
  type: list
  elements: str
  sample: ["/home/agent/.mtls/client.key.20250101T000000Z.bak"]
registry_uncertain:
  description: The registry may not hold the certificate on the device; a journal makes the next run converge.
  returned: failure
  type: bool
  sample: false
confirmation:
  description:
    - The question handed over to the controller (O(confirm_by=controller)) - C(agent_id),
      C(since_s) (seconds from the swap or restart, or since the pair in place was swapped in,
      to the module's end), C(wait) (poll, or ask once), C(reference).
  returned: when the controller asks the cloud
  type: dict
  sample: {agent_id: "07048933", since_s: 0.41, wait: true, reference: the swap}
headers_needed:
  description:
    - With O(headers_withheld=true), what this run would have asked the API for (a creation, a rotation, an
      upload, an interrupted transaction to resolve); nothing was changed. The action plugin sends the headers and
      runs the module again.
  returned: when the run needs the headers it was not given
  type: str
  sample: rotated
headers_dir_removed:
  description:
    - Whether the module removed the action plugin's temporary directory of the headers file (then empty), which
      the action plugin then does not remove with a command of its own; the action plugin drops this key.
  returned: when the action plugin sent the headers
  type: bool
  sample: true
installed_packages:
  description: Packages the action plugin installed before running the module again.
  returned: when it installed them
  type: list
  elements: str
  sample: [python3-cryptography]
files:
  description: Mode and owner of the directory, key and certificate as found at the end of the run.
  returned: success
  type: dict
  sample:
    key: {mode: "0600", owner: agent, group: agent, uid: 1000, gid: 1000}
missing_libraries:
  description: The device libraries that are missing (the action plugin can install them).
  returned: when a library is missing
  type: list
  elements: str
  sample: [cryptography]
diff:
  description:
    - The identity's metadata before and after (never key or certificate bytes), as one dict; when agent files
      change, a list of that dict followed by each file's before and after text.
  returned: success
  type: raw
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import runner
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.api import REQUESTS_IMPORT_ERROR
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.certinfo import CRYPTOGRAPHY_IMPORT_ERROR
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.options import argument_spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    missing = [name for name, error in (("cryptography", CRYPTOGRAPHY_IMPORT_ERROR),
                                        ("requests", REQUESTS_IMPORT_ERROR)) if error is not None]
    if missing:
        module.fail_json(msg=missing_required_lib(" and ".join(missing)), missing_libraries=missing,
                         status=runner.failure_row("preflight", missing_required_lib(" and ".join(missing))))
    if not module.params["validate_certs"]:
        module.warn(runner.VALIDATE_CERTS_OFF)
    outcome = runner.run(module)
    if outcome.failed:
        # Outside any except block: ansible-core would otherwise attach a traceback.
        module.fail_json(msg=outcome.msg, **outcome.result)
    module.exit_json(**outcome.result)


if __name__ == "__main__":
    main()
