# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Safe file operations inside the identity directory.

The directory is opened by walking its path from ``/`` one component at a time with
O_NOFOLLOW|O_DIRECTORY (``safepath``): no symbolic link at any depth, no directory on the path
that someone other than root or the owner could change. Everything then works relative to
that directory's file descriptor, so a symlink swapped in for the key or the certificate is
refused instead of followed. New files are created with O_CREAT|O_EXCL|O_NOFOLLOW and their
final mode (a key is 0600 from its first byte), handed to the owner before any byte is written,
fsync-ed, and moved into place by rename within the directory (atomic). An exclusive flock on
the directory serialises concurrent runs.

Who may change what: a file or directory this run created is the owner's from its first byte.
Anything else is chmod-ed (or given the owner's group) only when it already belongs to the
owner and has a single link: a file with a second name (a hard link, perhaps outside the
directory) would carry the change to that other name. A root-owned entry when the owner is
not root is never handed over: in a path only root and the owner can write, root put it
there (an earlier run as root, or the operator), and it may be another identity's; the run
refuses and says so. Entries owned by anyone else are refused outright.
"""
from __future__ import annotations

import errno
import fcntl
import grp
import os
import stat
import time

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import (
    FileSafetyError,
    LockError,
    UnreadableError,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.safepath import (
    open_directory,
    open_directory_to_read,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.safepath import user_name as _owner_name

MAX_FILE_SIZE = 1024 * 1024
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def mode_str(st_mode):
    return "%04o" % stat.S_IMODE(st_mode)


def _group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def read_at_most(fd, limit):
    """All the bytes left in ``fd``, or None when there are more than ``limit`` (then at most
    limit + 64 KiB are read: a file that grows while read cannot make the caller hold it all)."""
    chunks = []
    total = 0
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)


def stat_facts(st):
    if st is None:
        return None
    return {
        "mode": mode_str(st.st_mode),
        "owner": _owner_name(st.st_uid),
        "group": _group_name(st.st_gid),
        "uid": st.st_uid,
        "gid": st.st_gid,
    }


def write_all(fd, data):
    """Write every byte of ``data`` to ``fd`` (os.write may write less), then fsync it."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


class DirFd:
    """Renames, unlinks and fsyncs relative to an open directory (``self.fd``): never through a
    path, so a directory swapped for a link meanwhile is never acted through."""

    fd = None

    def rename(self, src, dst):
        os.rename(src, dst, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def unlink(self, name):
        try:
            os.unlink(name, dir_fd=self.fd)
            return True
        except FileNotFoundError:
            return False

    def fsync(self):
        os.fsync(self.fd)


class IdentityDir(DirFd):
    """An open, verified identity directory. Use ``IdentityDir.open``; close when done."""

    def __init__(self, path, fd, uid, gid, trusted_uids):
        self.path = path
        self.fd = fd
        self.uid = uid
        self.gid = gid
        self.trusted_uids = trusted_uids
        self.locked = False
        self.created = False  # whether this run created the directory

    # ---------------------------------------------------------------- opening and locking
    @classmethod
    def open(cls, path, uid, gid, create=False):
        """Open ``path``; create it (mode 0700, owned by uid/gid, parents 0755) when missing and
        ``create``. Returns None when it does not exist and ``create`` is false.

        Raises FileSafetyError for a symlink or an unsafe directory at any depth of the path
        (see ``safepath``), or a directory owned by another user than the owner or root.
        """
        fd, created = open_directory(path, uid, gid, create)
        if fd is None:
            return None
        self = cls(path, fd, uid, gid, {os.geteuid(), uid, 0})
        self.created = created
        return self

    @classmethod
    def open_to_read(cls, path):
        """Open ``path`` only to read it (mtls_identity_info, an audit): whoever owns it, as
        root may read any user's identity; still never through a symbolic link. Returns None
        when it does not exist; raises UnreadableError when it cannot be read."""
        fd = open_directory_to_read(path)
        if fd is None:
            return None
        st = os.fstat(fd)
        return cls(path, fd, st.st_uid, st.st_gid, None)

    def close(self):
        if self.fd is not None:
            try:
                os.close(self.fd)  # also releases the flock
            finally:
                self.fd = None
                self.locked = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def lock(self, timeout=600.0, poll=0.05):
        """Take an exclusive flock on the directory; wait up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.locked = True
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise LockError("cannot lock %s: %s" % (self.path, exc.strerror)) from None
            if time.monotonic() >= deadline:
                raise LockError(
                    "another run holds the lock on %s for more than %d s" % (self.path, timeout)
                )
            time.sleep(poll)

    # ---------------------------------------------------------------- reading
    def join(self, name):
        return os.path.join(self.path, name)

    def lstat(self, name):
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def exists(self, name):
        return self.lstat(name) is not None

    def _open_existing(self, name, flags):
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | _O_CLOEXEC, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise FileSafetyError("refusing to follow %s: it is a symbolic link" % self.join(name)) from None
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise UnreadableError("cannot open %s: %s" % (self.join(name), exc.strerror)) from None
            raise FileSafetyError("cannot open %s: %s" % (self.join(name), exc.strerror)) from None

    def _check_file(self, name, st):
        if not stat.S_ISREG(st.st_mode):
            raise FileSafetyError("refusing to use %s: it is not a regular file" % self.join(name))
        if self.trusted_uids is not None and st.st_uid not in self.trusted_uids:
            raise FileSafetyError(
                "refusing to use %s: it is owned by %s, not by the running user, the requested "
                "owner or root" % (self.join(name), _owner_name(st.st_uid))
            )

    def read(self, name, limit=MAX_FILE_SIZE):
        """(bytes, stat) of a regular file, or (None, None) when it does not exist."""
        fd = self._open_existing(name, os.O_RDONLY)
        if fd is None:
            return None, None
        try:
            st = os.fstat(fd)
            self._check_file(name, st)
            data = None if st.st_size > limit else read_at_most(fd, limit)
            if data is None:
                raise FileSafetyError("refusing to read %s: larger than %d bytes" % (self.join(name), limit))
            return data, st
        finally:
            os.close(fd)

    def listdir(self):
        return os.listdir(self.fd)

    # ---------------------------------------------------------------- writing
    def _fix(self, fd, st, mode, name=None):
        """Give the owner's entry ``fd`` the owner's group and ``mode``. Refuses (see the module
        doc) an entry of someone else, or a file with more than one link."""
        what = self.join(name) if name else self.path
        if st.st_uid != self.uid:
            if st.st_uid == 0:
                raise FileSafetyError(
                    "refusing to change %s: it belongs to root, not to %s, and this run did not "
                    "create it (root-owned entries are never handed over: it may be another "
                    "identity's). If it is this device's identity, chown it to %s yourself; "
                    "otherwise remove it." % (what, _owner_name(self.uid), _owner_name(self.uid)))
            raise FileSafetyError("refusing to change %s: it is owned by %s, not by %s" % (
                what, _owner_name(st.st_uid), _owner_name(self.uid)))
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            raise FileSafetyError(
                "refusing to change %s: it has %d links (another name for the same file, perhaps "
                "outside the directory, would change too); never chmod-ed through a link"
                % (what, st.st_nlink))
        changes = []
        if st.st_gid != self.gid:
            try:
                os.fchown(fd, self.uid, self.gid)
            except OSError as exc:
                raise FileSafetyError("cannot change the group of %s: %s" % (what, exc.strerror)) from None
            changes.append("owner")
        if stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
            changes.append("mode")
        return changes

    def create(self, name, data, mode):
        """Create ``name`` with exactly ``mode`` and owner from the first byte, write, fsync.

        An existing file of that name (a stale staging file) is removed first.
        """
        self.unlink(name)
        # The creation mode is never wider than the final one; the umask can only narrow it,
        # and the fchmod below (before any byte is written) makes it exact.
        fd = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _O_CLOEXEC, mode,
            dir_fd=self.fd,
        )
        try:
            st = os.fstat(fd)
            if st.st_uid != self.uid or st.st_gid != self.gid:
                os.fchown(fd, self.uid, self.gid)
            if stat.S_IMODE(st.st_mode) != mode:
                os.fchmod(fd, mode)
            write_all(fd, data)
        except BaseException:
            os.close(fd)
            self.unlink(name)
            raise
        os.close(fd)

    def link(self, src, dst):
        os.link(src, dst, src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)

    def fix_file(self, name, mode):
        """Set mode and owner of ``name`` (no symlink follow). Returns the list of changes."""
        fd = self._open_existing(name, os.O_RDONLY)
        if fd is None:
            return []
        try:
            st = os.fstat(fd)
            self._check_file(name, st)
            return self._fix(fd, st, mode, name)
        finally:
            os.close(fd)

    def fix_self(self, mode=0o700):
        return self._fix(self.fd, os.fstat(self.fd), mode)

    def dir_stat(self):
        return os.fstat(self.fd)
