# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a message names a setting: by the module's option, or by the role variable an operator
sets when the module runs through a role (option_table.ROLE_VARIABLES).

Messages that tell the reader what to change call ``setting("ca_path")`` instead of writing the
option's name, so the same code says "set ca_path" to a module user and "set mtls_api_ca_src
(or mtls_api_ca)" to a role user. One module run is one process: the style is process-wide.
"""
from __future__ import annotations

# The API's CA: the role offers a controller file beside the device path; messages name both.
_ROLE_SHOWN = {"ca_path": "mtls_api_ca_src (or mtls_api_ca)"}

_style = {"role": False, "vocabulary": "mtls_identity"}


def use_role_names(enabled=True, vocabulary="mtls_identity"):
    """Name settings by their role variables from now on (the role's modules call this), as the
    module ``vocabulary`` means its options (option_table.VOCABULARIES)."""
    _style["role"] = bool(enabled)
    _style["vocabulary"] = vocabulary


def setting(option, controller_source=None):
    """The name to show for ``option`` in a message; through a role, with the variable of its
    ``controller_source`` option first when the role offers one."""
    if not _style["role"]:
        return option
    # Imported here: the option table refers to the API contract, whose messages use this module.
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.option_table import role_variables

    variables = role_variables(_style["vocabulary"])
    shown = _ROLE_SHOWN.get(option) or variables.get(option, "mtls_" + option)
    if controller_source:
        return "%s (or %s)" % (variables[controller_source], shown)
    return shown
