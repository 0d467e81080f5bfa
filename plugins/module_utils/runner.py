# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mtls_identity module's run: its options turned into the objects of provision.py, the
identity directory opened and locked once for every phase, and one result (with the report
row) whatever happened.
"""
from __future__ import annotations

import os

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import (
    confirm,
    names,
    options,
    provision,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.agent_files import API_CA, check_ca_content
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import (
    ApiError,
    HeadersNeeded,
    IdentityError,
    StateError,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.headers import (
    HEADERS_FILE_NAME,
    module_headers,
    remove_transfer_dir,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.layout import KEYGEN_FILES
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.preflight import preflight

VALIDATE_CERTS_OFF = ("validate_certs is false: the API server is not authenticated, so a man in the middle "
                      "could register its own certificate for this device")


class Outcome:
    def __init__(self, failed, msg, result):
        self.failed = failed
        self.msg = msg
        self.result = result


def run_lean(request):
    """The mtls_identity module's ``main`` as the action plugin runs it without AnsiballZ
    (plugin_utils/lean_run.py). Prints the result, as a module does, the headers' values it read
    masked (module_utils/lean.py). A device that lacks a library answers ``lean_unavailable``:
    the module then runs, and fails by its libraries' names (or installs them), as always."""
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import lean
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.api import REQUESTS_IMPORT_ERROR
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.certinfo import CRYPTOGRAPHY_IMPORT_ERROR

    if CRYPTOGRAPHY_IMPORT_ERROR is not None or REQUESTS_IMPORT_ERROR is not None:
        lean.emit({"lean_unavailable": "the device lacks cryptography or requests", "changed": False})
        return
    module = lean.LeanModule(lean.device_params(request, options.argument_spec()), request["check_mode"])
    if not module.params["validate_certs"]:
        module.warn(VALIDATE_CERTS_OFF)
    outcome = run(module)
    result = dict(outcome.result, failed=True, msg=outcome.msg) if outcome.failed else outcome.result
    lean.emit(result, module)


def failure_row(phase, error):
    row = provision.blank_status()
    row.update(action="failed", phase=phase, error=error)
    return row


def run(module):
    p = module.params
    names.use_role_names(p["option_names"] == "role")
    try:  # the API's credentials: the identity phase's, checked before any request
        headers = module_headers(module, transferred=HEADERS_FILE_NAME)
    except IdentityError as exc:
        return Outcome(True, exc.msg, {"status": failure_row("identity", exc.msg), "changed": False})
    outcome = _run(module, headers)
    if p["headers_file"] and os.path.basename(p["headers_file"]) == HEADERS_FILE_NAME:
        # The action plugin's directory, emptied: removed here, no round trip more for it.
        outcome.result["headers_dir_removed"] = remove_transfer_dir(p["headers_file"])
    return outcome


def _run(module, headers):
    p = module.params
    cloud = _Cloud()
    try:  # every option is checked before anything changes
        checked = preflight(p, cloud.ask)
    except IdentityError as exc:
        return Outcome(True, exc.msg, {"status": failure_row("preflight", exc.msg), "changed": False})
    where, api_flavor, agent, verify, confirmation, settings = checked
    idir = job = None
    try:
        from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.engine import open_locked

        idir = open_locked(settings, create=False)  # created by the engine once it decided to
        api_ca = ApiCa(module, where.path)
        api_ca.deliver(idir)

        def make_client(engine_dir):
            _needs_headers(p, "a request to the API")
            api_ca.deliver(engine_dir)  # into a directory the engine just created
            return options.client(p, headers, api_ca.path, api_flavor)

        def make_polling_client():
            _needs_headers(p, "a question to the cloud")
            return options.client(p, headers, api_ca.path, api_flavor, polling=True)

        cloud.factory = make_polling_client
        job = provision.Job(
            agent=agent, restart=agent.restart, verify=verify,
            identity=_identity_runner(module, settings, make_client, held_by=_held_by(confirmation),
                                      headers_withheld=p["headers_withheld"]),
            check=_check, runner=_runner(module), run_as=where.run_as(), renew_before_days=p["renew_before_days"],
            check_mode=module.check_mode, warn=module.warn, phases=p["phases"], confirm=confirmation)
        status, result, changed = provision.run(job, idir)
    except provision.PhaseFailed as exc:
        if exc.phase == "identity":
            _identity_as_it_is(exc.status, where, p, settings.modes)
        result = dict(exc.result, status=exc.status, changed=bool(exc.result.get("changed")),
                      registry_uncertain=exc.registry_uncertain)
        result.setdefault("cert_path", where.cert_path)
        result.setdefault("key_path", where.key_path)
        _metrics(module, exc.status)
        return Outcome(True, exc.msg, result)
    except IdentityError as exc:
        return Outcome(True, exc.msg, {"status": failure_row("identity", exc.msg), "changed": False})
    except HeadersNeeded as exc:  # nothing written: the action plugin runs the module again, with them
        return Outcome(False, "", {"headers_needed": str(exc), "changed": False})
    finally:
        cloud.close()
        opened = job.idir if job is not None else idir  # the engine may have created it
        if opened is not None:
            opened.close()
    result = dict(result, status=status, changed=changed or api_ca.changed)
    if job.diffs:  # each agent file that changes, after the identity's metadata
        result["diff"] = [dict(result["diff"], before_header="identity (metadata only)",
                               after_header="identity (metadata only)")] + job.diffs
    _metrics(module, status)
    return Outcome(False, "", result)


def _remove_if_created_for_nothing(idir, where, by_keygen_pass=False):
    """A creation refused before anything of the identity was written (the clock check, the
    ID request, a definitive upload refusal) leaves no directory behind when this run made it,
    or the role's keygen pass made it for this creation (``by_keygen_pass``): only the API's CA
    this run copied in and what that pass left may be there (a journal, a staged or an identity
    file, anything else keeps it). The pass's process is stopped before its files go, so nothing
    it would still write appears after."""
    if idir is None or idir.fd is None or not (idir.created or by_keygen_pass):
        return
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import prekey

    prekey.remove_unused_directory(idir, where.uid, where.gid, others=(API_CA,))


def _holds_only_ours(idir):
    """Whether ``idir`` holds nothing but the API's CA and what the keygen pass leaves."""
    return set(idir.listdir()) <= {API_CA}.union(KEYGEN_FILES)


def _identity_as_it_is(status, where, p, modes):
    """A failed identity phase left the device's identity as it was (or converging): report
    that one, read without the network, rather than none."""
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import identity_facts

    try:
        facts = identity_facts(where, id_pattern=p["id_pattern"], renew_before_days=p["renew_before_days"],
                               modes=modes)
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


class ApiCa:
    """The API's CA from the controller (``ca_content``), delivered into the identity directory
    before the API client needs it: at once when the directory exists, else as soon as the
    engine created it."""

    def __init__(self, module, directory):
        self.module = module
        self.content = module.params["ca_content"]
        self.path = module.params["ca_path"] if self.content is None else os.path.join(directory, API_CA)
        self.changed = False
        self.done = self.content is None

    def deliver(self, idir):
        if self.done:
            return
        if idir is None:  # no directory yet: check mode says it would, or the engine creates it
            self.changed = self.module.check_mode
            return
        self.done = True
        wanted = check_ca_content(self.content, "the API's CA").encode("utf-8")
        current, _st = idir.read(API_CA)
        if current == wanted:
            self.changed = bool(idir.fix_file(API_CA, 0o644)) if not self.module.check_mode else False
            return
        if not self.module.check_mode:
            idir.create("." + API_CA + ".new", wanted, 0o644)
            idir.rename("." + API_CA + ".new", API_CA)
            idir.fsync()
        self.changed = True


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


def _needs_headers(p, why):
    if p["headers_withheld"]:
        raise HeadersNeeded(why)


def _identity_runner(module, settings, client_factory, held_by=None, headers_withheld=False):
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.engine import Engine

    def identity(idir, check_mode):
        engine = Engine(settings, lambda: client_factory(engine.idir), check_mode=check_mode, warn=module.warn,
                        held_by=held_by, headers_withheld=headers_withheld)
        # Read before the transaction takes the background key, and its record with it; only for a
        # directory that could go (a run on an identity reads no record here).
        by_keygen_pass = (idir is not None and not check_mode and _holds_only_ours(idir)
                          and _made_by_keygen_pass(idir, settings.uid))
        try:
            return engine.run(idir), engine.idir
        except BaseException as exc:
            if engine.idir is not None and engine.idir is not idir:  # one it created: nobody else closes it
                _remove_if_created_for_nothing(engine.idir, settings.location)
                engine.idir.close()
            elif by_keygen_pass and _refused(exc):
                _remove_if_created_for_nothing(idir, settings.location, by_keygen_pass=True)
            raise

    return identity


def _made_by_keygen_pass(idir, uid):
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import prekey

    return prekey.made_the_directory(idir, uid)


def _refused(exc):
    """Whether ``exc`` refused the creation: not a key still being made (KeygenTimeout: it is
    left to finish for the next run), not an interruption (the directory stays as it was)."""
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.prekey import KeygenTimeout

    return isinstance(exc, IdentityError) and not isinstance(exc, KeygenTimeout)


def _runner(module):
    """argv -> (rc, out, err); a program that cannot be started raises OSError (restart.py says
    what it means) instead of failing the module and its report row."""
    def run(argv):
        return module.run_command(argv, handle_exceptions=False)

    return run


def _check(*args, **kwargs):
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.check import run_agent_check

    return run_agent_check(*args, **kwargs)
