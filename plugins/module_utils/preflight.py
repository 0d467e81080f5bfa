# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The preflight: every mtls_identity option checked, without the network, before anything
changes. One function for both passes that read those options - the identity run
(runner.py) and the role's first, keygen pass (identity/prekey.py) - so an option one refuses,
the other refuses too, with the same message.
"""
from __future__ import annotations

from collections import namedtuple

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import location, options

# ``where``: location.Location; ``api_flavor``: options.flavor's; ``agent``: the AgentConfig;
# ``verify`` and ``confirmation``: the verify and confirm phases' options; ``settings``: the
# identity's Settings.
Checked = namedtuple("Checked", "where api_flavor agent verify confirmation settings")


def preflight(p, ask):
    """The checked options of ``p`` (the argument spec applied; the device's headers file is
    headers.module_headers' to check). ``ask(agent_id)``: the cloud's view of an agent, for the
    confirmation (called later, never here). Raises IdentityError naming the option."""
    where = location.resolve(p["path"], p["owner"], p["group"])
    api_flavor = options.flavor(p)
    templates = (p["agent_templates"] or {}) if "config" in p["phases"] else None
    agent = options.agent_config(p, where.path, templates)
    verify = options.verify(p)
    confirmation = options.confirmation(p, api_flavor, ask)
    settings = _settings(p, where, api_flavor.enrollment)
    options.check_client(p, p["ca_path"] if p["ca_content"] is None else None, api_flavor)
    return Checked(where, api_flavor, agent, verify, confirmation, settings)


def _settings(p, where, enrollment):
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.settings import settings_from

    return settings_from(p, where, enrollment)
