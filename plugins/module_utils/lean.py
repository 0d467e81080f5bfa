# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The device's side of a module run without AnsiballZ (plugin_utils/lean_run.py): the options
the controller checked, their paths expanded here as AnsibleModule expands them, the little of
AnsibleModule a run uses (``LeanModule``), and the result printed as a module prints it.

The API's headers never travel in the script (the controller refuses a no_log value there): a
run that uses them reads the file the action plugin wrote, and ``emit`` masks the values it
read (``no_log_values``) in all the run returns, as AnsibleModule's ``remove_values`` does.
"""
from __future__ import annotations

import datetime
import json
import locale
import os
import subprocess
import sys
import tempfile


def device_params(request, argument_spec):
    """The request's options, those of type path expanded (``~`` is this device user's)."""
    params = dict(request["params"])
    for name, option in argument_spec.items():
        if option.get("type") == "path" and params.get(name) is not None:
            params[name] = os.path.expanduser(os.path.expandvars(params[name]))
    return params


class LeanModule:
    """What the bundle's runs use of AnsibleModule: ``params``, ``check_mode``, ``warn``,
    ``no_log_values`` and ``run_command`` (argv only, no shell, as every caller here runs it)."""

    def __init__(self, params, check_mode):
        self.params = params
        self.check_mode = bool(check_mode)
        self.warnings = []
        self.no_log_values = set()
        _usable_process()

    def warn(self, msg):
        self.warnings.append(msg)

    @staticmethod
    def run_command(argv, handle_exceptions=False):
        """(rc, stdout, stderr) of ``argv``, each argument's ``~`` and variables expanded as
        AnsibleModule.run_command expands them; a program that cannot be started raises OSError.
        Standard input is /dev/null: the module's own is the controller's pipe."""
        del handle_exceptions  # always raised: the callers handle it
        argv = [os.path.expanduser(os.path.expandvars(arg)) for arg in argv if arg is not None]
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, close_fds=True,  # noqa: S603
                              check=False)
        return (proc.returncode, proc.stdout.decode("utf-8", "surrogateescape"),
                proc.stderr.decode("utf-8", "surrogateescape"))


def _usable_process():
    """As AnsibleModule starts: a locale that works (else C.UTF-8, for the programs run too) and
    a working directory this user can read (after become it may be another's home)."""
    try:
        locale.setlocale(locale.LC_ALL, "")
    except locale.Error:
        os.environ["LANG"] = os.environ["LC_ALL"] = "C.UTF-8"
    try:
        if os.access(os.getcwd(), os.F_OK | os.R_OK):
            return
    except OSError:
        pass
    for directory in (os.path.expandvars("$HOME"), tempfile.gettempdir()):
        if os.access(directory, os.F_OK | os.R_OK):
            os.chdir(directory)
            return


def _plain(value):
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    raise TypeError("not JSON: %s" % type(value).__name__)


NO_LOG = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def mask(value, secrets):
    """``value`` with ``secrets`` taken out as AnsibleModule's ``remove_values`` takes them: a
    string that is one becomes NO_LOG, in any other each is replaced by ******** (the longest
    first), a number that shows one becomes NO_LOG; containers are walked, keys kept."""
    secrets = sorted({str(secret) for secret in secrets if secret}, key=len, reverse=True)
    return _mask(value, secrets) if secrets else value


def _mask(value, secrets):
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value in secrets:
            return NO_LOG
        for secret in secrets:
            value = value.replace(secret, "*" * 8)
        return value
    if isinstance(value, (int, float)):
        return NO_LOG if any(secret in str(value) for secret in secrets) else value
    if isinstance(value, dict):
        return {key: _mask(item, secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_mask(item, secrets) for item in value]
    return value


def emit(result, module=None):
    """Print ``result`` (with the run's warnings), the run's secrets masked in all of it, as the
    module's answer."""
    if module is not None:
        if module.warnings:
            result = dict(result, warnings=list(result.get("warnings", [])) + module.warnings)
        result = mask(result, module.no_log_values)
    sys.stdout.write(json.dumps(result, default=_plain))
    sys.stdout.flush()
