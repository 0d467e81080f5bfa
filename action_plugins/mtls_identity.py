# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of the mtls_identity module (and of mtls_deregister, a symlink to this
file): keep the request headers off the module's arguments.

ansible-core prints every module's arguments under ANSIBLE_DEBUG=1, ``no_log`` ones included
(``done with _execute_module (mtls_identity, {...})``), so a bearer token in ``headers`` would
show there. This plugin takes ``headers`` out of the task's arguments, writes them as JSON to
a file in Ansible's remote temporary directory (0700, made readable for an unprivileged
``become_user`` the way Ansible shares its own files with it), runs the module with
``headers_file`` naming that file, and removes the directory afterwards, whatever happened.

Without headers (the default) it runs the module exactly as the ``normal`` action does: no
extra round trip to the device.
"""
from __future__ import annotations

import json
from collections.abc import Mapping

from ansible import constants as C
from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.validation import check_type_dict
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

HEADERS_FILE_NAME = "mtls-identity-headers.json"


def headers_for_file(value):
    """The task's ``headers`` as a dict of str -> str (as the module would use them), or an
    empty dict. Raises AnsibleActionFail without showing any part of the value."""
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


class ActionModule(ActionBase):

    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # no longer has any effect

        module_args = dict(self._task.args)
        headers = headers_for_file(module_args.pop("headers", None))
        wrap_async = self._task.async_val and not self._connection.has_native_async
        if headers:
            if module_args.get("headers_file"):
                raise AnsibleActionFail("%s: set either headers or headers_file, not both "
                                        "(put all the headers in the file)" % self._task.action)
            if wrap_async:
                raise AnsibleActionFail("%s: headers cannot be used with async (their file is removed "
                                        "when the task returns); use headers_file" % self._task.action)

        headers_path = None
        try:
            if headers:
                headers_path = self._send_headers(headers)
                module_args["headers_file"] = headers_path
            result = merge_hash(result, self._execute_module(
                module_args=module_args, task_vars=task_vars, wrap_async=wrap_async))
        finally:
            if not wrap_async:  # async_wrapper removes its directory itself
                self._cleanup(headers_path)
        return result

    def _send_headers(self, headers):
        """Write ``headers`` to a file in the remote temporary directory; return its path."""
        tmpdir = self._connection._shell.tmpdir
        if tmpdir is None:
            tmpdir = self._make_tmp_path()
        path = self._connection._shell.join_path(tmpdir, HEADERS_FILE_NAME)
        self._transfer_data(path, json.dumps(headers))
        # The directory is 0700 and owned by the connection user: an unprivileged become_user
        # gets read access to it and to the file only (ACL, or chown), never the world.
        self._fixup_perms2([tmpdir, path], execute=False)
        return path

    def _cleanup(self, headers_path):
        tmpdir = self._connection._shell.tmpdir
        if headers_path is not None and (C.DEFAULT_KEEP_REMOTE_FILES or not self._should_remove_tmp_path(tmpdir)):
            # The directory is kept (ANSIBLE_KEEP_REMOTE_FILES, or not ours): the headers are not.
            cmd = self._connection._shell.remove(headers_path)
            res = self._low_level_execute_command(cmd, sudoable=False)
            if res.get("rc", 0) != 0:
                self._display.warning("mtls_identity: could not delete the headers file %s on the "
                                      "device (rc %s)" % (headers_path, res.get("rc")))
        self._remove_tmp_path(tmpdir)
