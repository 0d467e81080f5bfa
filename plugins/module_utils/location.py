# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where an identity lives on this device: the one resolver of its owner, group, home and
directory, used by every module (mtls_identity, mtls_identity_info, mtls_check,
mtls_deregister).

``path`` defaults to ``~/.mtls``; ``~`` is the home of ``owner`` (the password database, never
$HOME), and ``owner`` defaults to the user the module runs as. The result is a ``Location``;
what may be done there (write with the ownership rules, or only read) is fsutil's.
"""
from __future__ import annotations

import grp
import os
import pwd

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.layout import CERT, KEY
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.names import setting

DEFAULT_PATH = "~/.mtls"


class Location:
    """An identity directory and the account it belongs to."""

    def __init__(self, *, path, uid, gid, home, owner_given):
        self.path = path
        self.uid = uid
        self.gid = gid
        self.home = home
        self.owner_given = owner_given  # an owner was named (not just "whoever runs the module")

    @property
    def key_path(self):
        return os.path.join(self.path, KEY)

    @property
    def cert_path(self):
        return os.path.join(self.path, CERT)

    def run_as(self):
        """(uid, gid, home) of another user the module, as root, acts for; else None."""
        return (self.uid, self.gid, self.home) if os.geteuid() == 0 and self.uid != 0 else None


def resolve(path, owner, group=None):
    """The Location of ``path`` for ``owner`` (name or numeric ID) and ``group``."""
    entry = account(owner)
    return Location(path=directory(path, entry.pw_dir), uid=entry.pw_uid, gid=group_id(group, entry.pw_gid),
                    home=entry.pw_dir, owner_given=owner not in (None, ""))


def account(owner):
    """The password entry of ``owner`` (a name, or a numeric ID that is no name), or of the
    running user."""
    try:
        if owner in (None, ""):
            return pwd.getpwuid(os.geteuid())
        owner = str(owner)
        if owner.isdigit():
            try:
                return pwd.getpwnam(owner)
            except KeyError:
                return pwd.getpwuid(int(owner))
        return pwd.getpwnam(owner)
    except KeyError:
        raise ConfigError("%s %s does not exist on this device: create the agent's user first"
                          % (setting("owner"), owner)) from None


def group_id(group, default_gid):
    if group in (None, ""):
        return default_gid
    group = str(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        pass
    if group.isdigit():
        return int(group)
    raise ConfigError("%s %r does not exist on this device" % (setting("group"), group))


def directory(path, home):
    """``path`` (``~`` is ``home``; ``~user`` that user's), absolute and normalised."""
    path = path or DEFAULT_PATH
    if path == "~" or path.startswith("~/"):
        path = home + path[1:]
    elif path.startswith("~"):
        path = os.path.expanduser(path)
    if not os.path.isabs(path):
        raise ConfigError("%s must be an absolute path (or start with ~/), got %r" % (setting("path"), path))
    return os.path.normpath(path)
