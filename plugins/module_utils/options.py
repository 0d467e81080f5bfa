# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mtls_identity module's options: the argument spec, and the objects a run is made of.

Defaults of the API contract come from api.DEFAULTS (the one place that knows the contract);
options the action plugin consumes on the controller (``*_src``, ``renew_jitter_days``,
``install_prerequisites``, ``prerequisite_packages``, ``ledger_path``) are in the spec so they
are documented and type-checked, but never reach the device with a value.
"""
from __future__ import annotations

import os
import pwd

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import api, confirm, names
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.agent_files import TLS_VERSIONS, AgentConfig
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.provision import Restart, Verify
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.restart import METHODS

SUBJECT_OPTIONS = {
    "C": {"type": "str", "default": "BR"},
    "ST": {"type": "str", "default": "SP"},
    "L": {"type": "str", "default": "SaoPaulo"},
    "O": {"type": "str", "default": "AutonomyLogic"},
    "OU": {"type": "str", "default": "Development"},
}
PHASES = ("identity", "config", "verify")
PROTOCOLS = ("websocket", "socketio", "https")


def argument_spec():
    d = api.DEFAULTS
    return {
        # the provisioning API
        "api_url": {"type": "str", "required": True},
        "id_endpoint": {"type": "str", "default": d["id_endpoint"]},
        "upload_endpoint": {"type": "str", "default": d["upload_endpoint"]},
        "enroll_endpoint": {"type": "str", "default": d["enroll_endpoint"]},
        "upload_format": {"type": "str", "default": d["upload_format"], "choices": list(api.UPLOAD_FORMATS)},
        "id_field": {"type": "str"},
        "certificate_field": {"type": "str", "default": d["certificate_field"]},
        "headers": {"type": "dict", "default": {}, "no_log": True},
        "headers_src": {"type": "path"},
        "headers_file": {"type": "path"},
        "ca_path": {"type": "path"},
        "ca_src": {"type": "path"},
        "ca_content": {"type": "str"},
        "validate_certs": {"type": "bool", "default": d["validate_certs"]},
        "timeout": {"type": "float", "default": d["timeout"]},
        "retries": {"type": "int", "default": d["retries"]},
        # the identity
        "path": {"type": "str"},
        "owner": {"type": "str"},
        "group": {"type": "str"},
        "agent_id": {"type": "raw"},
        "id_pattern": {"type": "str", "default": d["id_pattern"]},
        "lost_identity": {"type": "str", "default": "restore", "choices": ["restore", "new", "fail"]},
        "ledger_id": {"type": "str"},
        "enrollment": {"type": "str", "default": "self_signed", "choices": ["self_signed", "csr"]},
        "key_size": {"type": "int", "default": 4096},
        "subject": {"type": "dict", "options": SUBJECT_OPTIONS, "apply_defaults": True},
        "valid_days": {"type": "int", "default": 365},
        "rotate": {"type": "str", "default": "auto", "choices": ["auto", "always", "never"]},
        "renew_before_days": {"type": "int", "default": 30},
        "renew_jitter_days": {"type": "int", "default": 0},
        "backup": {"type": "bool", "default": False},
        "max_clock_skew": {"type": "int", "default": 600},
        "install_prerequisites": {"type": "bool", "default": False},
        "prerequisite_packages": {"type": "list", "elements": "str", "default": []},
        # the agent
        "server_url": {"type": "str"},
        "server_ca": {"type": "str", "default": "system"},
        "server_ca_src": {"type": "path"},
        "server_ca_content": {"type": "str"},
        "agent_trust": {"type": "str", "choices": ["system", "ca_file"]},
        "tls_min_version": {"type": "str", "default": "TLSv1.2", "choices": list(TLS_VERSIONS)},
        "agent_config_name": {"type": "str", "default": "agent-tls.ini"},
        "agent_restart": {"type": "str", "default": "none", "choices": list(METHODS)},
        "agent_container": {"type": "str", "default": "orchestrator_agent"},
        "agent_container_home": {"type": "str", "default": "/root"},
        "docker_command": {"type": "str", "default": "docker"},
        "agent_service": {"type": "str", "default": "orchestrator-agent"},
        "agent_restart_command": {"type": "str", "default": ""},
        # verification
        "verify": {"type": "bool", "default": True},
        "verify_unchanged": {"type": "bool", "default": True},
        "verify_protocol": {"type": "str", "default": "websocket", "choices": list(PROTOCOLS)},
        "verify_url": {"type": "str"},
        "verify_timeout": {"type": "float", "default": 10},
        "verify_status_code": {"type": "list", "elements": "int", "default": [200]},
        "verify_retries": {"type": "int", "default": 0},
        "verify_delay": {"type": "float", "default": 3},
        # the cloud's confirmation (confirm.py); its default follows the API (api.default_confirm)
        "confirm": {"type": "str", "choices": list(api.CONFIRM_MODES)},
        "confirm_timeout": {"type": "float", "default": confirm.DEFAULT_TIMEOUT},
        "confirm_endpoint": {"type": "str", "default": d["confirm_endpoint"]},
        "confirm_stale_minutes": {"type": "int", "default": confirm.DEFAULT_STALE_MINUTES},
        "agent_id_takeover": {"type": "bool", "default": False},
        "confirm_by": {"type": "str", "default": "module", "choices": ["module", "controller"]},
        "cloud_view": {"type": "dict"},
        "audit": {"type": "bool", "default": False},
        # the run
        "metrics_dir": {"type": "path"},
        "host": {"type": "str"},
        "phases": {"type": "list", "elements": "str", "choices": list(PHASES), "default": list(PHASES)},
        "option_names": {"type": "str", "default": "module", "choices": ["module", "role"]},
    }


def owner_account(owner):
    """(uid, gid, home) of ``owner`` (a name or a numeric ID), or of the running user."""
    try:
        if owner in (None, ""):
            entry = pwd.getpwuid(os.geteuid())
        elif str(owner).isdigit() and not _name_exists(str(owner)):
            entry = pwd.getpwuid(int(owner))
        else:
            entry = pwd.getpwnam(str(owner))
    except KeyError:
        raise ConfigError("%s %s does not exist on this device: create the agent's user first"
                          % (names.setting("owner"), owner)) from None
    return entry.pw_uid, entry.pw_gid, entry.pw_dir


def _name_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def identity_dir(path, home):
    """The identity directory: ``path`` (``~/`` is the owner's home), or ``<home>/.mtls``."""
    if path in (None, ""):
        path = "~/.mtls"
    if path == "~" or path.startswith("~/"):
        path = home + path[1:]
    if not os.path.isabs(path):
        raise ConfigError("%s must be an absolute path (or start with ~/), got %r" % (names.setting("path"), path))
    return os.path.normpath(path)


def agent_config(p, directory):
    return AgentConfig(
        directory, p["server_url"] or p["api_url"], trust=p["agent_trust"], server_ca=p["server_ca"],
        server_ca_content=p["server_ca_content"], tls_min_version=p["tls_min_version"],
        restart=p["agent_restart"], service=p["agent_service"], container_home=p["agent_container_home"],
        config_name=p["agent_config_name"])


def restart_settings(p):
    return Restart(method=p["agent_restart"], container=p["agent_container"], service=p["agent_service"],
                   command=p["agent_restart_command"], docker=p["docker_command"])


def confirm_settings(p, ask):
    """The run's Confirm: ``ask(agent_id)`` is the module's question (used when it asks)."""
    if p["confirm_timeout"] <= 0:
        raise ConfigError("%s must be a positive number of seconds" % names.setting("confirm_timeout"))
    view, view_error = None, ""
    if p["cloud_view"]:
        if p["cloud_view"].get("error"):
            view_error = str(p["cloud_view"]["error"])
        else:
            view = api.Heartbeat.from_dict(p["cloud_view"])
    return confirm.Confirm(mode=api.confirm_mode(p), by=p["confirm_by"], timeout=p["confirm_timeout"], ask=ask,
                           view=view, view_error=view_error, audit=p["audit"],
                           stale_minutes=p["confirm_stale_minutes"])


def verify_settings(p):
    if p["verify_timeout"] <= 0:
        raise ConfigError("%s must be a positive number of seconds" % names.setting("verify_timeout"))
    return Verify(enabled=p["verify"] and "verify" in p["phases"], unchanged=p["verify_unchanged"],
                  protocol=p["verify_protocol"], url=p["verify_url"], timeout=p["verify_timeout"],
                  status_code=p["verify_status_code"], retries=p["verify_retries"], delay=p["verify_delay"])
