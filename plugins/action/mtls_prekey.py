# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of the mtls_prekey module: the role's variables that decide whether the device
needs a new key, mapped as mtls_identity's action maps them (option_names=role), so both decide
alike - this host's jittered ``renew_before_days``, the ID the identity ledger holds for it, and
the ledger's refusal of an ID another host holds. No headers, no files, no network: one round
trip to the device."""
from __future__ import annotations

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import controller, option_table
from ansible_collections.autonomy_edge.fleet_mtls.plugins.plugin_utils.api_action import ApiAction


class ActionModule(ApiAction):

    role_options = option_table.PREKEY_OPTIONS

    def prepare(self, module_args, host, task_vars):
        controller.apply_ledger_answer(module_args, host, task_vars.get("mtls_ledger"))
        controller.apply_jitter(module_args, host)
        return None

    def preflight_row(self, host, msg, phase):
        return controller.failure_status(host, phase, msg)
