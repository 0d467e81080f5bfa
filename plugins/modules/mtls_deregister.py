#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: mtls_deregister
short_description: Decommission a device - delete its agent ID on the server, then its local identity
description:
  - Does the whole job on the device in one call. Reads the identity in O(path) (the agent ID
    is the certificate's CN), refuses unless O(confirm) is that ID or C(all), sends
    C(DELETE {api_url}{endpoint}) with C({id}) replaced by the ID, and only when the server
    confirmed removes the files the bundle manages from the directory, then the directory when
    nothing else is left in it.
  - The server confirmed when it answered the contract's proof of deletion (a 2xx whose JSON
    has a 2xx C(statusCode) and a C(data) object whose C(id) is the ID), or 404/410 with the
    registry's own "unknown ID" answer (statusCode 404 and the message C(unknown ID <id>), or
    statusCode 410 and C(ID <id> was already decommissioned)). Any other answer - API down,
    5xx after the retries, a wrong token (403), a 404 of a mistyped O(endpoint), a 2xx that
    does not name the ID (quoted in the error) - fails with the server's answer and leaves
    every file as it was.
  - O(local_only=true) wipes the local identity without asking the server (the registry keeps
    the ID); the result says so.
  - Removed - C(client.key), C(client.crt), their backups C(client.key.*.bak) and
    C(client.crt.*.bak), the journal C(.mtls-pending.json), staged C(.<name>.new) files,
    C(agent-tls.ini), C(agent.env), C(api-ca.crt), C(server-ca.crt). Nothing else is touched.
    The directory is opened component by component from C(/) as M(autonomy_edge.fleet_mtls.mtls_identity) does (no
    symbolic link at any depth); files are unlinked through its descriptor, never through a link.
  - Its action plugin keeps O(headers) (the bearer token) off the module's arguments, as for
    M(autonomy_edge.fleet_mtls.mtls_identity), so not even C(ANSIBLE_DEBUG=1) prints them.
version_added: "1.0.0"
author:
  - fleet-mtls contributors (@autonomy-edge)
requirements:
  - python >= 3.9
  - cryptography >= 3.3
  - requests
extends_documentation_fragment:
  - autonomy_edge.fleet_mtls.api
options:
  path:
    description:
      - The identity directory. Default - C(~/.mtls) of O(owner) (home from the password database).
    type: str
  owner:
    description: The agent's user (owner of the identity). Default - the user the module runs as.
    type: str
  api_url:
    description:
      - Base URL of the provisioning API, C(https://) only (for example C(https://api.autonomylogic.com)).
        Required unless O(local_only=true).
    type: str
  confirm:
    description:
      - Must be the device's agent ID (the certificate's CN), or C(all) to decommission whatever
        identity the device holds. Nothing is deleted otherwise.
    type: str
    required: true
  local_only:
    description:
      - Remove the local identity without deleting the ID on the server (the registry keeps it).
    type: bool
    default: false
  endpoint:
    description:
      - Deletion path, C({id}) replaced by the agent ID, for example C(/orchestrators/{id}).
        Required unless O(local_only=true).
    type: str
  ca_in_dir:
    description:
      - Verify the API with C(api-ca.crt) in the identity directory (the copy the role makes of
        C(mtls_api_ca_src)) instead of O(ca_path).
    type: bool
    default: false
  api_flavor:
    description:
      - The deployment the API is (C(legacy), C(enroll), C(api_service)); what the default of
        O(cloud_check) and O(confirm_endpoint) follow.
    type: str
    choices: [legacy, enroll, api_service]
    default: legacy
  cloud_check:
    description:
      - C(heartbeat) - once the server confirmed the deletion, ask the cloud's heartbeat route
        about the ID; an agent it still sees C(active) is reported (a warning, the reason and
        the return value C(still_active)) - its session lasts until it disconnects. C(none) - do
        not ask.
      - Default the API flavor's - C(heartbeat) where the API has the heartbeat route
        (O(api_flavor=api_service)), C(none) otherwise.
    type: str
    choices: [heartbeat, none]
  confirm_endpoint:
    description:
      - Path of the heartbeat route (POST, JSON C({"agent_id"}), bearer token). Default the API
        flavor's (C(/agent/heartbeat) for C(api_service)).
    type: str
attributes:
  check_mode:
    description: Sends nothing and removes nothing; reports the action and the files it would remove.
    support: full
  diff_mode:
    description: No diff.
    support: none
  platform:
    description: POSIX hosts with Python, cryptography and requests.
    platforms: posix
    support: full
seealso:
  - module: autonomy_edge.fleet_mtls.mtls_identity
"""

EXAMPLES = r"""
- name: Decommission this device (its ID is 07048933)
  autonomy_edge.fleet_mtls.mtls_deregister:
    api_url: https://api.example.com
    endpoint: /orchestrators/{id}
    confirm: "07048933"
    owner: agent
    headers:
      Authorization: "Bearer {{ registry_token }}"

- name: Wipe the local identity only (the registry keeps the ID)
  autonomy_edge.fleet_mtls.mtls_deregister:
    confirm: all
    local_only: true
"""

RETURN = r"""
action:
  description:
    - C(decommissioned) (the server deleted the ID, or no longer knew it, and the files were
      removed), C(removed locally) (O(local_only=true)), C(absent) (no identity directory,
      O(confirm=all)), C(refused) or C(failed) (with C(failed=true); nothing was removed).
  returned: always
  type: str
  sample: decommissioned
agent_id:
  description: The device's agent ID (the certificate's CN); null when none is readable.
  returned: always
  type: str
  sample: "07048933"
http_status:
  description: HTTP status of the server's answer to the deletion (null when none was sent).
  returned: always
  type: int
  sample: 200
deleted:
  description: Whether the server deleted the ID on this run (false when it was already gone).
  returned: always
  type: bool
  sample: true
removed:
  description: Names of the files removed from the directory (would be removed, in check mode).
  returned: always
  type: list
  elements: str
  sample: [agent-tls.ini, client.crt, client.key]
directory_removed:
  description: Whether the directory itself was removed (nothing else was left in it).
  returned: always
  type: bool
  sample: true
code_cache_removed:
  description:
    - Whether the code the bundle's lean runs kept for this user (C(~/.cache/fleet-mtls/)) was removed.
    - It names no identity; it goes with the device's decommissioning so the bundle leaves nothing behind.
  returned: always
  type: bool
  sample: true
path:
  description: The identity directory.
  returned: always
  type: str
  sample: /home/agent/.mtls
reason:
  description: What happened, for humans.
  returned: success
  type: str
  sample: the server deleted 07048933
still_active:
  description: Why the cloud still sees the deleted ID's agent active (its session outlives the deletion).
  returned: when the cloud still sees it active after the deletion
  type: str
  sample: the cloud sees its agent active (uptime 4211s, last heartbeat 2026-12-05T10:00:00)
cloud:
  description: The cloud's view of the agent after the deletion - C(active), C(inactive), C(unseen) or C(not asked).
  returned: success
  type: str
  sample: unseen
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import location, names, option_table
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.api import (
    REQUESTS_IMPORT_ERROR,
    ProvisioningClient,
    confirm_mode,
    endpoints,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.certinfo import CRYPTOGRAPHY_IMPORT_ERROR
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import IdentityError, fail_when_missing
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.headers import HEADERS_FILE_NAME, module_headers
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.layout import API_CA


def argument_spec():
    spec = option_table.argument_spec(option_table.DEREGISTER_OPTIONS, vocabulary="mtls_deregister")
    spec["api_url"].pop("required")  # not with local_only (required_if)
    spec["confirm"]["required"] = True
    spec["ca_in_dir"] = {"type": "bool", "default": False}
    return spec


def still_active(module, client, result):
    """Ask the cloud about the deleted ID: an agent it still sees active is reported (a deletion
    does not end the agent's session; the cloud checks the certificate at connect only)."""
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import confirm

    agent_id = result["agent_id"]
    try:
        hb = client.heartbeat(agent_id)
    except IdentityError as exc:
        module.warn("the cloud could not be asked whether agent %s is still active: %s" % (agent_id, exc.msg))
        return
    result.update(confirm.report_fields(hb))
    if hb.active:
        result["still_active"] = confirm.holder_evidence(hb)
        note = ("the cloud still sees agent %s active after the deletion (%s): its session lasts until it "
                "disconnects; stop the agent" % (agent_id, result["still_active"]))
        result["reason"] = "%s; %s" % (result["reason"], note)
        module.warn(note)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_if=[("local_only", False, ("api_url", "endpoint"))])
    fail_when_missing(module, ("cryptography", CRYPTOGRAPHY_IMPORT_ERROR), ("requests", REQUESTS_IMPORT_ERROR))
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.decommission import Refused, decommission

    p = module.params
    names.use_role_names(p["option_names"] == "role", "mtls_deregister")
    if not p["validate_certs"] and not p["local_only"]:
        module.warn("validate_certs is false: the API server is not authenticated")
    clients = []

    def delete(agent_id, path, check=False):
        ca_path = os.path.join(path, API_CA) if p["ca_in_dir"] else p["ca_path"]
        client = ProvisioningClient(p["api_url"], flavor=api_flavor,
                                    headers=module_headers(module, transferred=HEADERS_FILE_NAME), ca_path=ca_path,
                                    validate_certs=p["validate_certs"], timeout=p["timeout"], retries=p["retries"],
                                    id_pattern=p["id_pattern"])
        clients.append(client)
        if check:
            client.deletion_path(agent_id, p["endpoint"])
            return None, True
        return client.delete_agent(agent_id, p["endpoint"])

    error, result = None, {"path": p["path"], "agent_id": None}
    try:
        api_flavor = endpoints(p["api_flavor"], heartbeat_endpoint=p["confirm_endpoint"])
        where = location.resolve(p["path"], p["owner"])
        decommission(where.path, where.uid, where.gid, p["confirm"], p["local_only"], delete,
                     check_mode=module.check_mode, id_pattern=p["id_pattern"], result=result,
                     ledger_id=p["ledger_id"])
        if confirm_mode(api_flavor, p["cloud_check"]) == "heartbeat" and clients and not module.check_mode \
                and result.get("action") == "decommissioned":
            still_active(module, clients[0], result)
    except IdentityError as exc:
        error = exc
    finally:
        for client in clients:
            client.close()
    if error is not None:
        # Outside the except block: ansible-core would otherwise attach a traceback.
        module.fail_json(msg=error.msg, action="refused" if isinstance(error, Refused) else "failed",
                         http_status=getattr(error, "status", None), removed=[], deleted=False,
                         agent_id=result["agent_id"], path=result["path"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
