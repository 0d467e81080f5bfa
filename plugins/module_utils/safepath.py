# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Open a directory by walking its path from ``/``, one component at a time, through fds.

Each component is opened with ``openat(parent_fd, name, O_NOFOLLOW|O_DIRECTORY)``, so no
symbolic link is ever followed, at any depth, and nothing can be swapped in between the check
of a component and the use of what lies below it. Every component must be safe, the rule of
OpenSSH's StrictModes adapted to a run that acts for ``owner``:

- owned by root or by the owner (anyone else who owns a directory can rename what is in it);
- not writable by anyone else:
  - world-writable only with the sticky bit (``/tmp``): then only root, the owner and the
    entries' owners can rename what follows, and what follows must itself be owned by root or
    the owner (checked on the next component);
  - group-writable only when every member of the group is root or the owner (the group
    database's member list and every account whose primary group it is, as the user private
    groups of Debian's ``adduser``), or with the sticky bit; a group-writable directory that
    carries an access ACL is refused (its named users cannot be told from the mode bits).

Missing components are created (``create=True``) through the same fds: intermediate
directories 0755, the last one 0700, all owned by the owner, with their exact mode whatever
the umask.
"""
from __future__ import annotations

import errno
import grp
import os
import pwd
import stat

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import FileSafetyError, UnreadableError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.names import setting

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# Intermediate components only need to be searched: O_PATH needs no read permission on them
# (a 0711 home). The last one is opened for real (flock, fsync, listdir need it).
_O_SEARCH = getattr(os, "O_PATH", os.O_RDONLY)
INTERMEDIATE_MODE = 0o755
LAST_MODE = 0o700


def user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_members(gid):
    """Account names in group ``gid`` (listed members and accounts whose primary group it is);
    None when the group is unknown."""
    try:
        members = set(grp.getgrgid(gid).gr_mem)
    except KeyError:
        return None
    members.update(entry.pw_name for entry in pwd.getpwall() if entry.pw_gid == gid)
    return members


def _uid_of(name):
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None  # a listed member without an account: counted as someone else


def _has_access_acl(fd):
    getxattr = getattr(os, "getxattr", None)  # Linux only
    if getxattr is None:
        return False
    try:
        getxattr("/proc/self/fd/%d" % fd, "system.posix_acl_access")
        return True
    except OSError:
        return False  # none, or no ACL support


def _foreign_writers(st, fd, owner_uid):
    """Who else than root and the owner may write in the directory ``st``, or None."""
    mode = st.st_mode
    if mode & stat.S_ISVTX:
        return None  # sticky: others cannot rename entries they do not own
    if mode & stat.S_IWOTH:
        return "every user (mode %04o)" % stat.S_IMODE(mode)
    if not mode & stat.S_IWGRP:
        return None
    if _has_access_acl(fd):
        return "the users of its access ACL (mode %04o)" % stat.S_IMODE(mode)
    members = group_members(st.st_gid)
    if members is None:
        return "the members of group %d, an unknown group (mode %04o)" % (st.st_gid, stat.S_IMODE(mode))
    others = sorted(m for m in members if _uid_of(m) not in (0, owner_uid))
    if others:
        return "group %s, whose members include %s (mode %04o)" % (
            grp.getgrgid(st.st_gid).gr_name, ", ".join(others[:5]), stat.S_IMODE(mode))
    return None


def permission_advice(exc, owner_uid):
    """What to do about a permission error of a run that is not root ("" otherwise): the usual
    cause is a play without ``become`` writing another user's ~/.mtls."""
    me = os.geteuid()
    if me == 0 or getattr(exc, "errno", None) not in (errno.EACCES, errno.EPERM):
        return ""
    if owner_uid != me:
        return (" (the module runs as %s, not root: run the play with become: true to write %s's "
                "identity, or set %s to %s)" % (user_name(me), user_name(owner_uid), setting("owner"), user_name(me)))
    return (" (the module runs as %s, not root: run the play with become: true, or set %s to a "
            "directory %s may write)" % (user_name(me), setting("path"), user_name(me)))


class _Walk:
    def __init__(self, path, uid, gid, create, owners=True):
        if not isinstance(path, str) or not os.path.isabs(path) or os.path.normpath(path) != path \
                or path.startswith("//"):
            raise FileSafetyError("refusing to use %r: the path must be absolute and normalised" % (path,))
        self.path = path
        self.uid = uid
        self.gid = gid
        self.create = create
        self.owners = owners  # the ownership rules: only for a run that writes
        self.created = False

    def fail(self, component, why, advice):
        raise FileSafetyError("refusing to use %s: %s %s; %s" % (self.path, component, why, advice))

    def check(self, component, fd, st):
        if not stat.S_ISDIR(st.st_mode):
            self.fail(component, "is not a directory", "name the identity directory in %s" % setting("path"))
        if not self.owners:
            return
        if st.st_uid not in (0, self.uid):
            self.fail(component, "is owned by %s, not by root or %s" % (user_name(st.st_uid), user_name(self.uid)),
                      "whoever owns a directory on the path can swap what lies below it: name a path "
                      "whose directories belong to root or %s" % user_name(self.uid))
        writers = _foreign_writers(st, fd, self.uid)
        if writers:
            self.fail(component, "is writable by %s, without the sticky bit" % writers,
                      "anyone who can write it can swap what lies below it: remove that write "
                      "permission (e.g. chmod go-w %s) or name another path" % component)

    def step(self, parent_fd, parent, name, last):
        """Open ``name`` under ``parent_fd``; returns its fd, or None when it is missing."""
        component = os.path.join(parent, name)
        mode = LAST_MODE if last else INTERMEDIATE_MODE
        flags = (os.O_RDONLY if last else _O_SEARCH) | os.O_DIRECTORY | os.O_NOFOLLOW | _O_CLOEXEC
        made = False
        try:
            fd = self._openat(parent_fd, name, flags, component)
        except FileNotFoundError:
            if not self.create:
                return None
            try:
                os.mkdir(name, mode, dir_fd=parent_fd)
                made = True
                # mkdir's mode is filtered by the umask. The parent is safe (checked): nobody
                # else can have swapped the new entry for a link since.
                os.chmod(name, mode, dir_fd=parent_fd)
            except FileExistsError:
                pass  # made by a concurrent run: open it as it is
            except OSError as exc:
                raise FileSafetyError("cannot create %s: %s%s" % (
                    component, exc.strerror, permission_advice(exc, self.uid))) from None
            # A directory the run made is opened for real: it is fchown-ed below.
            fd = self._openat(parent_fd, name, (os.O_RDONLY if made else flags) | os.O_DIRECTORY
                              | os.O_NOFOLLOW | _O_CLOEXEC, component)
        try:
            st = os.fstat(fd)
            if made and st.st_uid == os.geteuid():
                st = self._hand_over(fd, st, component, mode)
                self.created = self.created or last
            self.check(component, fd, st)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _openat(self, parent_fd, name, flags, component):
        try:
            return os.open(name, flags, dir_fd=parent_fd)
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                self._not_a_directory(parent_fd, name, component)
            if exc.errno in (errno.EACCES, errno.EPERM) and not self.owners:  # a reader
                raise UnreadableError("cannot open %s: %s (run as its owner, or as root with become)"
                                      % (component, exc.strerror)) from None
            raise FileSafetyError("cannot open %s: %s%s" % (
                component, exc.strerror, permission_advice(exc, self.uid))) from None

    def _not_a_directory(self, parent_fd, name, component):
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except OSError:
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode):
            try:
                target = " (to %s)" % os.readlink(name, dir_fd=parent_fd)
            except OSError:
                target = ""
            self.fail(component, "is a symbolic link%s" % target,
                      "symbolic links are never followed, at any depth of the path: set %s to the "
                      "real path" % setting("path"))
        self.fail(component, "is not a directory", "name the identity directory in %s" % setting("path"))

    def _hand_over(self, fd, st, component, mode):
        """A directory this run just created: exact mode and the owner's."""
        try:
            if (st.st_uid, st.st_gid) != (self.uid, self.gid):
                os.fchown(fd, self.uid, self.gid)
            if stat.S_IMODE(st.st_mode) != mode:
                os.fchmod(fd, mode)
        except OSError as exc:
            raise FileSafetyError("cannot hand %s over to %s: %s%s" % (
                component, user_name(self.uid), exc.strerror, permission_advice(exc, self.uid))) from None
        return os.fstat(fd)

    def open(self):
        """(fd of the directory, whether this run created it), or (None, False) when missing."""
        fd = os.open("/", (os.O_RDONLY if self.path == "/" else _O_SEARCH) | os.O_DIRECTORY | _O_CLOEXEC)
        try:
            self.check("/", fd, os.fstat(fd))
            names = [n for n in self.path.split("/") if n]
            parent = "/"
            for index, name in enumerate(names):
                child = self.step(fd, parent, name, index == len(names) - 1)
                os.close(fd)
                fd = child
                if fd is None:
                    return None, False
                parent = os.path.join(parent, name)
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        return fd, self.created


def open_directory(path, uid, gid, create=False):
    """Open the directory ``path`` safely for a run acting as ``uid``/``gid`` (module doc).

    Returns (fd, created) or (None, False) when it (or a parent) is missing and not ``create``.
    Raises FileSafetyError naming the unsafe component and what to do.
    """
    return _Walk(path, uid, gid, create).open()


def open_directory_to_read(path):
    """Open ``path`` to read it, whoever owns it (root may read any user's identity): still no
    symbolic link at any depth. Returns the fd, or None when it is missing; raises
    UnreadableError when the running user may not read it."""
    return _Walk(path, None, None, False, owners=False).open()[0]
