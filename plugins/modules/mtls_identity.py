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
options:
  api_url:
    description: Base URL of the provisioning API, C(https://) only.
    type: str
    required: true
  id_endpoint:
    description: Endpoint (GET) that reserves a new agent ID.
    type: str
    default: /generate-orchestrator-id
  upload_endpoint:
    description:
      - Endpoint (POST) that registers a certificate (the cloud's is C(/agent/certificate), O(upload_format=json)).
    type: str
    default: /upload-orchestrator-certificate
  enroll_endpoint:
    description: Endpoint (POST) that issues a certificate for a CSR (O(enrollment=csr)).
    type: str
    default: /orchestrators/enroll
  upload_format:
    description:
      - C(multipart) - the upstream installer's form (file field O(certificate_field), field
        O(id_field)); C(json) - C({"agent_id", "certificate"}) as the cloud's C(/agent/certificate).
    type: str
    choices: [multipart, json]
    default: multipart
  id_field:
    description: Name of the ID field in uploads. Default the format's own - C(id) (multipart), C(agent_id) (json).
    type: str
  certificate_field:
    description: Name of the certificate field in uploads.
    type: str
    default: certificate
  headers_src:
    description:
      - A JSON file on the controller of header names to values, read by the action plugin
        (so the token is never a task or module argument) and handed over as O(headers).
    type: path
  ca_src:
    description:
      - The API's CA as a file on the controller, delivered to C(<path>/api-ca.crt) (read by the action plugin).
    type: path
  ca_content:
    description:
      - The API's CA as PEM text, delivered to C(<path>/api-ca.crt) (the action plugin fills it from O(ca_src)).
    type: str
  path:
    description:
      - Identity directory. Default C(~/.mtls) of O(owner) (its home from the password
        database). Opened component by component from C(/) without following a symbolic link.
    type: str
  owner:
    description:
      - The agent's user (name or numeric ID), owner of the directory (0700), key (0600) and
        files (0644). Default the user the module runs as; another user needs root.
    type: str
  group:
    description: Group of the files. Default the primary group of O(owner).
    type: str
  agent_id:
    description:
      - A pre-assigned agent ID, a string matching O(id_pattern) (numbers are refused).
        Default - the API issues one on the first run.
    type: raw
  lost_identity:
    description:
      - What a device that lost its identity gets when the ledger knows its ID (O(ledger_id)) -
        C(restore) that ID (action C(restored)), C(new) one, or C(fail).
    type: str
    choices: [restore, new, fail]
    default: restore
  ledger_id:
    description:
      - The agent ID the controller's identity ledger holds for this host; the action plugin sets
        it from the fact M(autonomy_edge.fleet_mtls.mtls_ledger) leaves, and refuses a host that
        fact reports a conflicting ID for.
    type: str
  enrollment:
    description: C(self_signed) uploads a self-signed certificate; C(csr) has the API sign a CSR.
    type: str
    choices: [self_signed, csr]
    default: self_signed
  key_size:
    description: RSA key size in bits.
    type: int
    default: 4096
  subject:
    description: Subject attributes of the certificate; the CN is always the agent ID.
    type: dict
    suboptions:
      C: {description: Country., type: str, default: BR}
      ST: {description: State., type: str, default: SP}
      L: {description: Locality., type: str, default: SaoPaulo}
      O: {description: Organization., type: str, default: AutonomyLogic}
      OU: {description: Organizational unit., type: str, default: Development}
  valid_days:
    description: Validity of a new certificate in days.
    type: int
    default: 365
  rotate:
    description: C(auto) rotates when due or broken; C(always) now (the ID is kept); C(never) only reports.
    type: str
    choices: [auto, always, never]
    default: auto
  renew_before_days:
    description: Rotate when fewer than this many days are left.
    type: int
    default: 30
  renew_jitter_days:
    description:
      - Added to O(renew_before_days) by the action plugin as a stable per-host offset of 0 to
        this many days (from the inventory host name), so a fleet does not rotate on one day.
    type: int
    default: 0
  backup:
    description: Keep hard-linked copies (C(<name>.<UTC time>.bak)) of the previous key and certificate.
    type: bool
    default: false
  max_clock_skew:
    description:
      - Seconds the device clock may differ from the API's C(Date) before the module refuses
        to mint or rotate (the certificate would not be valid for the server).
    type: int
    default: 600
  install_prerequisites:
    description:
      - When the device lacks C(cryptography) or C(requests), the action plugin installs
        O(prerequisite_packages) and runs the module again.
    type: bool
    default: false
  prerequisite_packages:
    description: OS packages providing the libraries.
    type: list
    elements: str
    default: []
  server_url:
    description:
      - Where the agent connects (C(https://host[:port])). The stock agent has its server in
        its code; give the same one. Default O(api_url).
    type: str
  server_ca:
    description: The server's CA as a path on the device, or C(system).
    type: str
    default: system
  server_ca_src:
    description:
      - The server's CA as a file on the controller (read by the action plugin), delivered to C(<path>/server-ca.crt).
    type: path
  server_ca_content:
    description: The server's CA as PEM text, delivered to C(<path>/server-ca.crt).
    type: str
  agent_trust:
    description:
      - What the agent trusts - C(system) (OpenSSL's default store, no C(SSL_CERT_FILE)) or
        C(ca_file) (the server CA through C(SSL_CERT_FILE) in C(agent.env)). Default C(ca_file)
        when a server CA is given, else C(system).
    type: str
    choices: [system, ca_file]
  tls_min_version:
    description: Minimum TLS version recorded in C(agent-tls.ini).
    type: str
    choices: [TLSv1.2, TLSv1.3]
    default: TLSv1.2
  agent_config_name:
    description: File name of the settings record in the identity directory (the stock agent does not read it).
    type: str
    default: agent-tls.ini
  agent_restart:
    description:
      - C(docker) restarts O(agent_container) and checks that it mounts the identity read-only at
        C(<agent_container_home>/.mtls) with the right C(SSL_CERT_FILE); C(systemd) restarts
        O(agent_service) (after a daemon-reload when its drop-in changed); C(command) runs
        O(agent_restart_command) without a shell; C(none) restarts nothing.
      - A method that restarted nothing (no docker command, no such container) is fine for a new
        device; after a rotation it fails (owed to the next run) unless O(confirm=heartbeat),
        where the cloud's answer decides.
    type: str
    choices: [docker, systemd, command, none]
    default: none
  agent_container:
    description: The agent's container.
    type: str
    default: orchestrator_agent
  agent_container_home:
    description: HOME of the agent inside its container.
    type: str
    default: /root
  docker_command:
    description: The docker command (C(podman) is compatible).
    type: str
    default: docker
  agent_service:
    description: The agent's systemd unit.
    type: str
    default: orchestrator-agent
  agent_restart_command:
    description: The command of O(agent_restart=command).
    type: str
    default: ""
  verify:
    description: Check the connection as the stock agent makes it (and a new configuration before it is swapped in).
    type: bool
    default: true
  verify_unchanged:
    description: Also check when nothing changed.
    type: bool
    default: true
  verify_protocol:
    description:
      - C(websocket) - the upgrade of C(/ws); C(socketio) - Engine.IO + CONNECT under
        C(/socket.io/), as the stock agent; C(https) - a GET (an HTTP status, no certificate verdict).
    type: str
    choices: [websocket, socketio, https]
    default: websocket
  verify_url:
    description: A full URL to check instead of O(server_url) and the protocol's path.
    type: str
  verify_timeout:
    description: Total seconds of one check.
    type: float
    default: 10
  verify_status_code:
    description: Statuses that count as success with O(verify_protocol=https).
    type: list
    elements: int
    default: [200]
  verify_retries:
    description: Retries of a check that was refused or could not connect (a registry may take a moment).
    type: int
    default: 0
  verify_delay:
    description: Seconds between those retries.
    type: float
    default: 3
  confirm:
    description:
      - C(heartbeat) - the cloud confirms the running agent (see the description); a host whose
        agent it does not confirm fails with what the cloud said (C(404 never seen),
        C(inactive since <time>), C(active but started before the swap)).
      - C(none) - the cloud is not asked; a restart method that restarted nothing (no docker
        command, no such container) then fails a rotation, unless O(agent_restart=none).
      - Default C(heartbeat) for the api-service deployment (O(upload_format=json) to
        C(/agent/certificate), which has the heartbeat route), C(none) otherwise.
    type: str
    choices: [heartbeat, none]
  confirm_timeout:
    description: Seconds to wait for the cloud to confirm the agent after a swap or a restart (its reconnect time).
    type: float
    default: 90
  confirm_endpoint:
    description: The heartbeat route (POST, JSON C({"agent_id"}), bearer token).
    type: str
    default: /agent/heartbeat
  confirm_stale_minutes:
    description:
      - With O(audit=true), an agent the cloud has not heard from for longer than this (or
        never) fails the audit.
    type: int
    default: 10
  agent_id_takeover:
    description:
      - A creation with a pre-assigned O(agent_id) (or re-keying a device as another ID) first
        asks the cloud whether a device holds it (its agent active or seen); such an ID is
        refused before any key or upload. C(true) takes it over (this host replaces dead
        hardware); the report records the evidence overridden (C(takeover)).
    type: bool
    default: false
  confirm_by:
    description:
      - Who asks the cloud - C(module), or C(controller) (the action plugin sets it when it holds
        the token; the module then hands the question over in O(ignore:confirmation)).
    type: str
    choices: [module, controller]
    default: module
  cloud_view:
    description:
      - The cloud's view of this host's agent ID, asked by the action plugin before the module
        ran (when it holds the token and knows the ID). Set by the action plugin.
    type: dict
  audit:
    description:
      - A read-only audit (the role's C(audit) entry point, in check mode) - the cloud is still
        asked (a read), and silent agents (O(confirm_stale_minutes)) fail.
    type: bool
    default: false
  metrics_dir:
    description:
      - A node_exporter textfile-collector directory; the run writes C(fleet_mtls.prom) there
        (expiry, last success, last rotation), atomically, 0644.
    type: path
  host:
    description: The inventory name of this device (the action plugin sets it), the metrics' C(host) label.
    type: str
  phases:
    description: The phases to run; the role derives them from the tags of the run.
    type: list
    elements: str
    choices: [identity, config, verify]
    default: [identity, config, verify]
  option_names:
    description: C(role) makes messages name the role's variables instead of these options.
    type: str
    choices: [module, role]
    default: module
attributes:
  check_mode:
    support: full
    description:
      - Computes the whole plan (identity, configuration) without requesting an ID, uploading,
        writing or restarting; the check of the live files still runs (it changes nothing).
  diff_mode:
    support: full
    description: Metadata only (agent ID, fingerprint, expiry, key size), never key or certificate bytes.
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

- name: Rotate now (the agent ID is kept), keeping backups of the previous pair
  autonomy_edge.fleet_mtls.mtls_identity:
    api_url: https://api.example.com
    upload_endpoint: /agent/certificate
    upload_format: json
    headers_src: /run/secrets/fleet-api-headers.json
    rotate: always
    backup: true
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
  description: Metadata before and after; never key or certificate bytes.
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import runner
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.api import REQUESTS_IMPORT_ERROR
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.certs import CRYPTOGRAPHY_IMPORT_ERROR
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.options import argument_spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    missing = [name for name, error in (("cryptography", CRYPTOGRAPHY_IMPORT_ERROR),
                                        ("requests", REQUESTS_IMPORT_ERROR)) if error is not None]
    if missing:
        module.fail_json(msg=missing_required_lib(" and ".join(missing)), missing_libraries=missing,
                         status=runner.failure_row("preflight", missing_required_lib(" and ".join(missing))))
    if not module.params["validate_certs"]:
        module.warn("validate_certs is false: the API server is not authenticated, so a man in "
                    "the middle could register its own certificate for this device")
    outcome = runner.run(module)
    if outcome.failed:
        # Outside any except block: ansible-core would otherwise attach a traceback.
        module.fail_json(msg=outcome.msg, **outcome.result)
    module.exit_json(**outcome.result)


if __name__ == "__main__":
    main()
