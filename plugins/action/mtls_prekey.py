# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of the mtls_prekey module (the role's background keygen pass): everything the
mtls_identity action does before its module - the role's variables checked, the headers checked,
the *_src files read, the agent's files rendered, the ledger's answer and this host's jitter - so
that the first pass leaves alone every host the identity task will refuse (a refused run leaves
nothing on the device; the identity task fails it, once), and the module decides with the same
options. The
headers are never sent (the module makes no request), and the result is no report row: the
identity task's is.

Where Ansible would pipeline the module, the pass runs without AnsiballZ (plugin_utils/lean_run.py):
the same code on the device, a third of the device's CPU."""
from __future__ import annotations

from ansible_collections.autonomy_edge.fleet_mtls.plugins.action.mtls_identity import ActionModule as IdentityAction
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.options import argument_spec
from ansible_collections.autonomy_edge.fleet_mtls.plugins.plugin_utils import lean_run


class ActionModule(IdentityAction):

    def _take_headers(self, module_args, wrap_async, task_vars):
        # Refused as the identity task refuses them, then dropped: without headers the controller
        # asks the cloud nothing (plugin_utils/cloud.py) and the device gets none.
        super()._take_headers(module_args, wrap_async, task_vars)
        return {}

    def status_row(self, result, host):
        return None

    def _refuse(self, result, host, msg, phase):
        # The device is not touched; the identity task refuses the host with the same message and
        # its report row, once (one failure per host, not one per task).
        result.update(changed=False, keygen="not started", reason="the identity task refuses this host's %s" % phase)
        return result

    def _run_module(self, module_args, task_vars, wrap_async, install):
        if not lean_run.usable(self, wrap_async):
            return super()._run_module(module_args, task_vars, wrap_async, install)
        return lean_run.run(self, self._task.action, argument_spec(), module_args, task_vars)
