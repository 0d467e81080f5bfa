# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of the mtls_deregister module: the API headers are sent to the device as a
0600 file, never as a module argument (plugin_utils/api_action.py), and the result becomes the
host's decommission report row, the fact ``mtls_identity_status``."""
from __future__ import annotations

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import controller, ledger, option_table
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.plugin_utils.api_action import ApiAction


class ActionModule(ApiAction):

    role_options = option_table.DEREGISTER_OPTIONS
    role_entry_point = "decommission"

    def prepare(self, module_args, host, task_vars):
        # The ID the ledger holds for this host: confirm=all deletes only that one on the server.
        if self.ledger_path and not module_args.get("ledger_id"):
            try:
                entry = ledger.Ledger(self.ledger_path).lookup(host)
            except ledger.LedgerError as exc:
                raise ConfigError("cannot read the identity ledger: %s" % exc) from None
            if entry and entry.get("agent_id"):
                module_args["ledger_id"] = entry["agent_id"]
        return None

    def preflight_row(self, host, msg, phase):
        return controller.failure_status(host, phase, msg, {"action": "failed"})

    def status_row(self, result, host):
        row = dict(controller.decommission_status(result), host=host)
        if result.get("failed"):
            row = controller.failure_status(host, "decommission", result.get("msg", ""), row)
        return row
