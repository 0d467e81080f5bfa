# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Directories of state files (the report directory, the ledger's, the metrics textfile
directory), handled like the identity directory: one open directory, every entry through it.

The directory is opened by walking its path from ``/`` one component at a time with
O_NOFOLLOW|O_DIRECTORY (a symlink on the way is refused; ``resolve=True`` first resolves the
path the operator gave, e.g. ``playbook_dir/../reports``, once). Every file, lock and folder in
it is then opened relative to that descriptor with O_NOFOLLOW: a symlink planted at a lock,
a report, the ledger or ``history/`` is refused with a message naming it, never followed (a
root controller would otherwise create, read or write the link's target). Files are replaced
atomically (a temporary O_EXCL file in the same directory, fsync, rename, fsync of the
directory) with their mode whatever the umask.

Standard library only: the device writes its metrics with it too.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
import time

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.fsutil import DirFd, read_at_most, write_all

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _O_CLOEXEC


class StateDirError(OSError):
    """A state directory or file that cannot be used safely; the message names its path."""

    def __init__(self, msg):
        super().__init__(msg)
        self.msg = msg

    def __str__(self):
        return self.msg


def _refusal(path, exc, what="a directory"):
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return StateDirError("refusing to follow %s: it is a symbolic link or not %s (name the real path, "
                             "or remove the link)" % (path, what))
    return StateDirError("cannot open %s: %s" % (path, exc.strerror or exc))


def _child_directory(parent_fd, name, path, create):
    """The fd of directory ``name`` in ``parent_fd`` (created 0755 when missing and ``create``),
    or None when it is missing."""
    try:
        if create:
            try:
                os.mkdir(name, 0o755, dir_fd=parent_fd)
            except FileExistsError:
                pass
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        if create:
            raise StateDirError("cannot open %s: it vanished while being created" % path) from None
        return None
    except OSError as exc:
        raise _refusal(path, exc) from None


class StateDir(DirFd):
    """An open state directory. ``StateDir.open``; close when done (or use ``with``)."""

    def __init__(self, path, fd):
        self.path = path
        self.fd = fd

    @classmethod
    def open(cls, path, create=True, resolve=False):
        """Open the directory ``path`` (absolute; ``resolve``: made absolute and resolved first),
        creating missing components 0755 when ``create``. Returns None when it does not exist
        and ``create`` is false. Raises StateDirError for a symlink on the way."""
        if resolve:
            path = os.path.realpath(path)
        if not os.path.isabs(path):
            raise StateDirError("the directory %r must be an absolute path" % path)
        parts = [part for part in path.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise StateDirError("the directory %r must not contain '..'" % path)
        fd = os.open("/", _DIR_FLAGS)
        try:
            for index, part in enumerate(parts):
                child = _child_directory(fd, part, "/" + "/".join(parts[:index + 1]), create)
                os.close(fd)
                fd = child
                if fd is None:
                    return None
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        return cls("/" + "/".join(parts), fd)

    def subdir(self, name, create=True):
        """The directory ``name`` in this one (never through a link), or None when missing."""
        fd = _child_directory(self.fd, name, self.join(name), create)
        return None if fd is None else StateDir(self.join(name), fd)

    def close(self):
        if self.fd is not None:
            try:
                os.close(self.fd)
            finally:
                self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def join(self, name):
        return os.path.join(self.path, name)

    # ---------------------------------------------------------------- files
    def _open(self, name, flags, mode=0o644):
        try:
            return os.open(name, flags | os.O_NOFOLLOW | _O_CLOEXEC, mode, dir_fd=self.fd)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise _refusal(self.join(name), exc, "a regular file") from None

    def read(self, name, limit, lenient=False):
        """The bytes of the regular file ``name``, or None when it is missing. A symlink, a
        file that is not regular or is larger than ``limit`` bytes raises StateDirError, or
        with ``lenient`` counts as missing (a file the caller may simply replace)."""
        try:
            fd = self._open(name, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except StateDirError:
            if lenient:
                return None
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                if lenient:
                    return None
                raise StateDirError("refusing to read %s: it is not a regular file" % self.join(name))
            data = read_at_most(fd, limit)
        finally:
            os.close(fd)
        if data is None and not lenient:
            raise StateDirError("refusing to read %s: larger than %d bytes" % (self.join(name), limit))
        return data

    def _temporary(self, name, data, mode):
        """A complete new file ``.<name>.<random>.tmp`` holding ``data``: its name."""
        tmp = ".%s.%s.tmp" % (name, secrets.token_hex(6))
        fd = self._open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.fchmod(fd, mode)  # whatever the umask
            write_all(fd, data)
        except BaseException:
            os.close(fd)
            self.unlink(tmp)
            raise
        os.close(fd)
        return tmp

    def write_atomic(self, name, text, mode=0o644):
        """Replace ``name`` with ``text`` (str or bytes): a reader sees the old or the new file.
        The rename replaces whatever entry is there, a symlink included, never its target."""
        data = text.encode("utf-8") if isinstance(text, str) else text
        tmp = self._temporary(name, data, mode)
        try:
            self.rename(tmp, name)
        except BaseException:
            self.unlink(tmp)
            raise
        self.fsync()

    def create_new(self, stem, suffix, text, mode=0o644, tries=1000):
        """Write ``<stem><suffix>`` (or ``<stem>-2<suffix>``, ...) whole, never over an entry that
        exists: a complete temporary file hard-linked under the first free name. Returns it."""
        tmp = self._temporary(stem + suffix, text.encode("utf-8"), mode)
        try:
            for number in range(1, tries + 1):
                name = stem + ("-%d" % number if number > 1 else "") + suffix
                try:
                    os.link(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)
                    self.fsync()
                    return name
                except FileExistsError:
                    continue
            raise StateDirError("no free name for %s%s in %s" % (stem, suffix, self.path))
        finally:
            self.unlink(tmp)

    def append_line(self, name, line, header):
        """Append ``line`` (str, ending in a newline) to ``name`` and fsync it; a new or empty
        file starts with ``header``. A last line cut short (no newline) is ended first, so the
        new line stays whole. For one writer at a time (the caller holds a lock)."""
        try:
            fd = self._open(name, os.O_RDWR | os.O_APPEND | os.O_NONBLOCK)
            created = False
        except FileNotFoundError:
            fd = self._open(name, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL)
            created = True
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise StateDirError("refusing to write %s: it is not a regular file" % self.join(name))
            if st.st_size == 0:
                line = header + line
            elif os.pread(fd, 1, st.st_size - 1) != b"\n":
                line = "\n" + line
            write_all(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            self.fsync()

    @contextlib.contextmanager
    def locked(self, name, timeout, what=None, poll=0.02):
        """Hold an exclusive flock on the file ``name`` (created 0644, never removed: a process
        waiting on a removed lock file would hold a lock nobody else sees)."""
        fd = self._open(name, os.O_RDWR | os.O_CREAT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StateDirError("%s is locked by another run for more than %d s (its lock: %s)"
                                            % (what or self.join(name), timeout, self.join(name))) from None
                    time.sleep(poll)
            yield
        finally:
            os.close(fd)  # closing releases the lock
