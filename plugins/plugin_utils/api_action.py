# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller side shared by the actions of modules that call the provisioning API
(mtls_identity, mtls_deregister): the API headers never become a module argument.

ansible-core prints every module's arguments under ANSIBLE_DEBUG=1, ``no_log`` ones included. So
``headers`` (or the JSON file ``headers_src`` on the controller) go to the device on the standard
input of one ``umask 077; cat > file`` command in Ansible's remote temporary directory - 0600
from the first byte, never in a command line - and the module reads the file it is named by
``headers_file``, then deletes it. The same command removes headers files that interrupted runs
left behind; the directory is removed when the task ends, whatever happened.

A task with ``option_names: role`` speaks the role's vocabulary: every option of the module
(``role_options``) it does not give is read from its role variable (``mtls_*``, templated from the
task's variables) or takes the role's default (option_table), so the role's task passes almost
nothing while a module user passes options directly.

A subclass says what else the controller does before the module (``prepare``, which sees the
headers the controller holds in ``self.controller_headers``), whether the device gets them
(``headers_for_device``), what it does after the module (``after_module``, which may run it again
with ``run_again``) and which report row it makes of the result (``status_row``). Without
headers this adds no round trip.

With ``ledger_path`` (the role's ``mtls_ledger_path``), the row is recorded in the identity
ledger on the controller right after the module returned, so the duplicate-ID guard and the
lost-identity restore always have the host's identity, even after a stopped run: in the role one
line appended to its pending file under the ledger's lock, which every reader applies and the
role's last task writes in once per batch (module_utils/ledger.py); outside the role, written in.
"""
from __future__ import annotations

import json
import shlex
from collections.abc import Mapping

from ansible import constants as C
from ansible.errors import AnsibleActionFail, AnsibleConnectionFailure
from ansible.module_utils.common.validation import check_type_dict
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import controller, ledger, names, option_table
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.plugin_utils import operator_paths


def headers_for_file(value):
    """The task's ``headers`` as a dict of str -> str, or {}; errors never show the value."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = check_type_dict(value)
        except (TypeError, ValueError):
            raise AnsibleActionFail("headers must be a dictionary of header names to values "
                                    "(the value given is not shown)") from None
    if not isinstance(value, Mapping):
        raise AnsibleActionFail("headers must be a dictionary of header names to values, not a %s"
                                % type(value).__name__)
    return {str(name): str(item) for name, item in value.items()}


class ApiAction(ActionBase):
    """Base of the two actions; subclasses override ``prepare``, ``status_row`` and
    ``preflight_row``."""

    _supports_check_mode = True
    _supports_async = True
    # The options a task with option_names=role takes from role variables, and the role entry
    # point whose argument spec checks them.
    role_options = ()
    role_entry_point = "main"

    # The headers (the token) the controller holds for this task: {} when only the device does.
    controller_headers = {}

    # ------------------------------------------------------------------ what subclasses add
    ledger_path = None  # the identity ledger's path once run() took it (None: no ledger)

    def prepare(self, module_args, host, task_vars):
        """Controller work before the module; returns packages to install when the device lacks
        libraries (None: never install)."""
        return None

    def headers_for_device(self, module_args):
        """Whether the controller's headers go to the device (the module's requests need them)."""
        return True

    def may_withhold_headers(self, module_args, task_vars):
        """Whether the module can run without the controller's headers first: it then changes
        nothing if it needs them and says so (``headers_needed``), and runs again with them."""
        return False

    def after_module(self, outcome, module_args, task_vars):
        """Controller work on the module's result (the headers file still exists); returns the
        result to report."""
        return outcome

    def status_row(self, result, host):
        """The host's report row made of the module's result, or None."""
        return None

    def preflight_row(self, host, msg, phase):
        """The report row of a host refused before the module ran (``phase``: preflight, or
        arguments for the role's variables), or None."""
        return None

    # ------------------------------------------------------------------ the run
    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # no longer has any effect
        task_vars = task_vars or {}
        host = task_vars.get("inventory_hostname", "")
        in_role = self._task._role is not None
        module_args = dict(self._task.args)
        role_vocabulary = module_args.get("option_names") == "role"
        names.use_role_names(role_vocabulary or in_role, option_table.ENTRY_POINTS[self.role_entry_point])
        wrap_async = self._task.async_val and not self._connection.has_native_async
        try:  # the task's own arguments and the role's variables, checked before the device is touched
            if role_vocabulary:
                controller.role_arguments(self.role_entry_point, self.role_options, module_args, task_vars,
                                          self._templar.template)
            ledger_path = self.ledger_path = self._take_ledger_path(module_args)
            headers = self._take_headers(module_args, wrap_async, task_vars)
            self.controller_headers = headers
        except (ConfigError, AnsibleActionFail) as exc:
            return self._refuse(result, host, str(exc), "arguments")
        try:
            install = self.prepare(module_args, host, task_vars)
            if in_role:  # the module's messages name the role's variables too
                module_args["option_names"] = "role"
        except (ConfigError, AnsibleActionFail) as exc:
            return self._refuse(result, host, str(exc), "preflight")

        self.headers_path = None
        try:
            outcome = self._run_with_headers(module_args, task_vars, headers, wrap_async, install)
            if not wrap_async:
                outcome = self.after_module(outcome, module_args, task_vars)
        finally:
            if not wrap_async:  # async_wrapper removes its directory itself
                self._cleanup(self.headers_path)
        result = merge_hash(result, outcome)
        row = self.status_row(result, host)
        if row is not None:
            if ledger_path and not self._task.check_mode and not result.get("skipped"):
                row = self._record_in_ledger(result, ledger_path, host, row, append=in_role)
            result["status"] = row
            if not result.get("failed"):
                result["ansible_facts"] = {"mtls_identity_status": row}
        return result

    def _refuse(self, result, host, msg, phase):
        result.update(failed=True, msg=msg, changed=False)
        row = self.preflight_row(host, msg, phase)
        if row is not None:
            result["status"] = row
        return result

    # ------------------------------------------------------------------ the identity ledger
    @staticmethod
    def _take_ledger_path(module_args):
        path = module_args.pop("ledger_path", None)
        return operator_paths.state_path(path, names.setting("ledger_path")) if path else None

    def _record_in_ledger(self, result, path, host, row, append):
        """Record the host's row in the ledger; a ledger that cannot be written fails the host
        (its identity is reported as it is: the device and the registry have it). In the role
        (``append``) one line is appended, a cost that does not grow with the fleet, which the
        role's last task writes into the ledger file once per batch; a task outside the role
        writes the file itself."""
        the_ledger = ledger.Ledger(path)
        try:
            if append:
                the_ledger.append_status(host, row)
            else:
                the_ledger.record_status(host, row)
        except ledger.LedgerError as exc:
            msg = "the identity ledger was not updated: %s (%s)" % (exc, names.setting("ledger_path"))
            result.update(failed=True, msg="%s; %s" % (result["msg"], msg) if result.get("failed") else msg)
            row = controller.failure_status(host, row.get("phase") or "identity", msg, row)
        return row

    # ------------------------------------------------------------------ before the module
    def _take_headers(self, module_args, wrap_async, task_vars):
        """The headers to send to the device (from ``headers`` or ``headers_src``), checked as
        HTTP fields: a refusal names the setting and the header, never the value."""
        headers = controller.check_headers(headers_for_file(module_args.pop("headers", None)),
                                           names.setting("headers"))
        source = module_args.pop("headers_src", None)
        if source:
            if headers:
                raise ConfigError("set either %s or %s, not both" % (
                    names.setting("headers"), names.setting("headers_src")))
            headers = controller.headers_from_source(controller.read_source(
                self.find_source(source, "headers_src", task_vars), "headers_src"))
        if headers:
            if module_args.get("headers_file"):
                raise ConfigError("set either %s or %s, not both (put all the headers in the file)"
                                  % (names.setting("headers"), names.setting("headers_file")))
            if wrap_async:
                raise ConfigError("%s: headers cannot be used with async (their file is removed "
                                  "when the task returns); use headers_file" % self._task.action)
        return headers

    def find_source(self, needle, option, task_vars, kind="files"):
        """The controller file an ``*_src`` (or ``*_template``: ``kind`` templates) option names
        (plugin_utils/operator_paths.py)."""
        return operator_paths.find_operator_file(self._loader, self._task.get_search_path(), task_vars, needle,
                                                 option, kind)

    # ------------------------------------------------------------------ the module
    def _run_with_headers(self, module_args, task_vars, headers, wrap_async, install):
        """Run the module, the controller's headers sent to the device first (``headers_path``) -
        unless it may run without them (``may_withhold_headers``): then only a run that says it
        needs them (``headers_needed``, having changed nothing) is followed by one with them."""
        sending = bool(headers) and self.headers_for_device(module_args)
        if sending and not wrap_async and self.may_withhold_headers(module_args, task_vars):
            module_args["headers_withheld"] = True
            outcome = self._run_module(module_args, task_vars, wrap_async, install)
            if outcome.get("failed") or not outcome.get("headers_needed"):
                return outcome
            del module_args["headers_withheld"]
        if sending:
            self.headers_path = module_args["headers_file"] = self._send_headers(headers)
        return self._took_headers_dir(self._run_module(module_args, task_vars, wrap_async, install))

    def _took_headers_dir(self, outcome):
        """A module that removed the headers' directory (emptied: it deleted the file once read)
        says so: no command of the controller removes it again."""
        if outcome.pop("headers_dir_removed", False) and self.headers_path is not None:
            self._connection._shell.tmpdir = None
            self.headers_path = None
        return outcome

    def _run_module(self, module_args, task_vars, wrap_async, install):
        outcome = self._execute_module(module_args=module_args, task_vars=task_vars,
                                       wrap_async=wrap_async)
        missing = outcome.get("missing_libraries")
        if not (outcome.get("failed") and missing and install):
            return outcome
        # apt, as the package names are Debian's (ansible.builtin.package is an action of its own).
        packages = self._execute_module(module_name="ansible.builtin.apt", task_vars=task_vars,
                                        module_args={"name": install, "state": "present",
                                                     "update_cache": True, "cache_valid_time": 86400})
        if packages.get("failed"):
            outcome["msg"] = ("%s; installing %s failed too: %s (run with become, or install them)"
                              % (outcome.get("msg"), ", ".join(install), packages.get("msg", "")))
            return outcome
        again = self._execute_module(module_args=module_args, task_vars=task_vars, wrap_async=wrap_async)
        again["changed"] = True  # the packages were installed
        again["installed_packages"] = list(install)
        return again

    def run_again(self, module_args, task_vars):
        """Run the module once more with ``module_args`` (its headers file sent again: the module
        deleted the first one once read)."""
        if module_args.pop("headers_withheld", False) or "headers_file" in module_args:
            if self.controller_headers:
                self.headers_path = module_args["headers_file"] = self._send_headers(self.controller_headers)
        return self._took_headers_dir(self._execute_module(module_args=module_args, task_vars=task_vars))

    def _send_headers(self, headers):
        """Write ``headers`` 0600 into the remote temporary directory through the standard input
        of one command (never a command line, never a module argument); return the path. Where
        the task has no such directory yet, one command makes it too (one round trip, not three:
        Ansible's own would expand ``~`` and make it with a command each)."""
        shell = self._connection._shell
        data = json.dumps(headers).encode("utf-8")
        if shell.tmpdir is None and self._one_trip():
            name = shell._generate_temp_dir_name()
            cmd = controller.headers_dir_command(self.get_shell_option("remote_tmp", default="~/.ansible/tmp"), name)
            res = self._low_level_execute_command(cmd, sudoable=False, in_data=data)
            tmpdir = controller.made_dir(res.get("stdout", ""), name)
            if tmpdir is None:
                raise AnsibleConnectionFailure("could not make a temporary directory for the API's headers on the "
                                               "device (rc %s): %s" % (res.get("rc"), res.get("stderr", "")[-300:]))
            shell.tmpdir = tmpdir
            self._cleanup_remote_tmp = True
            path = shell.join_path(tmpdir, controller.HEADERS_FILE_NAME)
        else:
            tmpdir = shell.tmpdir or self._make_tmp_path()
            path = shell.join_path(tmpdir, controller.HEADERS_FILE_NAME)
            cleanup = controller.stale_headers_cleanup(tmpdir.rstrip("/").rsplit("/", 1)[0], path)
            cmd = "%s; umask 077 && cat > %s && test -s %s" % (cleanup, shlex.quote(path), shlex.quote(path))
            res = self._low_level_execute_command(cmd, sudoable=False, in_data=data)
        if res.get("rc", 0) != 0:
            # A connection that gives commands no standard input (podman exec without -i): the
            # file is empty. Transfer it (from a 0600 local temporary file), then restrict it.
            self._transfer_data(path, json.dumps(headers))
            self._remote_chmod([path], "0600")
        return path

    def _one_trip(self):
        """Whether the headers' directory can be made in the same command that writes them: a
        POSIX shell, the remote temporary directory as Ansible would use it for this task (not a
        system one for an unprivileged become user, not the controller's)."""
        return (getattr(self._connection._shell, "SHELL_FAMILY", "") == "sh" and not self._is_become_unprivileged()
                and not getattr(self._connection, "_remote_is_local", False))

    def _cleanup(self, headers_path):
        tmpdir = self._connection._shell.tmpdir
        if headers_path is not None and (C.DEFAULT_KEEP_REMOTE_FILES or not self._should_remove_tmp_path(tmpdir)):
            # The directory is kept (ANSIBLE_KEEP_REMOTE_FILES, or not ours): the headers are not.
            res = self._low_level_execute_command(self._connection._shell.remove(headers_path), sudoable=False)
            if res.get("rc", 0) != 0:
                self._display.warning("%s: could not delete the headers file %s on the device (rc %s)"
                                      % (self._task.action, headers_path, res.get("rc")))
        self._remove_tmp_path(tmpdir)
