"""The identity directory's path walk and file fixes meeting real accounts of other users
(useradd/groupadd): entries and groups of someone else are refused, missing parts are created
for the owner, root's files are not handed over (tests/unit/test_safepath.py: the walk itself)."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import FileSafetyError
from tests.fixtures.identities import open_dir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (other owners)")


def test_below_a_sticky_parent_an_entry_of_another_user_is_refused(tmp_path, accounts):
    other = accounts.user()
    shared = tmp_path / "tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    (shared / "x").mkdir()
    os.chown(shared / "x", other.pw_uid, other.pw_gid)
    with pytest.raises(FileSafetyError, match="%s is owned by %s, not by root" % (shared / "x", other.pw_name)):
        open_dir(shared / "x" / ".mtls", create=True)
    assert os.listdir(shared / "x") == []


def test_a_directory_of_another_user_on_the_path_is_refused(tmp_path, accounts):
    other = accounts.user()
    (tmp_path / "o").mkdir()
    os.chown(tmp_path / "o", other.pw_uid, other.pw_gid)
    with pytest.raises(FileSafetyError, match="owned by %s" % other.pw_name):
        open_dir(tmp_path / "o" / "deep" / ".mtls", create=True)
    assert os.listdir(tmp_path / "o") == []
    # ...which is fine when that user is the owner the run acts for.
    with open_dir(tmp_path / "o" / "deep" / ".mtls", other.pw_uid, other.pw_gid, create=True):
        pass


@pytest.mark.parametrize("membership", ["listed", "primary"])
def test_group_writable_by_a_group_with_another_member_is_refused(tmp_path, accounts, membership):
    owner, other = accounts.user(), accounts.user()
    gid = accounts.group(other.pw_name).gr_gid if membership == "listed" else other.pw_gid
    team = tmp_path / "team"
    team.mkdir()
    os.chown(team, 0, gid)
    os.chmod(team, 0o775)
    with pytest.raises(FileSafetyError, match="writable by group .*members include %s" % other.pw_name):
        open_dir(team / ".mtls", owner.pw_uid, owner.pw_gid, create=True)
    assert os.listdir(team) == []
    os.chmod(team, 0o1775)  # sticky: others cannot rename the owner's entries
    with open_dir(team / ".mtls", owner.pw_uid, owner.pw_gid, create=True):
        pass


def test_group_writable_by_a_group_of_root_and_the_owner_only_is_accepted(tmp_path, accounts):
    owner = accounts.user()
    team = tmp_path / "team"
    team.mkdir()
    os.chmod(team, 0o775)
    for gid in (owner.pw_gid, accounts.group(owner.pw_name, "root").gr_gid):
        os.chown(team, 0, gid)
        with open_dir(team / ".mtls", owner.pw_uid, owner.pw_gid, create=True):
            pass


@pytest.mark.parametrize("mask", [0o000, 0o077, 0o777])
def test_missing_components_are_created_for_the_owner_with_exact_modes(tmp_path, accounts, umask, mask):
    owner = accounts.user()
    umask(mask)
    with open_dir(tmp_path / "a" / "b" / ".mtls", owner.pw_uid, owner.pw_gid, create=True) as idir:
        assert idir.created
        idir.create("client.crt", b"cert", 0o644)
    for path, mode in ((tmp_path / "a", 0o755), (tmp_path / "a" / "b", 0o755), (tmp_path / "a" / "b" / ".mtls", 0o700)):
        st = os.lstat(path)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, owner.pw_uid, owner.pw_gid), path
    with open_dir(tmp_path / "a" / "b" / ".mtls", owner.pw_uid, owner.pw_gid, create=True) as idir:
        assert not idir.created


def test_root_owned_entries_are_not_handed_to_another_owner(tmp_path, accounts):
    owner = accounts.user()
    d = tmp_path / "d"
    d.mkdir(mode=0o755)
    (d / "client.key").write_bytes(b"root's")
    os.chmod(d / "client.key", 0o644)
    with open_dir(d, owner.pw_uid, owner.pw_gid) as idir:
        with pytest.raises(FileSafetyError, match="belongs to root, not to %s" % owner.pw_name):
            idir.fix_file("client.key", 0o600)
        with pytest.raises(FileSafetyError, match="belongs to root"):
            idir.fix_self(0o700)
    st, dst = os.stat(d / "client.key"), os.stat(d)
    assert (st.st_uid, stat.S_IMODE(st.st_mode), dst.st_uid, stat.S_IMODE(dst.st_mode)) == (0, 0o644, 0, 0o755)


def test_the_owners_files_get_their_mode_and_group_fixed(tmp_path, accounts):
    owner = accounts.user()
    d = tmp_path / "d"
    d.mkdir(mode=0o755)
    (d / "client.key").write_bytes(b"k")
    os.chown(d, owner.pw_uid, 0)
    os.chown(d / "client.key", owner.pw_uid, 0)
    with open_dir(d, owner.pw_uid, owner.pw_gid) as idir:
        assert idir.fix_file("client.key", 0o600) == ["owner", "mode"]
        assert idir.fix_self(0o700) == ["owner", "mode"]
    for path, mode in ((d, 0o700), (d / "client.key", 0o600)):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (owner.pw_uid, owner.pw_gid, mode)
