# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of the mtls_identity module: what only the controller can do, so that one
module run does the device's whole job.

- keep the API headers (the token) off the module's arguments (plugin_utils/api_action.py);
- take the options the role's task does not give from the role's variables (option_names=role);
- read ``ca_src`` / ``server_ca_src`` on the controller and hand the module their content;
- render the agent's files from their templates (the role's, or the operator's
  ``agent_*_template``) with the task's variables, as ansible.builtin.template does, and hand
  the module the texts (``agent_templates``): the module fills in the identity directory,
  validates, stages, proves and swaps them;
- turn ``renew_jitter_days`` into this host's stable ``renew_before_days`` offset;
- refuse an agent ID the identity ledger's answer says another host holds, and hand the module
  the ID the ledger holds for this host (``ledger_id``);
- select the phases the role's tags ask for;
- install the device's missing Python libraries (``install_prerequisites``) and run again;
- ask the cloud about the running agent when the controller holds the token (``confirm``: no
  device cost; plugin_utils/cloud.py), else leave it to the module; in an audit the token stays
  on the controller;
- return the module's ``status`` row as the fact ``mtls_identity_status`` for the report;
- run the module without AnsiballZ where Ansible pipelines (plugin_utils/lean_run.py): the
  token never in the script (its file, as always), its values masked in all the run returns.
"""
from __future__ import annotations

import os

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import controller, names, option_table, options
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.agent_files import (
    IDENTITY_DIR_PLACEHOLDER,
    MAX_TEMPLATE_SIZE,
    TEMPLATES,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.plugin_utils import lean_run
from ansible_collections.autonomy_edge.fleet_mtls.plugins.plugin_utils.api_action import ApiAction
from ansible_collections.autonomy_edge.fleet_mtls.plugins.plugin_utils.cloud import ControllerCloud, device_asks

try:
    from ansible.template import trust_as_template  # ansible-core >= 2.19: file text is not trusted
except ImportError:  # pragma: no cover - ansible-core < 2.19
    trust_as_template = None

SOURCES = (("ca_src", "ca_content"), ("server_ca_src", "server_ca_content"))
# The role's templates, also the defaults of a module task outside the role.
ROLE_TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                              "roles", "mtls_identity", "templates")


class ActionModule(ApiAction):

    role_options = tuple(option.name for option in option_table.MODULE_OPTIONS)
    cloud = None

    def status_row(self, result, host):
        status = result.get("status")
        if not isinstance(status, dict):
            return None
        status = dict(status, host=host)
        if result.get("failed"):
            status = controller.failure_status(host, "identity", result.get("msg", ""), status)
        return status

    def preflight_row(self, host, msg, phase):
        return controller.failure_status(host, phase, msg)

    def prepare(self, module_args, host, task_vars):
        """Controller work for mtls_identity; returns the prerequisites to install if needed."""
        module_args.setdefault("host", host)
        controller.apply_ledger_answer(module_args, host, task_vars.get("mtls_ledger"))
        if self._task._role is not None and "phases" not in module_args:
            module_args["phases"] = controller.phases_for_tags(
                task_vars.get("ansible_run_tags"), task_vars.get("ansible_skip_tags"))
        self.cloud = ControllerCloud.for_task(module_args, self.controller_headers, self._task.check_mode,
                                              lambda path: self.find_source(path, "ca_src", task_vars))
        for source, content in SOURCES:
            path = module_args.pop(source, None)
            if path:
                if module_args.get(content):
                    raise ConfigError("set either %s or its content, not both" % names.setting(source))
                module_args[content] = controller.read_source(self.find_source(path, source, task_vars), source)
        self._render_agent_files(module_args, task_vars)
        controller.apply_jitter(module_args, host)
        if self.cloud is not None:
            self.cloud.before_module(module_args)
        install = module_args.pop("install_prerequisites", False)
        packages = module_args.pop("prerequisite_packages", None) or []
        return packages if install else None

    def headers_for_device(self, module_args):
        """An audit reads the cloud from the controller only: its token never reaches the device."""
        return not boolean(module_args.get("audit") or False, strict=False)

    def may_withhold_headers(self, module_args, task_vars):
        """Check mode makes no request; else the identity ledger expects none of this host (it is
        known, not due, not rotated always) and the device will not ask the cloud itself."""
        if self._task.check_mode:
            return True
        answer = (task_vars.get("mtls_ledger") or {}).get(task_vars.get("inventory_hostname"))
        if not isinstance(answer, dict) or answer.get("new_key") is not False or not answer.get("ledger_id"):
            return False
        return module_args.get("rotate") != "always" and not device_asks(module_args)

    def _run_module(self, module_args, task_vars, wrap_async, install):
        spec = options.argument_spec()
        if lean_run.usable(self, wrap_async) and not lean_run.carries_secret(spec, module_args):
            outcome = lean_run.run(self, self._task.action, spec, module_args, task_vars)
            if "lean_unavailable" not in outcome:
                return outcome
        return super()._run_module(module_args, task_vars, wrap_async, install)

    def after_module(self, outcome, module_args, task_vars):
        if self.cloud is None:
            return outcome
        try:
            return self.cloud.after_module(outcome, module_args, lambda args: self.run_again(args, task_vars))
        finally:
            self.cloud.close()

    # ------------------------------------------------------------------ the agent's files
    def _render_agent_files(self, module_args, task_vars):
        """Render the agent's files for the module (``agent_templates``), the identity directory
        left as IDENTITY_DIR_PLACEHOLDER: where it is depends on the owner's home on the device,
        which the module fills in at no extra round trip."""
        sources = {key: module_args.pop(option, None) for key, (option, _name) in TEMPLATES.items()}
        if "config" not in module_args.get("phases", option_table.PHASES) or "agent_templates" in module_args:
            return
        params = option_table.defaults()
        params.update(module_args)
        try:
            agent = options.agent_config(params, IDENTITY_DIR_PLACEHOLDER, None)
        except (ConfigError, TypeError, ValueError, AttributeError):
            return  # an option that cannot work: the module's preflight reports it, by its name
        variables = dict(task_vars)
        variables.update(agent.template_variables())
        module_args["agent_templates"] = {
            key: self._render(self._template_path(key, sources[key], task_vars), variables)
            for key in agent.templates_wanted()}

    def _template_path(self, key, source, task_vars):
        if not source:
            return os.path.join(ROLE_TEMPLATES, TEMPLATES[key][1])
        # As ansible.builtin.template finds its src, then next to the inventory and in the
        # directory ansible-playbook runs in (the operator's project).
        return self.find_source(source, TEMPLATES[key][0], task_vars, kind="templates")

    def _render(self, path, variables):
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_TEMPLATE_SIZE + 1)
        except OSError as exc:
            raise ConfigError("cannot read the template %s: %s" % (path, exc.strerror or exc)) from None
        if len(data) > MAX_TEMPLATE_SIZE:
            raise ConfigError("the template %s is larger than %d bytes" % (path, MAX_TEMPLATE_SIZE))
        text = data.decode("utf-8", "replace")
        templar = self._templar.copy_with_new_env(searchpath=[os.path.dirname(path)], available_variables=variables)
        if trust_as_template is not None:
            return str(templar.template(trust_as_template(text), escape_backslashes=False))
        return str(templar.do_template(text, preserve_trailing_newlines=True, escape_backslashes=False))
