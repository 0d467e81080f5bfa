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

Check mode asks nothing, except in an audit (a read).
"""
from __future__ import annotations

import time

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.utils.display import Display

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import api, confirm, transport
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ApiError, ConfigError

# ansible-core loads the action class in the process that forks a worker per host and task: a
# library imported here is imported once per run, not once per host (requests: ~50 ms of CPU).
try:
    transport._import_requests()
except ConfigError:  # no requests on the controller: the first question says so
    pass


class ControllerCloud:
    """The questions of one task (one host)."""

    def __init__(self, module_args, client, audit, sleep=time.sleep):
        self.args = module_args
        self.client = client
        self.audit = audit
        self.sleep = sleep
        self.view = None

    @classmethod
    def for_task(cls, module_args, headers, check_mode, find_file):
        """A ControllerCloud when this controller asks (sets ``confirm_by``), else None."""
        if api.confirm_mode(module_args) != "heartbeat" or not headers:
            return None
        audit = boolean(module_args.get("audit") or False, strict=False)
        if check_mode and not audit:
            return None  # check mode asks nothing (and the module neither)
        ca_src = module_args.get("ca_src")
        if module_args.get("ca_path") and not ca_src:
            return None  # the API's CA is a file on the device: the module asks there
        timeout = float(module_args.get("confirm_timeout") or confirm.DEFAULT_TIMEOUT)
        try:
            client = api.ProvisioningClient(
                module_args.get("api_url"), headers=headers, ca_path=find_file(ca_src) if ca_src else None,
                validate_certs=boolean(module_args.get("validate_certs", True), strict=False),
                timeout=min(float(module_args.get("timeout") or api.DEFAULTS["timeout"]), timeout), retries=0,
                id_pattern=module_args.get("id_pattern") or api.DEFAULT_ID_PATTERN,
                confirm_endpoint=module_args.get("confirm_endpoint") or api.DEFAULTS["confirm_endpoint"])
        except ConfigError:
            return None  # an unusable setting: the module refuses it with its own message
        module_args["confirm_by"] = "controller"
        return cls(module_args, client, audit)

    @property
    def timeout(self):
        return float(self.args.get("confirm_timeout") or confirm.DEFAULT_TIMEOUT)

    def close(self):
        self.client.close()

    # ------------------------------------------------------------------ before the module
    def before_module(self, module_args):
        """Ask once about the ID the controller knows for the host; hand the answer over."""
        agent_id = module_args.get("agent_id") or module_args.get("ledger_id")
        try:
            agent_id = api.check_agent_id(agent_id, module_args.get("id_pattern") or api.DEFAULT_ID_PATTERN)
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
        verdict, message = self._review(status, view, since(), module_args)
        if verdict == "heal" and not healing:  # the module restarts the agent, given this answer
            again = dict(module_args, cloud_view=view.as_dict())
            return self.after_module(run_again(again), again, run_again, healing=True)
        return outcome if verdict == "ok" else _failed(outcome, message)

    def _review(self, status, view, since_s, module_args):
        """One answer for a run that changed nothing for the agent (confirm.review), recorded."""
        status.update(confirm.report_fields(view))
        return confirm.review(view, since_s, audit=self.audit, taken_over=bool(status.get("takeover")),
                              stale_minutes=int(module_args.get("confirm_stale_minutes")
                                                or confirm.DEFAULT_STALE_MINUTES))

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
