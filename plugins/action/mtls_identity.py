# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of the mtls_identity module: what only the controller can do, so that one
module run does the device's whole job.

- keep the API headers (the token) off the module's arguments (plugin_utils/api_action.py);
- read ``ca_src`` / ``server_ca_src`` on the controller and hand the module their content;
- turn ``renew_jitter_days`` into this host's stable ``renew_before_days`` offset;
- refuse an agent ID the identity ledger's answer says another host holds, and hand the module
  the ID the ledger holds for this host (``ledger_id``);
- select the phases the role's tags ask for;
- install the device's missing Python libraries (``install_prerequisites``) and run again;
- ask the cloud about the running agent when the controller holds the token (``confirm``: no
  device cost; plugin_utils/cloud.py), else leave it to the module;
- return the module's ``status`` row as the fact ``mtls_identity_status`` for the report.
"""
from __future__ import annotations

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import controller, names
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.plugin_utils.api_action import ApiAction
from ansible_collections.autonomy_edge.fleet_mtls.plugins.plugin_utils.cloud import ControllerCloud

SOURCES = (("ca_src", "ca_content"), ("server_ca_src", "server_ca_content"))


class ActionModule(ApiAction):

    names_role_variables = True
    cloud = None

    def status_row(self, result, host):
        status = result.get("status")
        if not isinstance(status, dict):
            return None
        status = dict(status, host=host)
        if result.get("failed"):
            status = controller.failure_status(host, "identity", result.get("msg", ""), status)
        return status

    def preflight_row(self, host, msg):
        return controller.failure_status(host, "preflight", msg)

    def prepare(self, module_args, host, task_vars):
        """Controller work for mtls_identity; returns the prerequisites to install if needed."""
        module_args.setdefault("host", host)
        answer = (task_vars.get("mtls_ledger") or {}).get(host) or {}
        if answer.get("conflict"):
            raise ConfigError(answer["conflict"])
        if answer.get("ledger_id") and not module_args.get("ledger_id"):
            module_args["ledger_id"] = answer["ledger_id"]
        if self._task._role is not None and "phases" not in module_args:
            module_args["phases"] = controller.phases_for_tags(
                task_vars.get("ansible_run_tags"), task_vars.get("ansible_skip_tags"))
        self.cloud = ControllerCloud.for_task(module_args, self.controller_headers, self._task.check_mode,
                                              lambda path: self._find_needle("files", path))
        for source, content in SOURCES:
            path = module_args.pop(source, None)
            if path:
                if module_args.get(content):
                    raise ConfigError("set either %s or its content, not both" % names.setting(source))
                module_args[content] = controller.read_source(self._find_needle("files", path), source)
        jitter = module_args.pop("renew_jitter_days", None)
        if jitter:
            base = int(module_args.get("renew_before_days", 30))
            offset = controller.jitter_offset(host, jitter)
            valid = int(module_args.get("valid_days", 365))
            if base < valid <= base + offset:
                raise ConfigError(
                    "%s (%d) plus this host's jitter (%d, from %s=%s) must be smaller than %s (%d), or "
                    "every run would rotate" % (names.setting("renew_before_days"), base, offset,
                                                names.setting("renew_jitter_days"), jitter,
                                                names.setting("valid_days"), valid))
            module_args["renew_before_days"] = base + offset
        if self.cloud is not None:
            self.cloud.before_module(module_args)
        install = module_args.pop("install_prerequisites", False)
        packages = module_args.pop("prerequisite_packages", None) or []
        return packages if install else None

    def after_module(self, outcome, module_args, task_vars):
        if self.cloud is None:
            return outcome
        try:
            return self.cloud.after_module(outcome, module_args, lambda args: self.run_again(args, task_vars))
        finally:
            self.cloud.close()
