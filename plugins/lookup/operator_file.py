# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: operator_file
author:
  - fleet-mtls contributors (@autonomy-edge)
short_description: Find a file of the operator's project on the controller
description:
  - Returns the absolute path of a controller file named by a relative path, looked up as
    C(ansible.builtin.copy)'s C(src) is (the role's and the playbook's C(files/) directories), then
    next to the inventory and in the directory C(ansible-playbook) runs in - so
    C(ansible-playbook autonomy_edge.fleet_mtls.pull), whose playbook lies in the installed
    collection, finds C(secrets/api-headers.json) of the operator's project.
  - Fails listing every place it looked. An absolute path is returned when it exists.
options:
  _terms:
    description: The file's path (one).
    required: true
  option:
    description: The variable that named the file, for the error message.
    type: str
    default: src
"""

EXAMPLES = r"""
- name: Copy the API headers file of the operator's project
  ansible.builtin.copy:
    src: "{{ lookup('autonomy_edge.fleet_mtls.operator_file', headers_src, option='headers_src') }}"
    dest: /etc/fleet-mtls/api-headers.json
    mode: "0600"
"""

RETURN = r"""
_raw:
  description: The file's absolute path on the controller.
  type: list
  elements: str
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.plugin_utils.operator_paths import find_operator_file


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables or {}
        option = self.get_option("option")
        found = []
        for term in terms:
            try:
                found.append(find_operator_file(self._loader, variables.get("ansible_search_path") or [],
                                                variables, str(term), option))
            except ConfigError as exc:
                raise AnsibleLookupError(str(exc)) from None
        return found
