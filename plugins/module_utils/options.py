# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mtls_identity module's options (option_table) turned into the objects a run is made of.

Each constructor takes every value as a keyword; the values come from the run's parameters,
whose defaults the argument spec applied from option_table: no default is written here.
"""
from __future__ import annotations

import time

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import api, confirm, option_table
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.agent_files import SYSTEMD_DIR, AgentConfig
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.names import setting
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.restart import Restart


def argument_spec():
    return option_table.argument_spec()


class Verify:
    """How the agent-true check runs (see check.py)."""

    # A registry may take a moment to see a new certificate, a network may blink: these are
    # worth another try; an untrusted server or a wrong host name will not fix themselves.
    RETRY_ON = ("refused", "connection", "timeout")

    def __init__(self, *, enabled, unchanged, protocol, url, timeout, status_code, retries, delay, sleep=time.sleep):
        if timeout <= 0:
            raise ConfigError("%s must be a positive number of seconds" % setting("verify_timeout"))
        self.enabled = enabled
        self.unchanged = unchanged
        self.protocol = protocol
        self.url = url
        self.timeout = timeout
        self.status_code = tuple(status_code)
        self.retries = max(0, int(retries))
        self.delay = delay
        self.sleep = sleep


def flavor(p):
    """The API flavor's record with the endpoint and format options given in ``p`` in its place."""
    return api.endpoints(p["api_flavor"], **{field: p[name] for name, field in api.Flavor.OVERRIDABLE.items()})


def restart(p):
    return Restart(method=p["agent_restart"], container=p["agent_container"],
                   container_home=p["agent_container_home"], docker=p["docker_command"],
                   service=p["agent_service"], command=p["agent_restart_command"])


def agent_config(p, identity_dir, templates, systemd_dir=SYSTEMD_DIR):
    """The agent's configuration; ``templates``: the rendered texts (None on the controller)."""
    return AgentConfig(
        identity_dir=identity_dir, server_url=p["server_url"] or p["api_url"], trust=p["agent_trust"],
        server_ca=p["server_ca"], server_ca_content=p["server_ca_content"], tls_min_version=p["tls_min_version"],
        restart=restart(p), config_name=p["agent_config_name"], templates=templates, systemd_dir=systemd_dir)


def confirmation(p, api_flavor, ask):
    """The run's Confirm (confirm.py); ``ask(agent_id)`` is the module's question (used when it
    asks). Its mode defaults to the API flavor's (api.confirm_mode)."""
    if p["confirm_timeout"] <= 0:
        raise ConfigError("%s must be a positive number of seconds" % setting("confirm_timeout"))
    mode = api.confirm_mode(api_flavor, p["confirm"])
    if mode == "heartbeat" and api_flavor.heartbeat_endpoint is None:
        raise ConfigError("the %s API has no heartbeat route: set %s, or %s=none"
                          % (api_flavor.name, setting("confirm_endpoint"), setting("confirm")))
    view, view_error = None, ""
    if p["cloud_view"]:
        if p["cloud_view"].get("error"):
            view_error = str(p["cloud_view"]["error"])
        else:
            view = api.Heartbeat.from_dict(p["cloud_view"])
    return confirm.Confirm(mode=mode, by=p["confirm_by"], timeout=p["confirm_timeout"], ask=ask, view=view,
                           view_error=view_error, audit=p["audit"], stale_minutes=p["confirm_stale_minutes"])


def verify(p):
    return Verify(enabled=p["verify"] and "verify" in p["phases"], unchanged=p["verify_unchanged"],
                  protocol=p["verify_protocol"], url=p["verify_url"], timeout=p["verify_timeout"],
                  status_code=p["verify_status_code"], retries=p["verify_retries"], delay=p["verify_delay"])


def check_client(p, ca_path, api_flavor):
    """What ``client`` would refuse, checked without making the client (nor loading it)."""
    api.check_client_options(p["api_url"], api_flavor, ca_path=ca_path, timeout=p["timeout"], retries=p["retries"])


def client(p, headers, ca_path, api_flavor, polling=False):
    """The API client (opens no connection until a call); ``polling``: for the heartbeat
    questions, which the poll repeats itself (no retries) within the confirmation's timeout."""
    timeout, retries = p["timeout"], p["retries"]
    if polling:
        timeout, retries = min(timeout, p["confirm_timeout"]), 0
    return api.ProvisioningClient(
        p["api_url"], flavor=api_flavor, headers=headers, ca_path=ca_path, validate_certs=p["validate_certs"],
        timeout=timeout, retries=retries, id_pattern=p["id_pattern"])
