# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side helpers of the mtls_identity action plugin: plain functions, tested alone.

Nothing here runs on a device; nothing here talks to the network.
"""
from __future__ import annotations

import datetime
import hashlib
import json

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import option_table
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.headers import HEADERS_FILE_NAME, check_headers
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.names import setting

MAX_SOURCE = 256 * 1024
# A headers file left by an interrupted controller is removed by the next run after this long
# (a live run reads its file within seconds of the transfer).
STALE_HEADERS_MINUTES = 10


def jitter_offset(host, jitter_days):
    """A stable per-host offset in 0..jitter_days: the first 32 bits of sha1(host name), as
    the role always computed it, so a fleet's renewal dates do not move on upgrade."""
    jitter_days = int(jitter_days)
    if jitter_days < 0:
        raise ConfigError("%s must be >= 0" % setting("renew_jitter_days"))
    digest = hashlib.sha1(host.encode("utf-8")).hexdigest()  # noqa: S324 - spreading, not security
    return int(digest[:8], 16) % (jitter_days + 1)


def apply_jitter(module_args, host):
    """Turn ``renew_jitter_days`` of ``module_args`` into this host's ``renew_before_days``."""
    jitter = module_args.pop("renew_jitter_days", None)
    if not jitter:
        return
    base = int(module_args.get("renew_before_days", option_table.BY_NAME["renew_before_days"].default))
    offset = jitter_offset(host, jitter)
    valid = int(module_args.get("valid_days", option_table.BY_NAME["valid_days"].default))
    if base < valid <= base + offset:
        raise ConfigError(
            "%s (%d) plus this host's jitter (%d, from %s=%s) must be smaller than %s (%d), or every run would "
            "rotate" % (setting("renew_before_days"), base, offset, setting("renew_jitter_days"), jitter,
                        setting("valid_days"), valid))
    module_args["renew_before_days"] = base + offset


def apply_ledger_answer(module_args, host, answers):
    """What the identity ledger's look-up (the fact ``mtls_ledger``) says about ``host``: refuse an
    agent ID another host holds; hand the module the ID the ledger holds for it (``ledger_id``)."""
    answer = (answers or {}).get(host) or {}
    if answer.get("conflict"):
        raise ConfigError(answer["conflict"])
    if answer.get("ledger_id") and not module_args.get("ledger_id"):
        module_args["ledger_id"] = answer["ledger_id"]


def read_source(path, option):
    """The text of a controller file named by an ``*_src`` option (a CA, a headers file)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SOURCE + 1)
    except OSError as exc:
        raise ConfigError("cannot read %s %s on the controller: %s"
                          % (setting(option), path, exc.strerror or exc)) from None
    if len(data) > MAX_SOURCE:
        raise ConfigError("%s %s is larger than %d bytes" % (setting(option), path, MAX_SOURCE))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("%s %s is not UTF-8 text" % (setting(option), path)) from None


def headers_from_source(text, option="headers_src"):
    """A JSON object of header names to HTTP field values (``check_headers``); errors name the
    setting and the header, never the content."""
    try:
        value = json.loads(text)
    except ValueError:
        raise ConfigError("%s is not JSON (its content is not shown)" % setting(option)) from None
    if not isinstance(value, dict):
        raise ConfigError("%s must hold a JSON object of header names to string values (its "
                          "content is not shown)" % setting(option))
    return check_headers(value, setting(option))


def stale_headers_cleanup(tmp_base, keep=None):
    """A shell command removing headers files that interrupted runs left under ``tmp_base`` (a
    shell word as it stands when ``keep`` is None, else a path to quote), never ``keep``."""
    import shlex

    base, spare = tmp_base, ""
    if keep is not None:
        base, spare = shlex.quote(tmp_base), " ! -path %s" % shlex.quote(keep)
    return ("find %s -maxdepth 2 -type f -name %s%s -mmin +%d -exec rm -f {} + 2>/dev/null; true"
            % (base, HEADERS_FILE_NAME, spare, STALE_HEADERS_MINUTES))


def headers_dir_command(remote_tmp, name):
    """One POSIX shell command, one round trip: make the private directory ``name`` under
    ``remote_tmp`` (expanded by the device's shell, as Ansible makes its own there), print
    ``name=<directory>``, remove the headers files interrupted runs left under ``remote_tmp``, and
    write the command's standard input to the headers file in the directory (0600)."""
    top = '"` echo %s `"' % remote_tmp
    here = '"` echo %s/%s `"' % (remote_tmp.rstrip("/"), name)
    return ('umask 077 && mkdir -p %s && mkdir %s && d=%s && echo %s="$d" && { %s; } && '
            'cat > "$d/%s" && test -s "$d/%s"'
            % (top, here, here, name, stale_headers_cleanup(top), HEADERS_FILE_NAME, HEADERS_FILE_NAME))


def made_dir(stdout, name):
    """The directory ``headers_dir_command`` printed, or None."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(name + "=/"):
            return line[len(name) + 1:].rstrip("/")
    return None


class RoleArgumentsError(ConfigError):
    """A role variable does not match the role's argument spec (the report's phase "arguments")."""


def role_arguments(entry_point, names, module_args, variables, template):
    """Check the role's variables in ``variables`` against the argument spec of ``entry_point``
    (the role's one validation, done here: not as a task of its own per host), then fill
    ``module_args`` with the options ``names`` the task did not give, from those variables
    (``template`` renders one), else the role's defaults (option_table): the role's one task
    passes almost nothing. A value equal to the module's default is left out."""
    spec = option_table.role_argument_spec(entry_point)
    given = {var: template(variables[var]) for var in spec if var in variables}
    _validate(spec, given, entry_point)
    vocabulary = option_table.VOCABULARIES[option_table.ENTRY_POINTS[entry_point]]
    for name in names:
        option = vocabulary[name]
        if not option.role or name in module_args:
            continue
        if option.role in given:
            value = given[option.role]
        elif option.role in variables:
            value = template(variables[option.role])
        elif option.role_default is not option_table.UNSET:
            value = option.role_default
        else:
            continue
        value = option_table.role_to_module(option, value)
        if value is not None and value != option.default:
            module_args[name] = value


def _validate(spec, values, entry_point):
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    errors = ArgumentSpecValidator(spec).validate(values).error_messages
    if errors:
        raise RoleArgumentsError("%s (the role's variables, entry point %s)" % ("; ".join(errors), entry_point))


def phases_for_tags(run_tags, skip_tags):
    """The phases of the role's one module call that ``--tags``/``--skip-tags`` select:
    ``mtls_identity``, ``mtls_config``, ``mtls_verify`` (``mtls`` or no tags: all three)."""
    run_tags = set(run_tags or ["all"])
    skip_tags = set(skip_tags or [])
    if run_tags & {"all", "mtls", "always", "tagged"}:
        wanted = list(option_table.PHASES)
    else:
        wanted = [phase for phase in option_table.PHASES if "mtls_" + phase in run_tags]
    return [phase for phase in wanted if "mtls_" + phase not in skip_tags]


def failure_status(host, phase, error, status=None):
    """The report row of a host whose run failed before or inside the module. What the
    identity phase did stays (a rotation that happened is reported as one); a host that got no
    further is ``failed``."""
    row = dict(status or {})
    row.update({"host": host, "phase": row.get("phase") or phase, "error": row.get("error") or error})
    if not row.get("action"):
        row["action"] = "failed"
    return row


def decommission_status(result):
    """The report row of an mtls_deregister run (what was deleted where)."""
    return {
        "agent_id": result.get("agent_id") or "", "action": result.get("action") or "failed",
        "reason": result.get("reason") or "", "phase": "decommission" if result.get("failed") else "",
        "cloud": result.get("cloud") or "not asked", "agent_uptime_s": result.get("agent_uptime_s"),
        "heartbeat_at": result.get("heartbeat_at") or "",
        "error": result.get("msg", "") if result.get("failed") else "",
        "checked_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
