# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side action: what the identity ledger says about the hosts of a batch, once.

Run once per batch (``run_once``), before the identity task: for each host, the ID the ledger
holds for it (handed to mtls_identity as ``ledger_id``, so a device that lost its identity can
get it back) and, when two hosts would use one agent ID (pre-assigned ``mtls_agent_id`` values,
or an ID another host of the inventory holds in the ledger), a conflict that the mtls_identity
action refuses before anything changes; and whether the host is expected to need a new key in
this run (``new_key``: not in the ledger yet, or due by the renewal date it holds), which picks
the hosts of the role's background key generation without a round trip. The answer is the fact
``mtls_ledger`` (one dict for the batch, keyed by host), and ``mtls_ledger_keygen_hosts``: the hosts
that pass will start a key on, so that a batch with none skips it once, not once per host. Each
host's record is a line the mtls_identity and mtls_deregister actions append to the ledger's
pending file right after its module run; with ``write_pending`` (the role's last task, once per
batch) this action writes them into the ledger, as the report's write does. Before it answers, it
writes in what a stopped run left. The run prints where the ledger is (once per batch); a path
inside an installed collection is refused.
"""
from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import ledger
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.plugin_utils import operator_paths

SPEC = {
    "path": {"type": "path", "required": True},
    "hosts": {"type": "list", "elements": "str"},
    "agent_id_variable": {"type": "str", "default": "mtls_agent_id"},
    "write_pending": {"type": "bool", "default": False},
}


def planned_ids(hostvars, hosts, variable):
    """{host: pre-assigned ID or ""}; a value that is not a string is left to the module,
    which refuses it with its own message."""
    planned = {}
    for host in hosts:
        value = hostvars[host].get(variable) if host in hostvars else None
        planned[host] = value if isinstance(value, str) else ""
    return planned


def conflicts(dups, claims_of):
    """{host: message} for every host that shares an ID with another one."""
    found = {}
    for agent_id, hosts in dups.items():
        for host in hosts:
            others = [h for h in hosts if h != host]
            found[host] = (
                "agent ID %s would be used by %s and by %s (%s): refusing before any change. Give each "
                "host its own mtls_agent_id, or decommission the other host first"
                % (agent_id, host, ", ".join(others), claims_of(agent_id, host)))
    return found


def keygen_hosts(answer, hostvars):
    """The hosts the role's background keygen pass will start a key on: expected to need a new
    key, or set to rotate always by their own variables (the pass reads them per host)."""
    def rotates_always(host):
        return host in hostvars and hostvars[host].get("mtls_rotate") == "always"

    return sorted(host for host, said in answer.items() if said["new_key"] or rotates_always(host))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(SPEC)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self.validate_argument_spec(argument_spec=SPEC)[1]
        hosts = args["hosts"] if args["hosts"] is not None else list(task_vars.get("ansible_play_batch") or [])
        inventory = list((task_vars.get("groups") or {}).get("all") or hosts)
        try:
            path = operator_paths.state_path(args["path"], "mtls_ledger_path")
        except ConfigError as exc:
            raise AnsibleActionFail(str(exc)) from None
        the_ledger = ledger.Ledger(path)
        warnings = []
        if args["write_pending"]:
            return self._write_pending(result, the_ledger, warnings)
        self._display.display("fleet-mtls: identity ledger %s" % path)
        try:
            if not self._task.check_mode:
                the_ledger.fold(warnings)  # the hosts' records of a stopped run
            the_ledger = the_ledger.snapshot()
            planned = planned_ids(task_vars.get("hostvars") or {}, hosts, args["agent_id_variable"])
            dups = the_ledger.duplicate_ids(planned, current_hosts=inventory)
            known = the_ledger.hosts()
        except ledger.LedgerError as exc:
            raise AnsibleActionFail("cannot read the identity ledger: %s" % exc) from None

        def claims_of(agent_id, host):
            held = [c["host"] for c in the_ledger.claims(agent_id) if c["current"] and c["host"] != host]
            return ("the ledger says %s holds it" % ", ".join(held)) if held else "pre-assigned in the inventory"

        found = conflicts(dups, claims_of)
        now = ledger.utc_now()
        answer = {host: {"ledger_id": (known.get(host) or {}).get("agent_id") or "",
                         "conflict": found.get(host, ""),
                         "new_key": ledger.expects_new_key(known.get(host), now)} for host in hosts}
        keygen = keygen_hosts(answer, task_vars.get("hostvars") or {})
        if warnings:
            result["warnings"] = warnings
        result.update(changed=False, path=path, conflicts=sorted(found),
                      ansible_facts={"mtls_ledger": answer, "mtls_ledger_keygen_hosts": keygen})
        return result

    def _write_pending(self, result, the_ledger, warnings):
        """The batch's records, appended by each host's action, written into the ledger file
        (not in check mode, which appends none). changed stays false: it is the controller's
        bookkeeping, like the report's."""
        written = 0
        if not self._task.check_mode:
            try:
                written = the_ledger.fold(warnings)
            except ledger.LedgerError as exc:
                raise AnsibleActionFail("cannot write the identity ledger: %s" % exc) from None
        if warnings:
            result["warnings"] = warnings
        result.update(changed=False, path=the_ledger.path, written=written)
        return result
