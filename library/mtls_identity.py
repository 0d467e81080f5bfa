#!/usr/bin/python
# -*- coding: utf-8 -*-
# fleet-mtls: give an edge device a cloud-registered mTLS identity.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: mtls_identity
short_description: Ensure a device holds a valid, cloud-registered mTLS client identity
description:
  - Makes sure the device holds an RSA private key and a client certificate whose CN is the
    device's agent ID, registered with the provisioning API, and rotates them when due.
  - A device without identity gets a new ID from O(id_endpoint) (unless O(agent_id) is given),
    a key generated on the device, a self-signed certificate (or one issued for a CSR when
    O(enrollment=csr)), uploaded to O(upload_endpoint).
  - Rotation keeps the agent ID from the existing certificate. A new ID is requested only when
    the device has no identity; when the ID cannot be recovered the module fails and says how
    to proceed instead of enrolling a new device.
  - The new key and certificate are staged in the directory (the key is mode 0600 from its
    first byte), uploaded, and swapped in by atomic rename only after the registry accepted
    them. A failure before that leaves the previous identity byte-for-byte intact; a run
    interrupted at any point converges on the next run.
  - A valid, matching identity that is not due makes no network call and generates no key.
  - Before anything is minted or rotated, the device clock is compared with the API server's
    C(Date); when they differ by more than 10 minutes the module refuses and says by how much
    (a certificate made on a clock that is ahead is refused as not yet valid).
  - A failure after the identity part (writing O(agent_config)) still returns RV(action),
    RV(agent_id) and the certificate's facts.
  - The private key never appears in results, diffs, warnings or error messages.
version_added: "1.0.0"
author:
  - fleet-mtls contributors
requirements:
  - python >= 3.9
  - cryptography >= 3.3
  - requests >= 2.25
options:
  path:
    description:
      - Identity directory holding C(client.key) and C(client.crt).
      - When not set, C(~/.mtls) of the user the module runs as (home from the password
        database of the device).
      - Symbolic links are refused for the directory, the key and the certificate, and so is
        a directory owned by a user other than the running user, O(owner) or root.
    type: path
  owner:
    description:
      - Owner of the directory (0700), key (0600) and certificate (0644). Name or numeric ID.
      - Defaults to the user the module runs as.
    type: str
  group:
    description:
      - Group of the directory, key and certificate. Defaults to the primary group of
        O(owner), or the running group.
    type: str
  api_url:
    description:
      - Base URL of the provisioning API, for example C(https://api.example.com). Must be
        C(https).
    type: str
    required: true
  id_endpoint:
    description: Endpoint (GET) that reserves a new agent ID.
    type: str
    default: /generate-orchestrator-id
  upload_endpoint:
    description: Endpoint (POST) that registers a certificate for an ID.
    type: str
    default: /upload-orchestrator-certificate
  enroll_endpoint:
    description: Endpoint (POST) that issues a certificate for a CSR (O(enrollment=csr)).
    type: str
    default: /orchestrators/enroll
  upload_format:
    description:
      - C(multipart) sends a form with the file field O(certificate_field) and the field
        O(id_field); C(json) sends a JSON object with the keys O(id_field) and O(certificate_field).
    type: str
    choices: [multipart, json]
    default: multipart
  id_field:
    description:
      - Name of the ID field in uploads and enrollments.
      - When not set, the field of O(upload_format) - C(id) for C(multipart) (the installer's
        form), C(agent_id) for C(json) (the cloud's C({"agent_id", "certificate"}) body);
        enrollments are multipart and send C(id).
    type: str
  certificate_field:
    description: Name of the certificate field in uploads.
    type: str
    default: certificate
  headers:
    description:
      - Extra request headers, for example C(Authorization) with a bearer token.
      - Their values never appear in results, warnings or errors.
      - ansible-core's C(ANSIBLE_DEBUG) output prints every module argument, C(no_log) or
        not. The C(mtls_identity) action plugin shipped with this module therefore never
        passes O(headers) to the module. It writes them to a file in Ansible's remote
        temporary directory (readable only by the user the module runs as, removed after the
        task) and passes its path as O(headers_file).
    type: dict
    default: {}
  headers_file:
    description:
      - Path, on the device, of a JSON object of header name to string value (for example
        the key C(Authorization) with the value C(Bearer <token>)), read by the module when
        it runs. Merged over O(headers) (a name present in both, compared
        case-insensitively, takes the file's value).
      - Keeps a token off the module's arguments. Provision it yourself (mode 0600 or 0400,
        readable by the user the module runs as), for example from your secret store.
      - The file must be a regular file of at most 64 KiB; a symbolic link is refused.
        Errors name the file and what is wrong with it, never its content.
      - Through the action plugin, setting both O(headers) (non-empty) and O(headers_file)
        fails (put all the headers in the file).
    type: path
  agent_id:
    description:
      - Pre-assigned agent ID; no ID is requested from the API.
      - Must be a string matching O(id_pattern); a number (an unquoted ID an inventory turned
        into an int or float) is refused, never converted.
      - When the certificate on the device is for another ID the module fails, unless
        O(rotate=always), which re-keys the device as O(agent_id).
    type: raw
  id_pattern:
    description:
      - Regular expression an agent ID must match in full (IDs from the API, O(agent_id) and
        the certificate CN). IDs are also always limited to ASCII letters, digits, C(.), C(_)
        and C(-), without C(..).
    type: str
    default: ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$
  enrollment:
    description:
      - C(self_signed) uploads a self-signed certificate; C(csr) sends a CSR to
        O(enroll_endpoint) and installs the certificate it returns after checking that it
        parses, has CN = agent ID, matches the key and is usable for TLS client auth.
      - Changing it rotates the identity.
    type: str
    choices: [self_signed, csr]
    default: self_signed
  key_size:
    description: RSA key size in bits (at least 2048). A key of another size is rotated.
    type: int
    default: 4096
  subject:
    description:
      - Subject attributes of the certificate; the CN is always the agent ID. A self-signed
        certificate with another subject is rotated.
    type: dict
    suboptions:
      C:
        description: Country (two letters).
        type: str
        default: BR
      ST:
        description: State or province.
        type: str
        default: SP
      L:
        description: Locality.
        type: str
        default: SaoPaulo
      O:
        description: Organization.
        type: str
        default: AutonomyLogic
      OU:
        description: Organizational unit.
        type: str
        default: Development
  valid_days:
    description:
      - Validity of a new certificate in days (notBefore is backdated 5 minutes).
      - With O(enrollment=csr) the CA decides; an issued lifetime that differs is warned about.
    type: int
    default: 365
  rotate:
    description:
      - C(auto) rotates when the certificate expires within O(renew_before_days), is expired,
        or the key is missing, unreadable, of another size, does not match, or has more than one
        hard link (a copy may be readable elsewhere).
      - C(always) rotates on every run (keeping the agent ID).
      - C(never) never rotates a healthy identity, even when due (a warning says so), and
        fails on a broken one instead of re-keying it.
    type: str
    choices: [auto, always, never]
    default: auto
  renew_before_days:
    description:
      - Rotate when the certificate expires in fewer days than this.
      - When a CA-issued certificate (O(enrollment=csr)) is not valid longer than this, it is
        renewed once a third of its issued lifetime is left instead, with a warning.
    type: int
    default: 30
  ca_path:
    description: CA bundle to verify the API server with (a private CA). Defaults to the system trust store.
    type: path
  validate_certs:
    description:
      - Verify the API server certificate. Only set to V(false) for throw-away tests; the
        module warns when it is off.
    type: bool
    default: true
  timeout:
    description: Timeout of each request in seconds.
    type: float
    default: 30
  retries:
    description:
      - Retries after connection errors, timeouts, HTTP 429 and 5xx, with exponential backoff
        and jitter (Retry-After honoured, up to 30 s). Other answers are never retried.
    type: int
    default: 3
  backup:
    description:
      - Before a rotation replaces them, keep the previous key and certificate as hard links
        C(client.key.<timestamp>.bak) and C(client.crt.<timestamp>.bak).
    type: bool
    default: false
  agent_config:
    description:
      - Content of the agent's configuration file, written in the identity directory as
        O(agent_config_name) (mode C(0644), owner as the identity) once the identity is in
        place, atomically and only when it differs. It must not hold a private key.
      - Lets a role write the configuration in the same module run as the identity instead of
        a separate template task (two more module runs per device).
    type: str
  agent_config_name:
    description: File name of O(agent_config) inside the identity directory.
    type: str
    default: agent-tls.ini
attributes:
  check_mode:
    description: Computes the action, the reason and the diff; requests no ID, uploads nothing, writes nothing.
    support: full
  diff_mode:
    description: Shows agent_id, fingerprint_sha256, not_after and key_size before and after.
    support: full
  platform:
    description: POSIX hosts (uses C(flock), C(O_NOFOLLOW) and directory file descriptors).
    platforms: posix
notes:
  - Concurrent runs on one directory are serialised by an exclusive lock; the second one waits
    and then finds the fresh identity (C(unchanged)).
  - Files the module may keep in the directory besides C(client.key) and C(client.crt) are
    C(.client.key.new) and C(.client.crt.new) (staging during a run), C(.client.crt.copy) (a
    fresh copy replacing a hard-linked certificate), C(.mtls-pending.json),
    a journal without secrets recording that the registry may not hold the current certificate,
    and O(agent_config_name) (staged as C(.<name>.new)) when O(agent_config) is set.
seealso:
  - module: mtls_identity_info
"""

EXAMPLES = r"""
- name: Ensure the device holds a registered mTLS identity
  mtls_identity:
    api_url: https://api.example.com

- name: Enroll with a pre-assigned ID through the JSON endpoint with a bearer token
  mtls_identity:
    api_url: https://registry.example.com
    agent_id: "07048933"
    upload_format: json
    upload_endpoint: /agent/certificate
    headers:
      Authorization: "Bearer {{ registry_token }}"
    owner: agent
    path: /home/agent/.mtls

- name: Enroll with a bearer token the device already holds in a root-provisioned file
  mtls_identity:
    api_url: https://registry.example.com
    upload_format: json
    upload_endpoint: /agent/certificate
    headers_file: /etc/fleet/api-headers.json

- name: Enroll through a CSR, trusting a private CA for the API
  mtls_identity:
    api_url: https://api.example.com
    enrollment: csr
    ca_path: /etc/fleet/api-ca.crt

- name: Rotate now, keeping the previous key and certificate as backups
  mtls_identity:
    api_url: https://api.example.com
    rotate: always
    backup: true
  register: identity

- name: Show the identity
  ansible.builtin.debug:
    msg: "{{ identity.agent_id }} {{ identity.action }}: {{ identity.reason }}"
"""

RETURN = r"""
agent_id:
  description:
    - The device's agent ID (the certificate CN).
    - In check mode on a device without identity and without O(agent_id) it is null, since no
      ID is requested.
  returned: success, and when a step after the identity part failed
  type: str
  sample: "07048933"
action:
  description:
    - C(created) (new identity), C(rotated) (new key and certificate, same ID),
      C(repaired) (permissions or owner fixed, or the current certificate uploaded again),
      C(unchanged).
  returned: success, and when a step after the identity part failed
  type: str
  sample: unchanged
reason:
  description: Why the module took that action, for humans.
  returned: success
  type: str
  sample: certificate expires in 12 days (renew_before_days=30)
fingerprint_sha256:
  description:
    - SHA-256 fingerprint of the certificate (DER), lower-case hex without separators.
    - In check mode, that of the certificate currently on the device (null when none).
  returned: success
  type: str
  sample: 9c5fc7f7ab60d3a5e0b1c6a8e2c4d1f09a7b3e5d2c8f4a6b0e9d7c5a3b1f2e4d
serial:
  description: Serial number of the certificate, upper-case hex.
  returned: success
  type: str
  sample: 3A5F0C9B2D4E6F8011223344556677889900AABB
not_before:
  description: Start of validity (ISO 8601, UTC).
  returned: success
  type: str
  sample: "2026-11-27T16:55:02Z"
not_after:
  description: End of validity (ISO 8601, UTC).
  returned: success
  type: str
  sample: "2027-11-27T17:00:02Z"
days_left:
  description: Whole days until the certificate expires (negative when expired).
  returned: success
  type: int
  sample: 364
key_size:
  description: RSA key size of the certificate in bits.
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
  sample: ["/home/agent/.mtls/client.key.20261127T170002Z.bak", "/home/agent/.mtls/client.crt.20261127T170002Z.bak"]
files:
  description:
    - Mode, owner and group of the directory, the key and the certificate as the module finds
      them on the file system at the end of the run (null for a missing file; empty in check
      mode when the directory does not exist yet).
  returned: success
  type: dict
  sample:
    directory: {mode: "0700", owner: agent, group: agent, uid: 1000, gid: 1000}
    key: {mode: "0600", owner: agent, group: agent, uid: 1000, gid: 1000}
    cert: {mode: "0644", owner: agent, group: agent, uid: 1000, gid: 1000}
agent_config_changed:
  description: Whether O(agent_config) was written (or would be, in check mode).
  returned: when O(agent_config) is set
  type: bool
  sample: false
changed:
  description: Whether anything changed (or would change, in check mode).
  returned: always
  type: bool
  sample: false
diff:
  description:
    - Metadata before and after (agent_id, fingerprint_sha256, not_after, key_size); never
      key or certificate bytes. In check mode the new fingerprint is a placeholder.
  returned: success
  type: dict
  sample:
    before: {agent_id: "07048933", fingerprint_sha256: 9c5f..., not_after: "2026-12-10T00:00:00Z", key_size: 4096}
    after: {agent_id: "07048933", fingerprint_sha256: 5815..., not_after: "2027-11-27T17:00:02Z", key_size: 4096}
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.api import (
    DEFAULTS,
    REQUESTS_IMPORT_ERROR,
    UPLOAD_FORMATS,
    ProvisioningClient,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.certs import CRYPTOGRAPHY_IMPORT_ERROR
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import IdentityError, fail_when_missing
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.fsutil import expand_path
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.headers import merge_headers, read_headers_file

SUBJECT_OPTIONS = {
    "C": {"type": "str", "default": "BR"},
    "ST": {"type": "str", "default": "SP"},
    "L": {"type": "str", "default": "SaoPaulo"},
    "O": {"type": "str", "default": "AutonomyLogic"},
    "OU": {"type": "str", "default": "Development"},
}


def argument_spec():
    return {
        "path": {"type": "path"},
        "owner": {"type": "str"},
        "group": {"type": "str"},
        "api_url": {"type": "str", "required": True},
        # The contract's defaults come from api.DEFAULTS (DOCUMENTATION repeats them for
        # ansible-doc; a unit test keeps the two equal).
        "id_endpoint": {"type": "str", "default": DEFAULTS["id_endpoint"]},
        "upload_endpoint": {"type": "str", "default": DEFAULTS["upload_endpoint"]},
        "enroll_endpoint": {"type": "str", "default": DEFAULTS["enroll_endpoint"]},
        "upload_format": {"type": "str", "default": DEFAULTS["upload_format"], "choices": list(UPLOAD_FORMATS)},
        "id_field": {"type": "str"},  # None: the field of upload_format (api.ID_FIELDS)
        "certificate_field": {"type": "str", "default": DEFAULTS["certificate_field"]},
        "headers": {"type": "dict", "default": {}, "no_log": True},
        "headers_file": {"type": "path"},
        "agent_id": {"type": "raw"},
        "id_pattern": {"type": "str", "default": DEFAULTS["id_pattern"]},
        "enrollment": {"type": "str", "default": "self_signed", "choices": ["self_signed", "csr"]},
        "key_size": {"type": "int", "default": 4096},
        "subject": {"type": "dict", "options": SUBJECT_OPTIONS, "apply_defaults": True},
        "valid_days": {"type": "int", "default": 365},
        "rotate": {"type": "str", "default": "auto", "choices": ["auto", "always", "never"]},
        "renew_before_days": {"type": "int", "default": 30},
        "ca_path": {"type": "path"},
        "validate_certs": {"type": "bool", "default": DEFAULTS["validate_certs"]},
        "timeout": {"type": "float", "default": DEFAULTS["timeout"]},
        "retries": {"type": "int", "default": DEFAULTS["retries"]},
        "backup": {"type": "bool", "default": False},
        "agent_config": {"type": "str"},
        "agent_config_name": {"type": "str", "default": "agent-tls.ini"},
    }


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    fail_when_missing(module, ("cryptography", CRYPTOGRAPHY_IMPORT_ERROR), ("requests", REQUESTS_IMPORT_ERROR))

    # Imported here: identity pulls in cryptography, which is checked above.
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.agent import (
        check_agent_config,
        ensure_agent_config,
    )
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import Settings, ensure_identity

    p = module.params
    if not p["validate_certs"]:
        module.warn("validate_certs is false: the API server is not authenticated, so a "
                    "man in the middle could register its own certificate for this device")

    headers = p["headers"]

    def client_factory():
        return ProvisioningClient(
            p["api_url"], id_endpoint=p["id_endpoint"], upload_endpoint=p["upload_endpoint"],
            enroll_endpoint=p["enroll_endpoint"], upload_format=p["upload_format"],
            id_field=p["id_field"], certificate_field=p["certificate_field"],
            headers=headers, ca_path=p["ca_path"], validate_certs=p["validate_certs"],
            timeout=p["timeout"], retries=p["retries"], id_pattern=p["id_pattern"],
        )

    error = result = None
    try:
        if p["headers_file"]:
            file_headers = read_headers_file(p["headers_file"])
            # Masked in anything the module returns, as no_log masks the values of `headers`
            # (short values aside: masking "1" would mangle every number in the result).
            module.no_log_values.update(v for v in file_headers.values() if len(v) >= 4)
            headers = merge_headers(headers, file_headers)
        settings = Settings(
            path=p["path"], owner=p["owner"], group=p["group"], agent_id=p["agent_id"],
            id_pattern=p["id_pattern"], enrollment=p["enrollment"], key_size=p["key_size"],
            subject=p["subject"], valid_days=p["valid_days"], rotate=p["rotate"],
            renew_before_days=p["renew_before_days"], backup=p["backup"],
        )
        check_agent_config(p["agent_config"], p["agent_config_name"])
        # Validate the network options even when no call is needed (opens no connection).
        client_factory().close()
        result, _warnings = ensure_identity(settings, client_factory, check_mode=module.check_mode,
                                            warn=module.warn)
        if p["agent_config"] is not None:
            # Written once the identity it points at is in place (one module call per host).
            written = ensure_agent_config(settings, p["agent_config_name"], p["agent_config"],
                                          check_mode=module.check_mode)
            result["agent_config_changed"] = written
            result["changed"] = result["changed"] or written
    except IdentityError as exc:
        error = exc
    if error is not None:
        # Outside the except block: ansible-core would otherwise attach a traceback.
        module.fail_json(**failure(error, result, p))
    module.exit_json(**result)


def failure(error, identity_result, params):
    """fail_json's arguments. When the identity part already ran, its result is reported with
    the failure of the step after it: a new ID or key may be in place and registered."""
    if identity_result is None:
        return {"msg": error.msg, "cert_path": _safe_path(params, "client.crt"),
                "key_path": _safe_path(params, "client.key"),
                "registry_uncertain": getattr(error, "registry_uncertain", False)}
    reported = dict(identity_result, agent_config_changed=False, registry_uncertain=False)
    reported["msg"] = "%s; the identity part succeeded (%s, agent %s, certificate %s)" % (
        error.msg, identity_result["action"], identity_result["agent_id"],
        identity_result["fingerprint_sha256"])
    return reported


def _safe_path(params, name):
    try:
        return os.path.join(expand_path(params["path"]), name)
    except IdentityError:
        return None


if __name__ == "__main__":
    main()
