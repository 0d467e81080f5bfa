# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's questions to the cloud about a host's running agent (``confirm=heartbeat``),
when the controller holds the token: no device cost.

Where the token lives decides who asks. The controller asks when it holds the headers
(``headers``/``headers_src``) and can verify the API itself (``ca_src``, or the system store);
otherwise the module asks from the device (``headers_file``, or an API CA known only by its
path on the device). When the controller asks:

- before the module, when it knows the host's agent ID (``agent_id``, or the ledger's): one
  question, handed to the module as ``cloud_view`` - the evidence against a takeover of a
  pre-assigned ID, and an unchanged run's whole answer (so it costs one request, and an agent
  on an identity older than the last swap is restarted by that very module run);
- after the module, with the question it handed over (``confirmation``): after a swap or a
  restart, poll until the cloud confirms (``confirm.poll``), the seconds since the module's
  reference measured on this controller from its answer (never more than the device's);
  otherwise ask once (``confirm.review``), and run the module again with that view when the
  agent is owed a restart.

Check mode asks nothing, except in an audit (a read): there only the controller asks, and the
token stays on it (the action sends the device no headers).

The options are the module's as the action plugin holds them: only those the task (or the role's
variables) gave, the table's defaults for the others (option_table).
"""
from __future__ import annotations

import time

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.utils.display import Display

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import (
    api,
    confirm,
    option_table,
    options,
    transport,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ApiError, ConfigError

# ansible-core loads the action class in the process that forks a worker per host and task: a
# library imported here is imported once per run, not once per host (requests: ~50 ms of CPU).
try:
    transport._import_requests()
except ConfigError:  # no requests on the controller: the first question says so
    pass


class ControllerCloud:
    """The questions of one task (one host)."""

    def __init__(self, params, client, audit, sleep=time.sleep):
        self.params = params  # the module's options, the table's defaults filled in
        self.client = client
        self.audit = audit
        self.sleep = sleep
        self.view = None

    @classmethod
    def for_task(cls, module_args, headers, check_mode, find_file):
        """A ControllerCloud when this controller asks (sets ``confirm_by``), else None."""
        p = task_params(module_args)
        audit = boolean(p["audit"], strict=False)
        if not headers or (check_mode and not audit):
            return None  # the device's token (the module asks), or check mode (nobody asks)
        if p["ca_path"] and not p["ca_src"]:
            return None  # the API's CA is a file on the device: the module asks there
        try:
            p["confirm_timeout"] = float(p["confirm_timeout"])
            p["timeout"] = float(p["timeout"])
            api_flavor = options.flavor(p)
            if api.confirm_mode(api_flavor, p["confirm"]) != "heartbeat" or api_flavor.heartbeat_endpoint is None:
                return None
            client = options.client(dict(p, validate_certs=boolean(p["validate_certs"], strict=False)), headers,
                                    find_file(p["ca_src"]) if p["ca_src"] else None, api_flavor, polling=True)
        except (ConfigError, TypeError, ValueError):
            return None  # an unusable setting: the module refuses it with its own message
        module_args["confirm_by"] = "controller"
        return cls(p, client, audit)

    @property
    def timeout(self):
        return self.params["confirm_timeout"]

    def close(self):
        self.client.close()

    # ------------------------------------------------------------------ before the module
    def before_module(self, module_args):
        """Ask once about the ID the controller knows for the host; hand the answer over."""
        agent_id = module_args.get("agent_id") or module_args.get("ledger_id")
        try:
            agent_id = api.check_agent_id(agent_id, self.params["id_pattern"])
        except ConfigError:
            return  # none, or one the module refuses
        try:
            self.view = self.client.heartbeat(agent_id)
            module_args["cloud_view"] = self.view.as_dict()
        except ApiError as exc:
            module_args["cloud_view"] = {"agent_id": agent_id, "error": exc.msg}

    # ------------------------------------------------------------------ after the module
    def after_module(self, outcome, module_args, run_again, healing=False):
        """The module's result with the cloud's answer to the question it handed over."""
        handover = outcome.get("confirmation")
        status = outcome.get("status")
        if outcome.get("failed") or not isinstance(handover, dict) or not isinstance(status, dict):
            return outcome
        received = time.monotonic()

        def since():
            return float(handover.get("since_s") or 0.0) + (time.monotonic() - received)

        agent_id = handover.get("agent_id")
        if handover.get("wait"):
            return self._wait(outcome, agent_id, since, handover.get("reference") or "the swap")
        try:
            view = self.client.heartbeat(agent_id)
        except ApiError as exc:
            return self._not_asked(outcome, agent_id, exc)
        verdict, message = self._review(status, view, since())
        if verdict == "heal" and not healing:  # the module restarts the agent, given this answer
            again = dict(module_args, cloud_view=view.as_dict())
            return self.after_module(run_again(again), again, run_again, healing=True)
        return outcome if verdict == "ok" else _failed(outcome, message)

    def _review(self, status, view, since_s):
        """One answer for a run that changed nothing for the agent (confirm.review), recorded."""
        status.update(confirm.report_fields(view))
        return confirm.review(view, since_s, audit=self.audit, taken_over=bool(status.get("takeover")),
                              stale_minutes=int(self.params["confirm_stale_minutes"]))

    def _wait(self, outcome, agent_id, since, reference):
        status = outcome["status"]
        try:
            verdict = confirm.poll(lambda: self.client.heartbeat(agent_id), since, self.timeout,
                                   reference=reference, sleep=self.sleep)
        except ApiError as exc:
            return _failed(outcome, "the cloud could not be asked about agent %s: %s" % (agent_id, exc.msg))
        status.update(confirm.report_fields(verdict.heartbeat))
        if not verdict.ok:
            return _failed(outcome, confirm.failure(agent_id, verdict, self.timeout))
        return outcome

    def _not_asked(self, outcome, agent_id, exc):
        """An unchanged run whose one question failed: its own job is done (a warning); an
        audit fails."""
        message = "the cloud could not be asked about agent %s: %s" % (agent_id, exc.msg)
        if self.audit:
            return _failed(outcome, message)
        Display().warning(message)
        return outcome


def _failed(outcome, message):
    """The module's result as a failure of the confirm phase (what the identity phase did stays)."""
    status = outcome["status"]
    status.update(phase="confirm", error=message)
    outcome.update(failed=True, msg=message)
    return outcome


def task_params(module_args):
    """The module's options as the module will see them: the task's, the table's defaults filled in."""
    p = option_table.defaults()
    p.update((name, value) for name, value in module_args.items() if value is not None)
    return p


def device_asks(module_args):
    """Whether the module asks the cloud about its agent itself (with the headers): the
    controller does not (``for_task`` set no ``confirm_by``) and the confirmation is on."""
    if module_args.get("confirm_by") == "controller":
        return False
    p = task_params(module_args)
    try:
        return api.confirm_mode(options.flavor(p), p["confirm"]) != "none"
    except (ConfigError, KeyError, TypeError, ValueError):
        return True  # an unusable setting: the module refuses it, the headers at hand
