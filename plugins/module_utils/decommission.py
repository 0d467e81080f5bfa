# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decommission a device in one call: read its identity, check the operator's confirmation,
delete its ID on the server, and only then remove the files the bundle manages.

The local identity is removed only after the server proved the deletion (the contract's
success answer naming the ID, or the registry's own "unknown ID" answer: ``api.UNKNOWN_ID``),
or when the operator asked for a local-only wipe. Any other outcome (API down, 5xx, a wrong
token, a mistyped endpoint, a 2xx that proves nothing) fails with the server's answer and
leaves every file as it was. Files are removed through the
directory's fd (``unlink`` never follows a link), only those in ``layout.MANAGED_FILES`` /
``MANAGED_PATTERNS``; the directory goes too when nothing else is left in it.
"""
from __future__ import annotations

import os

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certs, lean_cache
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.api import check_agent_id
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import (
    CertificateError,
    ConfigError,
    IdentityError,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.fsutil import IdentityDir
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import prekey
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.layout import CERT, is_managed
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.names import setting
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.safepath import open_directory


class Refused(IdentityError):
    """The run refuses to decommission (no confirmation, nothing to delete on the server)."""


def read_agent_id(idir, id_pattern):
    """The agent ID of the certificate in ``idir`` (its CN), or None when there is none usable."""
    data, _st = idir.read(CERT)
    if data is None:
        return None
    try:
        return check_agent_id(certs.common_name(certs.load_certificate(data)), id_pattern, "certificate CN")
    except (CertificateError, ConfigError):
        return None


def check_confirmation(confirm, agent_id, path, ledger_id=None):
    if agent_id is not None and confirm == agent_id:
        return
    if confirm == "all":
        if ledger_id and agent_id is not None and agent_id != ledger_id:
            # Whoever writes the directory can name any ID in it: "all" deletes only the ledger's.
            raise Refused("Refusing to decommission agent %s (%s): the identity ledger holds %s for this host, "
                          "and %s=all deletes only the ID the ledger holds. Run again with %s=%s if %s is this "
                          "device's ID" % (agent_id, path, ledger_id, setting("confirm"), setting("confirm"),
                                           agent_id, agent_id))
        return
    if agent_id is None:
        raise Refused("Refusing to decommission: no readable identity in %s; set %s=all to wipe it "
                      "(with %s=true: there is no ID to delete on the server)"
                      % (path, setting("confirm"), setting("local_only")))
    raise Refused("Refusing to decommission agent %s (%s): run again with %s=%s, or %s=all for every "
                  "targeted host" % (agent_id, path, setting("confirm"), agent_id, setting("confirm")))


def managed_entries(idir):
    return sorted(name for name in idir.listdir() if is_managed(name))


def remove_managed(idir, names):
    """Unlink ``names`` in ``idir`` (a link is removed itself, never followed)."""
    removed = []
    for name in names:
        try:
            if idir.unlink(name):
                removed.append(name)
        except IsADirectoryError:
            raise IdentityError("cannot remove %s: it is a directory, not a file the bundle wrote"
                                % idir.join(name)) from None
        except OSError as exc:
            raise IdentityError("cannot remove %s: %s (the server already deleted the ID; removed so "
                                "far: %s)" % (idir.join(name), exc.strerror, ", ".join(removed) or "nothing")) from None
    idir.fsync()
    return removed


def remove_directory_if_empty(idir, uid, gid):
    """rmdir the identity directory when nothing is left in it (through its parent's fd, after
    checking that the entry is still the directory we hold). Returns whether it was removed."""
    if idir.listdir():
        return False
    parent, name = os.path.split(idir.path)
    fd, _created = open_directory(parent, uid, gid)
    if fd is None:
        return False
    try:
        st, held = os.stat(name, dir_fd=fd, follow_symlinks=False), os.fstat(idir.fd)
        if (st.st_dev, st.st_ino) != (held.st_dev, held.st_ino):
            return False
        os.rmdir(name, dir_fd=fd)
        return True
    except OSError:
        return False  # e.g. no write permission on the parent: the empty directory stays
    finally:
        os.close(fd)


def decommission(path, uid, gid, confirm, local_only, delete, check_mode=False,
                 id_pattern=None, lock_timeout=600.0, result=None, ledger_id=None):
    """Decommission the identity in ``path``. ``delete(agent_id, path)`` deletes it on the server and
    returns (status, deleted), raising ApiError when the server did not confirm; in check mode
    it is called with ``check=True`` and must only validate. Returns the module's result, built
    in ``result`` (a dict the caller may pass to see how far a failed run got)."""
    result = {} if result is None else result
    result.update(changed=False, path=path, agent_id=None, http_status=None, deleted=False, removed=[],
                  directory_removed=False, code_cache_removed=False)
    idir = IdentityDir.open(path, uid, gid, create=False)
    if idir is None:
        if confirm != "all":
            raise Refused("Refusing to decommission: %s does not exist, so there is no agent ID to "
                          "confirm; %s=all makes this a no-op" % (path, setting("confirm")))
        result.update(action="absent", reason="%s does not exist: nothing to do" % path)
        return result
    with idir:
        idir.lock(timeout=lock_timeout)
        agent_id = read_agent_id(idir, id_pattern)
        result["agent_id"] = agent_id
        check_confirmation(confirm, agent_id, path, None if local_only else ledger_id)
        if local_only:
            result.update(action="removed locally",
                          reason="local-only wipe asked for: the registry was not asked to delete %s"
                          % (agent_id or "any ID"))
        elif agent_id is None:
            raise Refused("Refusing to decommission: no readable identity in %s, so no ID to delete on the "
                          "server; set %s=true to wipe the directory locally" % (path, setting("local_only")))
        else:
            result["http_status"], deleted = delete(agent_id, path, check=check_mode)
            result["deleted"] = deleted and not check_mode
            result.update(action="decommissioned", reason=(
                "the server deleted %s" % agent_id if deleted else
                "the server no longer knows %s (already deleted)" % agent_id))
        names = managed_entries(idir)
        if check_mode:
            result.update(removed=names, changed=bool(names) or not local_only)
            return result
        prekey.stop_running(idir, uid)  # a key made in the background must not appear after the wipe
        names = managed_entries(idir)
        result["removed"] = remove_managed(idir, names)
        result["directory_removed"] = remove_directory_if_empty(idir, uid, gid)
        # The code the lean runs kept for this user goes too (it names no identity).
        result["code_cache_removed"] = lean_cache.forget()
        result["changed"] = bool(result["removed"]) or result["deleted"] or result["directory_removed"]
    return result
