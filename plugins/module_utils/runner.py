# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mtls_identity module's run: its options turned into the objects of provision.py, the
identity directory opened and locked once for every phase, and one result (with the report
row) whatever happened.
"""
from __future__ import annotations

import os

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import confirm, names, options, provision
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.agent_files import API_CA, check_ca_content
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.api import ProvisioningClient
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ApiError, IdentityError, StateError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.fsutil import IdentityDir
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.headers import (
    merge_headers,
    read_headers_file,
)

HEADERS_FILE_NAME = "mtls-identity-headers.json"


class Outcome:
    def __init__(self, failed, msg, result):
        self.failed = failed
        self.msg = msg
        self.result = result


def failure_row(phase, error):
    row = provision.blank_status()
    row.update(action="failed", phase=phase, error=error)
    return row


def run(module):
    p = module.params
    names.use_role_names(p["option_names"] == "role")
    names.use_identity_options()
    cloud = _Cloud()
    try:  # every option is checked before anything changes (the preflight)
        headers = _headers(module)
        uid, gid, home = options.owner_account(p["owner"])
        directory = options.identity_dir(p["path"], home)
        agent = options.agent_config(p, directory)
        verify = options.verify_settings(p)
        confirmation = options.confirm_settings(p, cloud.ask)
        settings = _settings(p, directory, uid, gid)
        _client(p, headers, p["ca_path"] if p["ca_content"] is None else None).close()  # opens no connection
    except IdentityError as exc:
        return Outcome(True, exc.msg, {"status": failure_row("preflight", exc.msg), "changed": False})
    idir = None
    try:
        idir = IdentityDir.open(directory, uid, gid, create=False)
        if idir is None and not module.check_mode:
            # Decide on the missing directory first: a refusal (lost_identity=fail, an ID that
            # cannot be recovered) must not leave even an empty directory behind.
            _identity_runner(module, settings, lambda: _client(p, headers, p["ca_path"]))(None, True)
            idir = IdentityDir.open(directory, uid, gid, create=True)
        if idir is not None:
            idir.lock()
        ca_path, ca_changed = _api_ca(module, idir, directory)
        cloud.factory = lambda: _client(p, headers, ca_path, polling=True)
        job = provision.Job(
            agent=agent, restart=options.restart_settings(p), verify=verify,
            identity=_identity_runner(module, settings, lambda: _client(p, headers, ca_path),
                                      held_by=_held_by(confirmation)),
            check=_check, runner=_runner(module),
            run_as=(uid, gid, home) if os.geteuid() == 0 and uid != 0 else None,
            renew_before_days=p["renew_before_days"], check_mode=module.check_mode, warn=module.warn,
            phases=p["phases"], confirm=confirmation)
        status, result, changed = provision.run(job, idir)
    except provision.PhaseFailed as exc:
        if exc.phase == "identity":
            _identity_as_it_is(exc.status, directory, p)
        result = dict(exc.result, status=exc.status, changed=bool(exc.result.get("changed")),
                      registry_uncertain=exc.registry_uncertain)
        result.setdefault("cert_path", os.path.join(directory, "client.crt"))
        result.setdefault("key_path", os.path.join(directory, "client.key"))
        _metrics(module, exc.status)
        return Outcome(True, exc.msg, result)
    except IdentityError as exc:
        return Outcome(True, exc.msg, {"status": failure_row("identity", exc.msg), "changed": False})
    finally:
        cloud.close()
        if idir is not None:
            idir.close()
    result = dict(result, status=status, changed=changed or ca_changed)
    _metrics(module, status)
    return Outcome(False, "", result)


def _identity_as_it_is(status, directory, p):
    """A failed identity phase left the device's identity as it was (or converging): report
    that one, read without the network, rather than none."""
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import identity_facts

    try:
        facts = identity_facts(directory, id_pattern=p["id_pattern"], renew_before_days=p["renew_before_days"])
    except IdentityError:
        return
    for key in provision.STATUS_KEYS:
        if facts.get(key) is not None and key not in ("action", "reason"):
            status[key] = facts[key]


def _metrics(module, status):
    """The device's expiry metrics for node_exporter's textfile collector (``metrics_dir``):
    monitoring, not the job, so a failure to write them is a warning."""
    directory = module.params["metrics_dir"]
    if not directory or module.check_mode:
        return
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import metrics

    row = dict(status, host=module.params["host"] or os.uname()[1])
    try:
        metrics.write(directory, [row])
    except (metrics.MetricsError, OSError) as exc:
        module.warn("the expiry metrics were not written to %s: %s" % (directory, exc))


def _headers(module):
    """The API headers: the task's (no_log) merged with the device file's. A file the action
    plugin transferred is deleted as soon as it is read."""
    p = module.params
    headers = p["headers"]
    if p["headers_file"]:
        file_headers = read_headers_file(p["headers_file"])
        # Masked in anything the module returns, as no_log masks the values of `headers`
        # (short values aside: masking "1" would mangle every number in the result).
        module.no_log_values.update(v for v in file_headers.values() if len(v) >= 4)
        headers = merge_headers(headers, file_headers)
        if os.path.basename(p["headers_file"]) == HEADERS_FILE_NAME:
            try:
                os.unlink(p["headers_file"])
            except OSError:
                pass  # the action plugin removes its directory anyway
    return headers


def _api_ca(module, idir, directory):
    """The API's CA delivered from the controller (``ca_content``) into the identity directory
    before the engine needs it. Returns (ca_path, changed)."""
    p = module.params
    if p["ca_content"] is None:
        return p["ca_path"], False
    wanted = check_ca_content(p["ca_content"], "the API's CA").encode("utf-8")
    path = os.path.join(directory, API_CA)
    if idir is None:  # check mode, no directory yet
        return path, True
    current, _st = idir.read(API_CA)
    if current == wanted:
        return path, bool(idir.fix_file(API_CA, 0o644)) if not module.check_mode else False
    if not module.check_mode:
        idir.create("." + API_CA + ".new", wanted, 0o644)
        idir.rename("." + API_CA + ".new", API_CA)
        idir.fsync()
    return path, True


def _settings(p, directory, uid, gid):
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import Settings

    return Settings(
        path=directory, owner=str(uid), group=str(gid), agent_id=p["agent_id"],
        id_pattern=p["id_pattern"], enrollment=p["enrollment"], key_size=p["key_size"],
        subject=p["subject"], valid_days=p["valid_days"], rotate=p["rotate"],
        renew_before_days=p["renew_before_days"], backup=p["backup"],
        max_clock_skew=p["max_clock_skew"], ledger_id=p["ledger_id"], lost_identity=p["lost_identity"],
        agent_id_takeover=p["agent_id_takeover"])


def _client(p, headers, ca_path, polling=False):
    """The API client; ``polling``: for the heartbeat questions, which the poll repeats itself
    (no retries) within the confirmation's timeout."""
    timeout, retries = p["timeout"], p["retries"]
    if polling:
        timeout, retries = min(timeout, p["confirm_timeout"]), 0
    return ProvisioningClient(
        p["api_url"], id_endpoint=p["id_endpoint"], upload_endpoint=p["upload_endpoint"],
        enroll_endpoint=p["enroll_endpoint"], upload_format=p["upload_format"], id_field=p["id_field"],
        certificate_field=p["certificate_field"], headers=headers, ca_path=ca_path,
        validate_certs=p["validate_certs"], timeout=timeout, retries=retries,
        id_pattern=p["id_pattern"], confirm_endpoint=p["confirm_endpoint"])


class _Cloud:
    """The module's questions to the heartbeat route: one client, opened on the first."""

    def __init__(self):
        self.factory = None
        self._client = None

    def ask(self, agent_id):
        if self._client is None:
            self._client = self.factory()
        return self._client.heartbeat(agent_id)

    def close(self):
        if self._client is not None:
            self._client.close()


def _held_by(c):
    """held_by(agent_id) for the transaction: why a device holds the ID (the cloud's view), or
    None. Without an answer a claim is refused: nothing shows the ID is free."""
    def held_by(agent_id):
        if not c.enabled:
            return None
        view = c.view if c.view is not None and c.view.agent_id == agent_id else None
        if view is None and c.by == "module":
            try:
                view = c.ask(agent_id)
            except ApiError as exc:
                raise StateError("cannot tell whether a device holds agent ID %s: %s. Nothing was done"
                                 % (agent_id, exc.msg)) from None
        if view is None:
            raise StateError("cannot tell whether a device holds agent ID %s: the cloud's view was not "
                             "handed to the module%s. Nothing was done" % (
                                 agent_id, " (%s)" % c.view_error if c.view_error else ""))
        return confirm.holder_evidence(view)

    return held_by


def _identity_runner(module, settings, client_factory, held_by=None):
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import ensure_identity

    def identity(idir, check_mode):
        result, _warnings = ensure_identity(settings, client_factory, check_mode=check_mode,
                                            warn=module.warn, idir=idir, held_by=held_by)
        return result

    return identity


def _runner(module):
    """argv -> (rc, out, err); a program that cannot be started raises OSError (restart.py says
    what it means) instead of failing the module and its report row."""
    def run(argv):
        return module.run_command(argv, handle_exceptions=False)

    return run


def _check(*args, **kwargs):
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.check import run_agent_check

    return run_agent_check(*args, **kwargs)
