"""Fault matrix, device state: what the module does with what it finds on the device.

Broken identities are rotated keeping the device's ID (never a new device), unrecoverable ones
are refused with advice, wrong modes/owners are repaired without a new key or any network
call, links and foreign directories are refused without writing through them, and a disk that
is full or read-only leaves the previous identity byte-for-byte intact.
"""
from __future__ import annotations

import os
import pathlib
import pwd
import subprocess

import pytest

from tests.fixtures import module_runner as h

ID_EP = "/generate-orchestrator-id"
UPLOAD_EP = "/upload-orchestrator-certificate"


def _other_user() -> pwd.struct_passwd:
    for name in ("cloudsdk", "nobody", "daemon"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid != 0:
            return entry
    pytest.skip("no unprivileged user on this machine")


def no_requests(svc) -> bool:
    return svc.faults()["requests"] == {}


def assert_rotated_same_id(dev, result, agent_id, old_fp, svc):
    assert not result.failed and result.result["action"] == "rotated", result
    assert result.result["agent_id"] == agent_id == dev.agent_id
    assert dev.fingerprint != old_fp
    assert svc.request_count(ID_EP) == 0  # the ID was kept: no new device
    dev.assert_registered()


# ----------------------------------------------------------------------------- broken identities

def test_missing_key_rotates_keeping_id(device, svc):
    agent = device.seed()
    old_fp = device.fingerprint
    device.key_path.unlink()
    result = device.run()
    assert_rotated_same_id(device, result, agent, old_fp, svc)
    assert "private key missing" in result.result["reason"]


def test_key_cert_mismatch_rotates_keeping_id(device, svc):
    agent = device.seed()
    old_fp = device.fingerprint
    foreign = h.key_pem(h.new_key(2048))
    fd = os.open(device.key_path, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, foreign)
    os.close(fd)
    device.keys_seen.append(foreign)
    result = device.run()
    assert_rotated_same_id(device, result, agent, old_fp, svc)
    assert "does not match" in result.result["reason"]


def test_corrupt_key_rotates_keeping_id(device, svc):
    agent = device.seed()
    old_fp = device.fingerprint
    fd = os.open(device.key_path, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n")
    os.close(fd)
    result = device.run()
    assert_rotated_same_id(device, result, agent, old_fp, svc)


@pytest.mark.parametrize("garbage", [
    os.urandom(700),
    b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    b"",
], ids=["random-bytes", "truncated-pem", "empty"])
def test_corrupt_cert_refused_then_rekeyed_with_agent_id(device, svc, garbage):
    """The ID cannot be recovered from an unreadable certificate: refuse (saying to set
    agent_id), touch nothing, call nobody; with agent_id the device is re-keyed as that ID."""
    agent = device.seed()
    device.cert_path.write_bytes(garbage)
    before = device.state()
    result = device.run()
    assert result.failed, result
    assert "agent_id" in result.msg and str(device.path) in result.msg, result.msg
    device.assert_intact(before)
    assert no_requests(svc)

    again = device.run(agent_id=agent)
    assert not again.failed and again.result["action"] == "rotated", again
    assert device.agent_id == agent and svc.request_count(ID_EP) == 0
    device.assert_registered()


def test_cert_cn_differs_from_agent_id_refused(device, svc):
    """agent_id says one device, the certificate another: refuse, do not pick one silently."""
    agent = device.seed()
    other = svc.reserve_id()
    svc.clear_faults()
    before = device.state()
    result = device.run(agent_id=other)
    assert result.failed and agent in result.msg and other in result.msg, result
    device.assert_intact(before)
    assert no_requests(svc)
    device.assert_registered()


@pytest.mark.parametrize(("days", "nb_days", "word"), [
    (1, -10, "expired"),
    (10, 0, "expires in"),
], ids=["expired", "due"])
def test_expired_or_due_cert_rotates_keeping_id(device, svc, days, nb_days, word):
    agent = device.seed()
    key = h.serialization.load_pem_private_key(device.key_path.read_bytes(), None)
    device.cert_path.write_bytes(h.self_signed(key, agent, days=days, not_before_days=nb_days))
    old_fp = device.fingerprint
    result = device.run()
    assert_rotated_same_id(device, result, agent, old_fp, svc)
    assert word in result.result["reason"]


def test_wrong_key_size_rotates_keeping_id(device, svc):
    agent = device.seed(bits=2048)
    old_fp = device.fingerprint
    result = device.run(key_size=3072)
    assert_rotated_same_id(device, result, agent, old_fp, svc)
    assert result.result["key_size"] == 3072 and "key size 2048" in result.result["reason"]


# ----------------------------------------------------------------------------- modes and owners

@pytest.mark.parametrize(("target", "mode"), [
    ("client.key", 0o644),
    ("client.key", 0o400),
    (".", 0o755),
    ("client.crt", 0o600),
    ("client.crt", 0o666),
], ids=["key-0644", "key-0400", "dir-0755", "cert-0600", "cert-0666"])
def test_wrong_mode_repaired_without_new_key(device, svc, target, mode):
    device.seed()
    os.chmod(device.path / target, mode)
    before = device.state()
    result = device.run()
    assert not result.failed and result.result["action"] == "repaired", result
    assert no_requests(svc)  # no ID request, no upload
    after = device.state()
    for name in ("client.key", "client.crt"):
        assert after[name].digest == before[name].digest  # same key, same certificate
    device.assert_registered()  # modes 0700/0600/0644 again
    assert device.run().result["action"] == "unchanged"


def test_root_owned_identity_is_not_handed_to_another_owner(device, svc):
    """owner=<agent user> while the directory and files belong to root: refused (root's entries
    may be another identity's; this run did not create them), nothing chowned."""
    user = _other_user()
    device.seed()
    before = device.state()
    result = device.run(owner=user.pw_name)
    assert result.failed and "belongs to root, not to %s" % user.pw_name in result.msg, result
    assert "chown it to %s yourself" % user.pw_name in result.msg
    device.assert_intact(before)
    assert no_requests(svc)


def test_wrong_group_and_mode_of_the_owners_files_repaired_without_new_key(device, svc):
    """owner=<agent user>, files already the user's but with root's group and a loose mode:
    group and mode fixed, bytes unchanged, no request."""
    user = _other_user()
    device.seed()
    for path in (device.path, device.key_path, device.cert_path):
        os.chown(path, user.pw_uid, 0)
    os.chmod(device.key_path, 0o640)
    before = device.state()
    result = device.run(owner=user.pw_name)
    assert not result.failed and result.result["action"] == "repaired", result
    assert no_requests(svc)
    after = device.state()
    for name, mode in ((".", 0o700), ("client.key", 0o600), ("client.crt", 0o644)):
        assert (after[name].uid, after[name].gid, after[name].mode) == (user.pw_uid, user.pw_gid, mode), name
        assert after[name].digest == before[name].digest
    assert device.run(owner=user.pw_name).result["action"] == "unchanged"


def test_check_mode_reports_repair_without_touching(device, svc):
    device.seed()
    os.chmod(device.key_path, 0o644)
    before = device.state()
    result = device.run(check=True)
    assert result.result["action"] == "repaired" and result.result["changed"] is True, result
    device.assert_intact(before)
    assert no_requests(svc)


# ----------------------------------------------------------------------------- links and foreign dirs

@pytest.mark.parametrize("key_mode", [0o600, 0o640], ids=["key-0600", "key-0640"])
def test_hard_linked_key_is_rotated_never_chmodded(device, svc, tmp_path, key_mode):
    """client.key has a second name outside the directory (a hard link: whoever can read that
    name holds the key): the key is compromised, so it is rotated (new key, same ID), and the
    file behind the other name keeps its mode and content (no chmod through the link)."""
    agent = device.seed()
    old_fp = device.fingerprint
    os.chmod(device.key_path, key_mode)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.link(device.key_path, outside / "copy.key")
    before_out = h.snapshot(outside)
    result = device.run()
    assert_rotated_same_id(device, result, agent, old_fp, svc)
    assert "hard links" in result.result["reason"], result
    assert h.snapshot(outside) == before_out  # mode and content of the other name untouched
    new, other = os.lstat(device.key_path), os.lstat(outside / "copy.key")
    assert new.st_ino != other.st_ino and new.st_nlink == 1 and other.st_nlink == 1
    assert device.run().result["action"] == "unchanged"


def test_hard_linked_certificate_is_replaced_never_chmodded(device, svc, tmp_path):
    """client.crt with a wrong mode and a second name outside: repaired by a fresh copy with
    the right mode (same bytes, no network), the file behind the other name untouched."""
    device.seed()
    os.chmod(device.cert_path, 0o600)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.link(device.cert_path, outside / "copy.crt")
    before, before_out = device.state(), h.snapshot(outside)
    result = device.run()
    assert not result.failed and result.result["action"] == "repaired", result
    assert no_requests(svc)
    assert h.snapshot(outside) == before_out
    after = device.state()
    assert after["client.crt"].digest == before["client.crt"].digest
    assert after["client.key"] == before["client.key"]
    assert os.lstat(device.cert_path).st_nlink == 1
    device.assert_registered()
    assert device.run().result["action"] == "unchanged"


@pytest.mark.parametrize("name", ["client.key", "client.crt"])
@pytest.mark.parametrize("dangling", [False, True], ids=["to-file", "dangling"])
def test_symlinked_file_refused(device, svc, tmp_path, name, dangling):
    """client.key/client.crt is a symlink (to another file, or to a path that does not exist
    yet): refused; the link and its target stay as they were, nothing written through it."""
    device.seed()
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "target"
    if not dangling:
        target.write_bytes((device.path / name).read_bytes())
        os.chmod(target, 0o600)
    (device.path / name).unlink()
    os.symlink(target, device.path / name)
    before_dir, before_out = device.state(), h.snapshot(outside)
    result = device.run(rotate="always")
    assert result.failed and "symbolic link" in result.msg, result
    device.assert_intact(before_dir)
    assert h.snapshot(outside) == before_out
    assert no_requests(svc)


@pytest.mark.parametrize("populated", [False, True], ids=["empty-target", "identity-in-target"])
def test_symlinked_directory_refused(device, svc, tmp_path, populated):
    """~/.mtls is a symlink to another directory: refused, nothing written into the target."""
    real = tmp_path / "elsewhere"
    if populated:
        device.seed()
        os.rename(device.path, real)
    else:
        real.mkdir(mode=0o700)
    os.symlink(real, device.path)
    before = h.snapshot(real)
    result = device.run()
    assert result.failed and "symbolic link" in result.msg, result
    assert h.snapshot(real) == before
    assert os.path.islink(device.path)
    assert no_requests(svc)


def test_directory_owned_by_another_user_refused(device, svc):
    user = _other_user()
    device.path.mkdir(mode=0o700)
    os.chown(device.path, user.pw_uid, user.pw_gid)
    before = device.state()
    result = device.run()
    assert result.failed and "owned by" in result.msg and user.pw_name in result.msg, result
    device.assert_intact(before)
    assert no_requests(svc)


def test_key_owned_by_another_user_refused(device, svc):
    """A key file planted by another user in the directory is not trusted (nor replaced)."""
    user = _other_user()
    device.seed()
    os.chown(device.key_path, user.pw_uid, user.pw_gid)
    before = device.state()
    result = device.run()
    assert result.failed and "owned by" in result.msg, result
    device.assert_intact(before)
    assert no_requests(svc)


# ----------------------------------------------------------------------------- read-only, disk full

@pytest.fixture
def mounts():
    """Mount points to unmount at teardown (innermost first)."""
    points: list[pathlib.Path] = []
    yield points
    for point in reversed(points):
        subprocess.run(["umount", "-l", str(point)], check=False)


def _require_root():
    if os.geteuid() != 0:
        pytest.skip("needs root (mount)")


def test_read_only_directory(device, svc, mounts):
    """The identity directory is on a read-only mount: rotation fails with a clear error,
    the previous identity is intact and still registered."""
    _require_root()
    device.seed()
    subprocess.run(["mount", "--bind", str(device.path), str(device.path)], check=True)
    mounts.append(device.path)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(device.path)], check=True)
    before = device.state()
    result = device.run(rotate="always")
    assert result.failed, result
    assert "read-only file system" in result.msg.lower(), result.msg
    assert "Traceback" not in result.output
    device.assert_intact(before)
    assert svc.request_count(UPLOAD_EP) == 0
    device.assert_registered()


def _fill(mount: pathlib.Path, leave_pages: int) -> None:
    st = os.statvfs(mount)
    free = st.f_bavail
    filler = mount / "filler"
    with open(filler, "wb") as handle:
        handle.write(b"\0" * (max(0, free - leave_pages) * st.f_frsize))
    assert os.statvfs(mount).f_bavail == leave_pages


@pytest.mark.parametrize("free_pages", [0, 1], ids=["full-at-key", "full-at-cert"])
def test_disk_full_during_staging(device, svc, mounts, free_pages):
    """A tmpfs with no room for the staged key (0 pages) or only for it (1 page): the
    rotation fails cleanly, no staged file remains, the previous identity is intact."""
    _require_root()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(device.home)], check=True)
    mounts.append(device.home)
    device.seed()
    _fill(device.home, free_pages)
    before = device.state()
    result = device.run(rotate="always")
    assert result.failed, result
    assert "no space left" in result.msg.lower(), result.msg
    assert "Traceback" not in result.output
    device.assert_intact(before)
    assert svc.request_count(UPLOAD_EP) == 0
    device.assert_registered()


@pytest.mark.parametrize("phase", ["create", "rotate"])
def test_disk_full_at_the_agent_config_reports_the_identity_part(device, svc, mounts, phase):
    """The disk fills after the identity was created/rotated, while the agent configuration is
    written: the run fails on that step and still reports what the identity part did (action,
    agent_id, fingerprint, changed), so the caller knows a new identity is in place and
    registered."""
    _require_root()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(device.home)], check=True)
    mounts.append(device.home)
    agent = device.seed() if phase == "rotate" else None
    _fill(device.home, 4)  # room for the identity's transaction (3 pages at most), not for 40 KiB
    # A server CA of ~40 KiB (a certificate and comment lines): more than the 4 pages left.
    ca = pathlib.Path(device.service.ca_path).read_text()
    args = {"server_ca_content": ca + "# padding\n" * 4096, "phases": ["identity", "config"]}
    if phase == "rotate":
        args["rotate"] = "always"
    result = device.run(**args)
    assert result.failed, result
    assert "no space left" in result.msg.lower() and "the identity part succeeded" in result.msg, result.msg
    assert "Traceback" not in result.output
    r = result.result
    assert r["action"] == ("created" if phase == "create" else "rotated") and r["changed"] is True, r
    assert r["agent_id"] == device.agent_id and r["fingerprint_sha256"] == device.fingerprint, r
    assert r["status"]["phase"] == "config" and r["status"]["config"] in ("", "changed"), r["status"]
    assert r["status"]["action"] == r["action"] and r["status"]["agent_id"] == device.agent_id
    if agent:
        assert device.agent_id == agent
    device.assert_registered()  # the new identity is in place, registered, nothing staged
    assert sorted(os.listdir(device.path)) == ["client.crt", "client.key"]
