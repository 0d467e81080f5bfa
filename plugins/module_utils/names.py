# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a message names a setting: by the module's option, or by the role variable an operator
sets when the module runs through the mtls_identity role.

Messages that tell the reader what to change call ``setting("ca_path")`` instead of writing the
option's name, so the same code says "set ca_path" to a module user and "set mtls_api_ca_src
(or mtls_api_ca)" to a role user. One module run is one process: the style is process-wide.
"""
from __future__ import annotations

# Options whose role variable is not simply "mtls_" + the option name.
_ROLE_VARIABLES = {
    "ca_path": "mtls_api_ca_src (or mtls_api_ca)",
    "validate_certs": "mtls_api_validate_certs",
    "timeout": "mtls_api_timeout",
    "retries": "mtls_api_retries",
    "headers": "mtls_api_headers",
    "headers_file": "mtls_api_headers_file",
    "path": "mtls_dir",
    "server_ca": "mtls_server_ca",
    "ca_file": "mtls_server_ca_src (or mtls_server_ca)",
    "user": "mtls_owner",
    "trust": "mtls_agent_trust",
    "protocol": "mtls_verify_protocol",
    "url": "mtls_verify_url",
    "status_code": "mtls_verify_status_code",
    "verify_timeout": "mtls_verify_timeout",
    "confirm": "mtls_decommission_confirm",
    "local_only": "mtls_decommission_local_only",
    "endpoint": "mtls_decommission_endpoint",
    "owner": "mtls_owner",
    "server_ca_src": "mtls_server_ca_src",
    "agent_trust": "mtls_agent_trust",
    "server_url": "mtls_server_url",
    "renew_jitter_days": "mtls_renew_jitter_days",
    "headers_src": "mtls_api_headers_src",
    "ca_src": "mtls_api_ca_src",
    "cloud_check": "mtls_confirm",
}

# mtls_identity runs the check of mtls_check with its own option names for the same settings.
_IDENTITY_OPTIONS = {"ca_file": "server_ca_src", "trust": "agent_trust", "protocol": "verify_protocol",
                     "url": "verify_url", "user": "owner"}
# mtls_identity's options whose role variable differs from mtls_deregister's option of that name.
_IDENTITY_ROLE_VARIABLES = {"confirm": "mtls_confirm"}

_style = {"role": False, "aliases": {}, "role_aliases": {}}


def use_role_names(enabled=True):
    """Name settings by their role variables from now on (the role's modules call this)."""
    _style["role"] = bool(enabled)


def use_identity_options():
    """Name the check's settings by mtls_identity's options (mtls_identity calls this)."""
    _style["aliases"] = dict(_IDENTITY_OPTIONS)
    _style["role_aliases"] = dict(_IDENTITY_ROLE_VARIABLES)


def setting(option):
    """The name to show for ``option`` in a message."""
    if not _style["role"]:
        return _style["aliases"].get(option, option)
    return _style["role_aliases"].get(option) or _ROLE_VARIABLES.get(option, "mtls_" + option)
