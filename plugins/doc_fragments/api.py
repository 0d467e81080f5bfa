# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The provisioning API options shared by mtls_identity and mtls_deregister."""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  api_url:
    description: Base URL of the provisioning API, C(https://) only (for example C(https://api.autonomylogic.com)).
    type: str
  headers:
    description:
      - Extra request headers, for example C(Authorization) with a bearer token. Never logged.
        The action plugin hands them to the device as a 0600 file (O(headers_file)) - never a
        module argument, which C(ANSIBLE_DEBUG) would print.
    type: dict
    default: {}
  headers_file:
    description:
      - Path on the device of a JSON object of header names to string values, merged over
        O(headers); read without following a symbolic link, never echoed.
    type: path
  ca_path:
    description: CA bundle on the device that signs the API's server certificate. Default the system store.
    type: path
  id_pattern:
    description:
      - Regular expression a valid agent ID matches in full. The default is the provisioning
        service's format, 8 upper-case hexadecimal characters, so an ID the API answers in
        another form (lower case, say) is refused before any key is made or anything uploaded.
      - Whatever it says, only plain ASCII names (letters, digits, C(._-)) are ever accepted.
    type: str
    default: "^[0-9A-F]{8}$"
  validate_certs:
    description:
      - Verify the API's certificate. C(false) is warned about (a man in the middle could register its own certificate).
    type: bool
    default: true
  timeout:
    description: Seconds allowed for each request; each attempt also has a total deadline.
    type: float
    default: 30
  retries:
    description: Retries, with backoff and jitter, after connection errors, timeouts, HTTP 429 and 5xx; never other 4xx.
    type: int
    default: 3
  option_names:
    description:
      - C(role) makes messages name the role's variables instead of these options (the action plugin sets it in the
        role).
    type: str
    choices: [module, role]
    default: module
  ledger_path:
    description:
      - The identity ledger on the controller (the role's C(mtls_ledger_path)). The action plugin records this
        host's identity there right after the module returned, under the ledger's lock; the module never sees it.
        A relative path is relative to the directory C(ansible-playbook) runs in; a path inside an installed
        collection is refused. Unset, nothing is recorded.
    type: path
"""
