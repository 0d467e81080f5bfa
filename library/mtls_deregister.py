#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: mtls_deregister
short_description: Delete a device's agent ID from the provisioning API's registry
description:
  - Sends C(DELETE {api_url}{endpoint}) with C({id}) replaced by O(agent_id), so the cloud
    stops accepting the device's certificate. Used by the role's decommission entry point.
  - A C(404) or C(410) answer means the ID is already gone (not a failure, not a change).
    Retries like M(autonomy_edge.fleet_mtls.mtls_identity) on connection errors, timeouts, 429
    and 5xx.
  - Its action plugin keeps O(headers) (the bearer token) off the module's arguments, as for
    M(autonomy_edge.fleet_mtls.mtls_identity), so not even C(ANSIBLE_DEBUG=1) prints them.
version_added: "1.0.0"
author: fleet-mtls contributors (@autonomy-edge)
requirements:
  - python >= 3.9
  - requests
options:
  api_url:
    description: Base URL of the provisioning API (C(https://) only).
    type: str
    required: true
  endpoint:
    description: Deletion path, C({id}) replaced by O(agent_id), for example C(/orchestrators/{id}).
    type: str
    required: true
  agent_id:
    description: The agent ID to delete (matched against O(id_pattern)).
    type: str
    required: true
  id_pattern:
    description: Regular expression a valid agent ID matches in full.
    type: str
    default: "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
  headers:
    description:
      - Extra request headers, for example C(Authorization) with a bearer token. Never logged;
        the action plugin passes them to the module as a file (see O(headers_file)).
    type: dict
    default: {}
  headers_file:
    description:
      - Path on the device of a JSON object of header names to string values, merged over
        O(headers). Setting both O(headers) and O(headers_file) through the action plugin fails.
    type: path
  ca_path:
    description: CA bundle (on the device) that signs the API's server certificate.
    type: path
  validate_certs:
    description: Verify the API's certificate. C(false) is warned about.
    type: bool
    default: true
  timeout:
    description: Timeout of each request in seconds.
    type: float
    default: 30
  retries:
    description: Retries after connection errors, timeouts, HTTP 429 and 5xx.
    type: int
    default: 3
attributes:
  check_mode:
    description: Sends nothing; reports that the ID would be deleted.
    support: full
  diff_mode:
    description: No diff.
    support: none
  platform:
    description: Any host with Python and requests.
    support: full
    platforms: posix
seealso:
  - module: autonomy_edge.fleet_mtls.mtls_identity
"""

EXAMPLES = r"""
- name: Delete the agent ID on the server
  mtls_deregister:
    api_url: https://api.example.com
    endpoint: /orchestrators/{id}
    agent_id: "07048933"
    headers:
      Authorization: "Bearer {{ registry_token }}"
"""

RETURN = r"""
status:
  description: HTTP status of the answer (null in check mode).
  returned: always
  type: int
  sample: 204
deleted:
  description: Whether the server deleted the ID on this run (false when it was already gone).
  returned: always
  type: bool
  sample: true
"""


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.api import (
    DEFAULT_ID_PATTERN,
    REQUESTS_IMPORT_ERROR,
    ProvisioningClient,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import IdentityError, fail_when_missing
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.headers import merge_headers, read_headers_file


def main():
    module = AnsibleModule(
        argument_spec={
            "api_url": {"type": "str", "required": True},
            "endpoint": {"type": "str", "required": True},
            "agent_id": {"type": "str", "required": True},
            "id_pattern": {"type": "str", "default": DEFAULT_ID_PATTERN},
            "headers": {"type": "dict", "default": {}, "no_log": True},
            "headers_file": {"type": "path"},
            "ca_path": {"type": "path"},
            "validate_certs": {"type": "bool", "default": True},
            "timeout": {"type": "float", "default": 30},
            "retries": {"type": "int", "default": 3},
        },
        supports_check_mode=True,
    )
    fail_when_missing(module, ("requests", REQUESTS_IMPORT_ERROR))
    p = module.params
    if not p["validate_certs"]:
        module.warn("validate_certs is false: the API server is not authenticated")
    error = None
    try:
        headers = p["headers"]
        if p["headers_file"]:
            file_headers = read_headers_file(p["headers_file"])
            module.no_log_values.update(v for v in file_headers.values() if len(v) >= 4)
            headers = merge_headers(headers, file_headers)
        client = ProvisioningClient(p["api_url"], headers=headers, ca_path=p["ca_path"],
                                    validate_certs=p["validate_certs"], timeout=p["timeout"],
                                    retries=p["retries"], id_pattern=p["id_pattern"])
        try:
            if module.check_mode:
                client.deletion_path(p["agent_id"], p["endpoint"])
                status, deleted = None, True
            else:
                status, deleted = client.delete_agent(p["agent_id"], p["endpoint"])
        finally:
            client.close()
    except IdentityError as exc:
        error = exc
    if error is not None:
        # Outside the except block: ansible-core would otherwise attach a traceback.
        module.fail_json(msg=error.msg, status=getattr(error, "status", None))
    module.exit_json(changed=deleted, status=status, deleted=deleted and not module.check_mode)


if __name__ == "__main__":
    main()
