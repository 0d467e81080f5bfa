"""The identity directory's path is walked from ``/`` one component at a time: no symbolic link
at any depth, no directory everyone could change; and the files in it are never chmod-ed through
a hard link (tests/module/test_safepath_accounts.py: other users' directories and groups, missing parts
created for the owner, root's files not handed over)."""

from __future__ import annotations

import os
import stat
import struct

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import names
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import FileSafetyError
from tests.fixtures.identities import open_dir

PARTS = ("a", "b", "c", ".mtls")


def tree(root):
    """{relative path: (mode, uid, gid, link target or content)} of everything under root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                what = os.readlink(full)
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as handle:
                    what = handle.read()
            else:
                what = None
            out[os.path.relpath(full, root)] = (st.st_mode, st.st_uid, st.st_gid, what)
    return out


# ----------------------------------------------------------------------------- symbolic links

@pytest.mark.parametrize("depth", range(len(PARTS)), ids=["a", "b", "c", ".mtls"])
def test_a_symlink_at_any_depth_is_refused_and_named(tmp_path, depth):
    real = tmp_path / "real"
    real.joinpath(*PARTS).mkdir(parents=True)
    real.joinpath(*PARTS, "client.key").write_bytes(b"key")
    base = tmp_path / "p"
    if depth:
        base.joinpath(*PARTS[:depth]).mkdir(parents=True)
    else:
        base.mkdir()
    link = base.joinpath(*PARTS[: depth + 1])
    os.symlink(real.joinpath(*PARTS[: depth + 1]), link)
    before_real, before_base = tree(real), tree(base)
    with pytest.raises(FileSafetyError) as info:
        open_dir(base.joinpath(*PARTS), create=True)
    msg = info.value.msg
    assert "%s is a symbolic link (to %s)" % (link, real.joinpath(*PARTS[: depth + 1])) in msg
    assert "set path to the real path" in msg
    assert tree(real) == before_real and tree(base) == before_base  # nothing created or changed
    with open_dir(real.joinpath(*PARTS)) as idir:  # the real path is fine
        assert idir.read("client.key")[0] == b"key"


def test_the_advice_names_the_role_variable_through_the_role(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    names.use_role_names()
    try:
        with pytest.raises(FileSafetyError, match="set mtls_dir to the real path"):
            open_dir(tmp_path / "link" / ".mtls")
    finally:
        names.use_role_names(False)


def test_a_file_on_the_path_is_refused(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(FileSafetyError, match="file is not a directory"):
        open_dir(tmp_path / "file" / ".mtls", create=True)


# ----------------------------------------------------------------------------- who can write it

def test_world_writable_parent_without_sticky_bit_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(FileSafetyError, match="%s is writable by every user .mode 0777., without the sticky" % shared):
        open_dir(shared / ".mtls", create=True)
    assert os.listdir(shared) == []


def test_sticky_world_writable_parent_is_accepted(tmp_path):
    shared = tmp_path / "tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    with open_dir(shared / "agent" / ".mtls", create=True) as idir:
        assert idir.created
    assert stat.S_IMODE(os.stat(shared / "agent").st_mode) == 0o755


def test_group_writable_with_an_access_acl_is_refused(tmp_path):
    shared = tmp_path / "acl"
    shared.mkdir()

    def entry(tag, perm, ident=0xFFFFFFFF):
        return struct.pack("<HHI", tag, perm, ident)

    # user::rwx user:65534:rwx group::r-x mask::rwx other::r-x
    acl = struct.pack("<I", 2) + entry(1, 7) + entry(2, 7, 65534) + entry(4, 5) + entry(0x10, 7) + entry(0x20, 5)
    try:
        os.setxattr(shared, "system.posix_acl_access", acl)
    except OSError as exc:
        pytest.skip("no POSIX ACL support here: %s" % exc)
    with pytest.raises(FileSafetyError, match="writable by the users of its access ACL"):
        open_dir(shared / ".mtls", create=True)


# ----------------------------------------------------------------------------- changing files

@pytest.mark.parametrize(("name", "mode"), [("client.key", 0o600), ("client.crt", 0o644)])
def test_a_hard_linked_file_is_never_chmod_ed(tmp_path, name, mode):
    outside = tmp_path / "outside"
    outside.write_bytes(b"someone else's file")
    os.chmod(outside, 0o666)
    (tmp_path / "d").mkdir(mode=0o700)
    os.link(outside, tmp_path / "d" / name)
    with open_dir(tmp_path / "d") as idir, pytest.raises(FileSafetyError, match="it has 2 links"):
        idir.fix_file(name, mode)
    assert stat.S_IMODE(outside.stat().st_mode) == 0o666
    assert outside.read_bytes() == b"someone else's file"


