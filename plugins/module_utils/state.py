# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the controller keeps the fleet's state - the report, its history and the identity
ledger - and where it must never: inside an installed collection, which the next
``ansible-galaxy collection install --force`` or upgrade deletes, and with it the ledger's
duplicate-ID guard and lost-identity restore.

``mtls_state_dir`` (default ``fleet-mtls-state``) is relative to the directory ansible-playbook
runs in: the operator's project. Controller-side, standard library only.
"""
from __future__ import annotations

import os

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError

# Where this file lies in an installed collection: <root>/plugins/module_utils/state.py
_DEPTH_IN_COLLECTION = 3


def _parts(path):
    return [part for part in os.path.realpath(path).split(os.sep) if part]


def own_collections_path(module_file=__file__):
    """The collections path of the installed collection this code runs from, or None (a source
    checkout that is not laid out as <path>/ansible_collections/<namespace>/<name>)."""
    root = os.path.realpath(module_file)
    for _level in range(_DEPTH_IN_COLLECTION):
        root = os.path.dirname(root)
    if os.path.basename(os.path.dirname(os.path.dirname(root))) == "ansible_collections":
        return os.path.dirname(os.path.dirname(os.path.dirname(root)))
    return None


def collection_holding(path, collection_paths):
    """The collection directory (``<collections path>/ansible_collections/<ns>/<name>``) that
    ``path`` resolves into, symbolic links followed; None when it lies in none."""
    target = _parts(path)
    for collections_path in collection_paths:
        if not collections_path:
            continue
        base = _parts(collections_path) + ["ansible_collections"]
        # Inside ansible_collections/<ns>/<name>/, or that directory itself.
        if len(target) >= len(base) + 2 and target[:len(base)] == base:
            return os.sep + os.sep.join(target[:len(base) + 2])
    return None


def checked_state_path(path, variable, collection_paths):
    """``path`` made absolute (relative to the directory ansible-playbook runs in); ConfigError
    naming ``variable`` when it resolves inside an installed collection."""
    if not path:
        return path
    absolute = os.path.abspath(os.path.expanduser(path))
    holder = collection_holding(absolute, collection_paths)
    if holder is not None:
        raise ConfigError(
            "%s %s resolves inside the installed collection %s: reinstalling or upgrading the "
            "collection would delete it (and with the identity ledger the duplicate-ID guard and "
            "the lost-identity restore). Set mtls_state_dir (or %s) to a directory of your "
            "project, e.g. -e mtls_state_dir=$PWD/fleet-mtls-state" % (variable, absolute, holder, variable))
    return absolute
