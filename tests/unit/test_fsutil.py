"""Safe file operations: modes from the first byte, symlink and owner refusal, locking."""

from __future__ import annotations

import fcntl
import os
import stat
import threading
import time

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import fsutil
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import (
    FileSafetyError,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.fsutil import IdentityDir

UID, GID = os.geteuid(), os.getegid()
FOREIGN = 54321  # a uid nobody on this machine runs as


def open_dir(path, uid=UID, gid=GID, create=True):
    return IdentityDir.open(str(path), uid, gid, create=create)


class WriteSpy:
    """Records mode and owner of the file descriptor at the first os.write into it."""

    def __init__(self, monkeypatch):
        self.seen = []
        real = os.write

        def spy(fd, data):
            st = os.fstat(fd)
            self.seen.append((stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid))
            return real(fd, data)

        monkeypatch.setattr(fsutil.os, "write", spy)


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077, 0o277])
@pytest.mark.parametrize("mode", [0o600, 0o644])
def test_file_has_its_final_mode_before_the_first_byte(tmp_path, monkeypatch, umask, mask, mode):
    umask(mask)
    spy = WriteSpy(monkeypatch)
    with open_dir(tmp_path / "d") as d:
        d.create("client.key", b"x" * 100000, mode)
        st = os.stat(tmp_path / "d" / "client.key")
    assert spy.seen and {m for m, _u, _g in spy.seen} == {mode}
    assert stat.S_IMODE(st.st_mode) == mode
    assert (tmp_path / "d" / "client.key").read_bytes() == b"x" * 100000


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_file_belongs_to_the_owner_before_the_first_byte(tmp_path, monkeypatch):
    spy = WriteSpy(monkeypatch)
    with IdentityDir.open(str(tmp_path / "d"), FOREIGN, FOREIGN, create=True) as d:
        d.create("client.key", b"secret", 0o600)
    assert spy.seen[0] == (0o600, FOREIGN, FOREIGN)
    st = os.stat(tmp_path / "d")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (FOREIGN, FOREIGN, 0o700)


@pytest.mark.parametrize("mask", [0o000, 0o077])
def test_directory_is_created_0700_with_parents(tmp_path, umask, mask):
    umask(mask)
    with open_dir(tmp_path / "a" / "b" / ".mtls") as d:
        assert stat.S_IMODE(d.dir_stat().st_mode) == 0o700
    assert (tmp_path / "a" / "b").is_dir()


def test_absent_directory_is_not_created_without_create(tmp_path):
    assert open_dir(tmp_path / "nope", create=False) is None
    assert not (tmp_path / "nope").exists()


def test_create_replaces_a_stale_file_and_a_planted_symlink(tmp_path):
    target = tmp_path / "victim"
    target.write_bytes(b"do not touch")
    with open_dir(tmp_path / "d") as d:
        (tmp_path / "d" / ".client.key.new").write_bytes(b"stale")
        d.create(".client.key.new", b"new", 0o600)
        os.symlink(target, tmp_path / "d" / ".client.crt.new")
        d.create(".client.crt.new", b"cert", 0o644)
    assert target.read_bytes() == b"do not touch"
    assert (tmp_path / "d" / ".client.key.new").read_bytes() == b"new"
    assert not (tmp_path / "d" / ".client.crt.new").is_symlink()


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def boom(_fd, _data):
        raise OSError(28, "No space left on device")

    with open_dir(tmp_path / "d") as d:
        monkeypatch.setattr(fsutil.os, "write", boom)
        with pytest.raises(OSError):
            d.create(".client.key.new", b"secret", 0o600)
    assert os.listdir(tmp_path / "d") == []


def test_symlinked_directory_is_refused(tmp_path):
    (tmp_path / "real").mkdir(mode=0o700)
    os.symlink(tmp_path / "real", tmp_path / "link")
    with pytest.raises(FileSafetyError, match="symbolic link"):
        open_dir(tmp_path / "link")


def test_non_directory_is_refused(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(FileSafetyError, match="not a directory"):
        open_dir(tmp_path / "file")


@pytest.mark.parametrize("name", ["client.key", "client.crt"])
def test_symlinked_files_are_refused(tmp_path, name):
    outside = tmp_path / "outside"
    outside.write_bytes(b"elsewhere")
    os.chmod(outside, 0o644)
    with open_dir(tmp_path / "d") as d:
        os.symlink(outside, tmp_path / "d" / name)
        with pytest.raises(FileSafetyError, match="symbolic link"):
            d.read(name)
        with pytest.raises(FileSafetyError, match="symbolic link"):
            d.fix_file(name, 0o600)
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644
    assert outside.read_bytes() == b"elsewhere"


def test_fifo_is_refused_without_blocking(tmp_path):
    with open_dir(tmp_path / "d") as d:
        os.mkfifo(tmp_path / "d" / "client.crt")
        with pytest.raises(FileSafetyError, match="not a regular file"):
            d.read("client.crt")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create foreign-owned files")
def test_directory_of_another_user_is_refused(tmp_path):
    (tmp_path / "d").mkdir(mode=0o700)
    os.chown(tmp_path / "d", FOREIGN, FOREIGN)
    with pytest.raises(FileSafetyError, match="owned by"):
        open_dir(tmp_path / "d")
    # ...unless that user is the requested owner
    with IdentityDir.open(str(tmp_path / "d"), FOREIGN, FOREIGN) as d:
        assert d.dir_stat().st_uid == FOREIGN


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create foreign-owned files")
def test_file_of_another_user_is_refused(tmp_path):
    with open_dir(tmp_path / "d") as d:
        (tmp_path / "d" / "client.key").write_bytes(b"planted")
        os.chown(tmp_path / "d" / "client.key", FOREIGN, FOREIGN)
        with pytest.raises(FileSafetyError, match="owned by"):
            d.read("client.key")


def test_read_limit(tmp_path):
    with open_dir(tmp_path / "d") as d:
        (tmp_path / "d" / "client.crt").write_bytes(b"x" * 2000)
        with pytest.raises(FileSafetyError, match="larger than"):
            d.read("client.crt", limit=1000)
        assert d.read("client.crt")[0] == b"x" * 2000
        assert d.read("missing") == (None, None)


def test_fix_file_and_fix_self_report_changes(tmp_path):
    with open_dir(tmp_path / "d") as d:
        (tmp_path / "d" / "client.key").write_bytes(b"k")
        os.chmod(tmp_path / "d" / "client.key", 0o644)
        os.chmod(tmp_path / "d", 0o755)
        assert d.fix_file("client.key", 0o600) == ["mode"]
        assert d.fix_file("client.key", 0o600) == []
        assert d.fix_self(0o700) == ["mode"]
        assert d.fix_file("absent", 0o600) == []
    assert stat.S_IMODE(os.stat(tmp_path / "d" / "client.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "d").st_mode) == 0o700


def test_rename_and_link_stay_inside_the_directory(tmp_path):
    with open_dir(tmp_path / "d") as d:
        d.create(".new", b"v2", 0o600)
        d.create("cur", b"v1", 0o600)
        d.link("cur", "cur.bak")
        d.rename(".new", "cur")
        d.fsync()
    assert (tmp_path / "d" / "cur").read_bytes() == b"v2"
    assert (tmp_path / "d" / "cur.bak").read_bytes() == b"v1"
    assert not (tmp_path / "d" / ".new").exists()


def test_second_locker_waits_until_the_first_releases(tmp_path):
    (tmp_path / "d").mkdir(mode=0o700)
    first = open_dir(tmp_path / "d")
    first.lock()
    released = []

    def release():
        time.sleep(0.3)
        released.append(time.monotonic())
        first.close()

    thread = threading.Thread(target=release)
    thread.start()
    with open_dir(tmp_path / "d") as second:
        second.lock(timeout=10)
        acquired = time.monotonic()
        assert second.locked
    thread.join()
    assert acquired >= released[0]
    # released on close: a third opener gets it at once
    with open_dir(tmp_path / "d") as third:
        fd = os.open(tmp_path / "d", os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        third.lock(timeout=0.1)
