# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The process that makes a device's next key in the background (prekey.py decides and keeps
its record; this is the process itself).

``launch`` forks it twice (a session of its own, never a zombie of the run), away from the SSH
session, as the identity's owner, at the lowest CPU priority. It tells its pid, then waits for
the starter's go - given only once the starter has written its record - and for the end of the
run that started it, makes the key and stages it: 0600 from its first byte, O_EXCL, never
through a symbolic link, only through its own descriptor of the identity directory. It prints
nothing and writes nothing else.
"""
from __future__ import annotations

import os
import select
import sys

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.fsutil import write_all
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.layout import PREKEY, PREKEY_TMP

KEY_MODE = 0o600
# The process makes its key once the run that started it has ended, at most this many seconds
# after it was told to go (a run that does not end - a hung session - does not hold it back).
RUN_END_WAIT = 30.0
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def launch(dir_fd, uid, gid, profile, key_size):
    """Fork the process that makes a ``key_size`` key of ``profile`` into the directory
    ``dir_fd`` (its own descriptor, closed here) as ``uid``:``gid``. Returns its pid (0 when it
    did not tell one) and the write end of its go pipe, which the caller closes: the process
    makes its key only after b"1" arrives there, and exits without one when it closes."""
    go_read, go_write = os.pipe()
    pid_read, pid_write = os.pipe()
    # This run keeps the write end until it exits (never closed here, not inherited by programs it
    # would execute): the process sees the pipe end when the run ends, and only then makes its key.
    run_read, _run_write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        middle = os.fork()
    except OSError:
        for fd in (dir_fd, go_read, go_write, pid_read, pid_write, run_read, _run_write):
            os.close(fd)
        raise
    if middle == 0:  # a session of its own, then forked again: never a zombie of the run
        try:
            os.close(go_write)
            os.close(pid_read)
            os.setsid()
            if os.fork() == 0:
                _make_key(dir_fd, go_read, pid_write, run_read, uid, gid, profile, key_size)
        finally:
            os._exit(0)
    for fd in (go_read, pid_write, dir_fd, run_read):
        os.close(fd)
    try:
        os.waitpid(middle, 0)
        with os.fdopen(pid_read, "rb") as pids:  # the process writes its pid once set up, then closes
            return int(pids.read(32) or b"0"), go_write
    except BaseException:
        os.close(go_write)
        raise


def _make_key(dir_fd, go_read, pid_write, run_read, uid, gid, profile, key_size):
    """The background process (never returns): away from the SSH session, as the identity's
    owner, at the lowest CPU priority; once its record is written and the run that started it
    has ended, make the key and stage it."""
    try:
        _detach(keep=(dir_fd, go_read, pid_write, run_read))
        _lowest_priority()  # before dropping root: its own /proc entry is then no longer its own
        if os.geteuid() == 0 and uid != 0:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        os.write(pid_write, str(os.getpid()).encode("ascii"))
        os.close(pid_write)
        go = os.read(go_read, 1)
        os.close(go_read)
        if go == b"1":
            _after_the_run(run_read)
            _stage(dir_fd, profile.private_pem(profile.generate(key_size)))
    finally:
        os._exit(0)


def _after_the_run(run_read):
    """Wait until the run that started this process has ended (its end of the pipe closes when
    it exits), at most RUN_END_WAIT seconds. A device's CPU quota (a cgroup) is shared by the
    whole SSH session: a key made at once, even at the lowest priority, takes every slice the
    run's last steps leave while they wait on the session, and each such step then waits for
    the next period - on a device at 5 % of a core the pass took twice a ping."""
    try:
        select.select([run_read], [], [], RUN_END_WAIT)
    except (OSError, ValueError):
        pass
    os.close(run_read)


def _detach(keep):
    """/dev/null as stdin, stdout and stderr, every other descriptor but ``keep`` closed: the
    SSH session (Ansible's pipe) ends with the run, and nothing here can print."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _lowest_priority():
    """nice 19 and, where there is one, the idle scheduling class: the device's other work (the
    identity task itself, the agent) goes first. Both act only inside the process's autogroup,
    which a kernel with autogroups (sched(7); for tasks outside CPU cgroups) schedules as fairly
    as any other session: this process's new session would weigh as much as the whole SSH
    session or another service. The autogroup's own nice 19 makes it last there too."""
    try:
        os.nice(19)
    except OSError:
        pass
    try:
        with open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write("19")
    except (OSError, ValueError):  # a kernel without autogroups
        pass
    idle = getattr(os, "SCHED_IDLE", None)
    if idle is not None:
        try:
            os.sched_setscheduler(0, idle, os.sched_param(0))
        except OSError:
            pass


def _stage(dir_fd, data):
    """Write the key 0600 from its first byte (O_EXCL, no link followed), fsync, rename it into
    place, fsync the directory."""
    fd = os.open(PREKEY_TMP, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _O_CLOEXEC, KEY_MODE,
                 dir_fd=dir_fd)
    try:
        os.fchmod(fd, KEY_MODE)  # the umask only narrows the creation mode: exact before any byte
        write_all(fd, data)
    except BaseException:
        os.close(fd)
        os.unlink(PREKEY_TMP, dir_fd=dir_fd)
        raise
    os.close(fd)
    os.rename(PREKEY_TMP, PREKEY, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    os.fsync(dir_fd)
