"""Hostile paths through the real module: a symlink planted above the identity directory by
the agent's user, and files with a second name outside it."""
from __future__ import annotations

import os
import pathlib
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from tests.fixtures import module_runner as h
from tests.fixtures.device import Device


def no_requests(svc) -> bool:
    return svc.faults()["requests"] == {}


@pytest.fixture
def open_base():
    """A scratch directory every user can traverse (pytest's tmp dirs are 0700 root), so an
    unprivileged user's read attempt is decided by the files' own modes."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="fleet-mtls-paths-", dir="/tmp"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def read_as(user, path: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; sys.stdout.write(open(sys.argv[1]).read()[:40])",
                           str(path)], user=user.pw_uid, group=user.pw_gid, extra_groups=[],
                          capture_output=True, text=True, check=False)


def test_symlink_above_the_directory_does_not_hand_roots_key_to_the_agent(svc, accounts, open_base):
    """The agent's user points ~/x at a directory holding a root-owned .mtls; a run as root with
    path ~agent/x/.mtls and owner agent must refuse, chown nothing, and leave the key unreadable."""
    home = open_base / "home" / "agent"
    agent = accounts.user(home=str(home))
    home.mkdir(parents=True)
    os.chown(home, agent.pw_uid, agent.pw_gid)
    victim = Device(open_base / "victim", svc)  # root's identity in <base>/victim/home/.mtls
    victim.seed()
    os.chmod(victim.home, 0o755)
    link = home / "x"
    os.symlink(victim.home, link)
    os.lchown(link, agent.pw_uid, agent.pw_gid)
    assert read_as(agent, victim.key_path).returncode != 0  # the premise: root's key is private
    before = h.snapshot(victim.home)
    svc.clear_faults()

    result = Device(open_base / "run", svc, path=str(link / ".mtls")).run(owner=agent.pw_name)

    assert result.failed, result
    assert "%s is a symbolic link (to %s)" % (link, victim.home) in result.msg, result
    assert "set path to the real path" in result.msg
    assert h.snapshot(victim.home) == before  # nothing chowned, nothing chmod-ed, nothing written
    attempt = read_as(agent, link / ".mtls" / "client.key")
    assert attempt.returncode != 0 and "Permission denied" in attempt.stderr, attempt
    assert "PRIVATE KEY" not in attempt.stdout
    assert no_requests(svc)
    victim.assert_registered()


@pytest.mark.parametrize(("name", "wrong_mode"), [("client.key", 0o644), ("client.crt", 0o666)])
def test_hard_linked_identity_file_is_never_chmod_ed(device, svc, tmp_path, name, wrong_mode):
    """client.key/client.crt has a second name outside the directory and a wrong mode: the run
    never chmods through the link (the outside file keeps its mode and bytes)."""
    device.seed()
    outside = tmp_path / "outside" / name
    outside.parent.mkdir()
    os.link(device.path / name, outside)
    os.chmod(outside, wrong_mode)
    content = outside.read_bytes()
    result = device.run()
    assert stat.S_IMODE(outside.stat().st_mode) == wrong_mode, result
    assert outside.read_bytes() == content
    if result.failed:  # refused: nothing changed on the device
        assert "2 links" in result.msg and "never chmod-ed through a link" in result.msg, result
    else:  # re-keyed: the directory's name now has a file of its own
        assert os.stat(device.path / name).st_ino != outside.stat().st_ino, result
        device.assert_registered()
