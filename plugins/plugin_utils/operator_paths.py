# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The operator's project as the controller-side plugins see it.

- ``state_path``: a report or ledger path, absolute, refused inside an installed collection
  (module_utils/state.py).
- ``find_operator_file``: a relative ``*_src`` file looked up as ``copy``'s ``src`` is (the
  role's and the playbook's ``files/`` directories), then next to the inventory and in the
  directory ansible-playbook runs in. Run as ``ansible-playbook autonomy_edge.fleet_mtls.provision``,
  the playbook's directory is the installed collection's, so without the last two an operator's
  ``mtls_api_ca_src: files/fleet-ca.crt`` would never be found.
"""
from __future__ import annotations

import os

from ansible import constants as C
from ansible.errors import AnsibleFileNotFound

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import names, state
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError


def collection_paths():
    """Every collections path of this run (configured, playbook-adjacent, the one this code runs from)."""
    try:
        from ansible.utils.collection_loader import AnsibleCollectionConfig

        paths = list(AnsibleCollectionConfig.collection_paths)
    except (ImportError, NotImplementedError):  # no collection finder in this process
        paths = list(C.COLLECTIONS_PATHS or [])
    own = state.own_collections_path()
    return paths + ([own] if own else [])


def state_path(path, variable):
    """``path`` absolute; ConfigError naming ``variable`` when it lies inside an installed collection."""
    return state.checked_state_path(path, variable, collection_paths())


def operator_dirs(task_vars):
    """The inventory's directories (of this host, then of every inventory source), then the
    directory ansible-playbook runs in."""
    dirs = [task_vars.get("inventory_dir")]
    for source in task_vars.get("ansible_inventory_sources") or []:
        if isinstance(source, str) and os.path.exists(source):
            dirs.append(source if os.path.isdir(source) else os.path.dirname(source))
    dirs.append(os.getcwd())
    unique = []
    for directory in dirs:
        if directory and os.path.abspath(directory) not in unique:
            unique.append(os.path.abspath(directory))
    return unique


def find_operator_file(loader, search_path, task_vars, needle, option, kind="files"):
    """The controller file ``needle`` names (see the module docstring), ``kind`` the
    subdirectory searched as copy's (``files``) or template's (``templates``) src is; ConfigError
    listing every place looked at when there is none."""
    try:
        return loader.path_dwim_relative_stack(list(search_path) + operator_dirs(task_vars), kind, needle)
    except AnsibleFileNotFound as exc:
        looked = list(dict.fromkeys(getattr(exc, "paths", None) or [needle]))
        raise ConfigError("%s %s: no such file on the controller; looked in %s (a relative path is found "
                          "as copy's src is, then next to the inventory and in the directory "
                          "ansible-playbook runs in)" % (names.setting(option), needle, ", ".join(looked))) from None
