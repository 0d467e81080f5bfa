# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lean runs' compiled code, kept on the device between runs (plugin_utils/lean_run.py).

A lean run receives the bundle's module_utils as source. Compiling them was a third of the
background keygen pass's device CPU (26 of 85 ms, Debian 12's python3) and about half of an
unchanged identity run's: a board at 5 % of a core pays each millisecond 20 times, in wall time.
So, as Python keeps a module's bytecode, the code compiled for one bundle (its sources' hash,
``key``) and one interpreter is kept in the home (from the password database, never ``$HOME``:
after become, the environment may still name the connecting user's) of the user the run runs as::

    ~/.cache/fleet-mtls/lean-<key>-<interpreter>.code    0600: a header with the CRC of the
                                                         rest, then marshal of {module: marshal
                                                         of its code}

It is read only when what holds it is this user's own: the directory 0700 and owned by the
user, reached without a symbolic link below the home, the file a regular one of the user's, 0600,
with one link - what only this user (or root) can write, the same trust Python gives the user's
own site-packages. Anything else (a torn, foreign or old file, a read-only home, no home): the
run compiles the sources, as it did before, and fails on nothing. A run that compiled a module
writes the file again (whole, renamed into place) with that module's code added - never in check
mode nor when the interpreter is told to write no bytecode (``PYTHONDONTWRITEBYTECODE``, ``-B``)
- and removes the files of other bundles for the same interpreter. The first pass on a device
keeps the code it ran (compiling nothing more: its time is the slow board's), the identity run
after it adds its own.

Standard library only, no other bundle module: the script runs this file before any other (a
run that finds its code here never decompresses the sources).
"""
from __future__ import annotations

import marshal
import os
import pwd
import stat
import sys
import time
import types
import zlib

DIRECTORY = (".cache", "fleet-mtls")
MAGIC = b"fleet-mtls lean code 1\n"
MAX_SIZE = 16 * 1024 * 1024
STALE_TEMPORARY = 3600  # seconds after which an interrupted write's file goes
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_FLAGS = os.O_RDONLY | _O_CLOEXEC
HOME = None  # the home to use instead of the user's (tests only: a run never sets it)


def interpreter():
    """This interpreter's part of the file name: bytecode is valid for one implementation and
    version (its micro version too, to be safe)."""
    return "%s-%x" % (sys.implementation.cache_tag or sys.implementation.name, sys.hexversion)


def file_name(key):
    return "lean-%s-%s.code" % (key, interpreter())


def load(key):
    """{module name: its code, marshalled} kept for ``key`` by this user, or {} (nothing usable
    kept). Each module's code is unmarshalled only when imported (``code``): a run imports a part
    of the bundle."""
    directory = open_directory(create=False)
    if directory is None:
        return {}
    try:
        return _read(directory, file_name(key))
    finally:
        os.close(directory)


def code(kept, name):
    """The code of ``name`` in what ``load`` returned, or None."""
    try:
        item = marshal.loads(kept[name])  # noqa: S302 - a file only this user could write (``_read``)
    except (KeyError, ValueError, EOFError, TypeError):
        return None
    return item if isinstance(item, types.CodeType) else None


def store(key, kept, fresh):
    """Keep, for ``key``, the code ``load`` found (``kept``) and the code this run compiled
    (``fresh``, {module name: code}): a run imports a part of the bundle, so the file grows with
    the runs until every module the device runs is in it. The older bundles' files for this
    interpreter go. Returns whether it was written (never raises: a cache)."""
    if sys.dont_write_bytecode:
        return False
    directory = open_directory(create=True)
    if directory is None:
        return False
    try:
        name = file_name(key)
        entries = dict(kept)
        entries.update((module, marshal.dumps(item)) for module, item in fresh.items())
        _write(directory, name, entries)
        _prune(directory, keep=name)
        return True
    except (OSError, ValueError):
        return False
    finally:
        os.close(directory)


def forget():
    """Remove every file of lean code this user keeps, and the directory when nothing else is in
    it (decommissioning: the bundle leaves nothing behind). Returns whether anything went."""
    directory = open_directory(create=False)
    if directory is None:
        return False
    removed = False
    try:
        for entry in os.listdir(directory):
            if _ours(entry):
                try:
                    os.unlink(entry, dir_fd=directory)
                    removed = True
                except OSError:
                    pass
        empty = not os.listdir(directory)
    except OSError:
        return removed
    finally:
        os.close(directory)
    if empty:
        parent = open_directory(parts=DIRECTORY[:-1])
        if parent is not None:
            try:
                os.rmdir(DIRECTORY[-1], dir_fd=parent)
                removed = True
            except OSError:
                pass
            finally:
                os.close(parent)
    return removed


def open_directory(create=False, parts=DIRECTORY):
    """A descriptor of the cache directory (or of ``parts`` of its path under the home) when it
    is this user's own, else None (made, 0700, when ``create``)."""
    uid = os.geteuid()
    try:
        fd = os.open(HOME or pwd.getpwuid(uid).pw_dir, _FLAGS | os.O_DIRECTORY)
    except (OSError, KeyError):
        return None
    try:
        for part in parts:
            child = _open_child(fd, part, create)
            os.close(fd)
            fd = child
            if fd is None:
                return None
            st = os.fstat(fd)
            # ~/.cache may be 0755; ours must be 0700: no other user may put a file in it.
            loose = 0o077 if part == DIRECTORY[-1] else 0o022
            if st.st_uid != uid or st.st_mode & loose:
                os.close(fd)
                return None
        return fd
    except OSError:
        os.close(fd)
        return None


def _open_child(fd, part, create):
    flags = _FLAGS | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        return os.open(part, flags, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            return None
    try:
        os.mkdir(part, 0o700, dir_fd=fd)
    except FileExistsError:
        pass
    return os.open(part, flags, dir_fd=fd)


def _ours(entry, suffix=".code"):
    """Whether ``entry`` is a file of kept code (ending in ``suffix``) or a write's temporary."""
    return entry.startswith("lean-") and entry.endswith(suffix) or entry.startswith(".lean-")


def _read(directory, name):
    try:
        fd = os.open(name, _FLAGS | os.O_NOFOLLOW, dir_fd=directory)
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        if not _own_file(st) or st.st_size > MAX_SIZE:
            return {}
        data = _read_all(fd, st.st_size)
    except OSError:
        return {}
    finally:
        os.close(fd)
    return parse(data)


def _own_file(st):
    return (stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_nlink == 1
            and not st.st_mode & 0o077)


def _read_all(fd, size):
    chunks = []
    while size > 0:
        chunk = os.read(fd, size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def parse(data):
    """The {module name: marshalled code} of a file's ``data``, or {} when it is not whole."""
    head = len(MAGIC) + 9  # the magic, then the CRC of the rest in 8 hex digits and a newline
    if not data.startswith(MAGIC) or len(data) <= head or data[head - 1:head] != b"\n":
        return {}
    payload = data[head:]
    try:
        if int(data[len(MAGIC):head - 1], 16) != zlib.crc32(payload):
            return {}
        kept = marshal.loads(payload)  # noqa: S302 - a file only this user could write (``_read``)
    except (ValueError, EOFError, TypeError):
        return {}
    if not isinstance(kept, dict) or not all(
            isinstance(name, str) and isinstance(item, bytes) for name, item in kept.items()):
        return {}
    return kept


def serialize(code):
    """The file's bytes for ``code`` ({module name: marshalled code})."""
    payload = marshal.dumps(code)
    return MAGIC + b"%08x\n" % zlib.crc32(payload) + payload


def _write(directory, name, code):
    data = serialize(code)
    temporary = ".%s.%d" % (name, os.getpid())
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _O_CLOEXEC, 0o600,
                 dir_fd=directory)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        os.unlink(temporary, dir_fd=directory)
        raise
    os.close(fd)
    os.rename(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)


def _prune(directory, keep):
    """Remove the other bundles' files for this interpreter, and what an interrupted write left
    an hour ago or more (another interpreter's files stay: it may still be used)."""
    suffix = "-%s.code" % interpreter()
    now = time.time()
    for entry in os.listdir(directory):
        if entry == keep or not _ours(entry, suffix):
            continue
        try:
            if entry.startswith(".lean-") and now - os.lstat(entry, dir_fd=directory).st_mtime <= STALE_TEMPORARY:
                continue  # another run may be writing it now
            os.unlink(entry, dir_fd=directory)
        except OSError:
            pass
