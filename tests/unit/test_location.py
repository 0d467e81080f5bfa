"""The one resolver of where an identity lives (location.py): owner, group, home and directory,
as every module resolves them."""

from __future__ import annotations

import os
import pwd

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import location
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError

FOREIGN = 54321  # a uid nobody on this machine has


def test_the_default_is_dot_mtls_in_the_password_database_home(monkeypatch):
    home = pwd.getpwuid(os.geteuid()).pw_dir
    monkeypatch.setenv("HOME", "/nonexistent-home")
    where = location.resolve(None, None)
    assert where.path == os.path.join(home, ".mtls")
    assert (where.uid, where.gid, where.home, where.owner_given) == (os.geteuid(), os.getegid(), home, False)
    assert location.resolve("~/.mtls", None).path == os.path.join(home, ".mtls")
    assert location.resolve("/srv/x/../id", None).path == "/srv/id"
    assert where.key_path == os.path.join(home, ".mtls", "client.key")
    with pytest.raises(ConfigError, match="absolute"):
        location.resolve("relative/dir", None)


def test_tilde_is_the_owners_home_not_the_runners():
    root = pwd.getpwuid(0)
    where = location.resolve("~/.mtls", "root")
    assert (where.path, where.uid, where.gid, where.owner_given) == (
        os.path.join(root.pw_dir, ".mtls"), 0, root.pw_gid, True)
    assert location.resolve(None, "0").path == os.path.join(root.pw_dir, ".mtls")


def test_owner_and_group_by_name_or_id():
    root = pwd.getpwuid(0)
    assert location.resolve("/x", "0").uid == 0
    assert location.resolve("/x", root.pw_name, "0").gid == 0
    assert location.resolve("/x", None, str(FOREIGN)).gid == FOREIGN  # a group need not have a name
    with pytest.raises(ConfigError, match="does not exist"):
        location.resolve("/x", "no-such-user-xyz")
    with pytest.raises(ConfigError, match="does not exist"):
        location.resolve("/x", str(FOREIGN))  # an owner must exist: its home is where ~ points
    with pytest.raises(ConfigError, match="does not exist"):
        location.resolve("/x", None, "no-such-group-xyz")


def test_run_as_is_another_user_when_root_acts_for_it():
    where = location.resolve("/x", None)
    assert where.run_as() is None
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        assert location.resolve("/x", "nobody").run_as() == (nobody.pw_uid, nobody.pw_gid, nobody.pw_dir)
