"""decommission(): the server first, then exactly the bundle's files, through the directory's fd
(against the real reference service)."""

from __future__ import annotations

import os
import sys

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certs, lean_cache
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.decommission import Refused, decommission
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ApiError
from tests.fixtures.identities import build_cert, client_for, snapshot, write_identity
from tests.fixtures.module_runner import closed_port
from tests.fixtures.product import api_client

UID, GID = os.geteuid(), os.getegid()
EP = "/orchestrators/{id}"


@pytest.fixture
def registered_id(svc, keys, ident_dir):
    agent_id = svc.reserve_id()
    cert = build_cert(keys.get(0), agent_id)
    assert svc.upload(agent_id, certs.certificate_pem(cert)).status_code == 200
    write_identity(ident_dir, keys.get(0), cert)
    return agent_id


def deleter(svc, endpoint=EP, api_url=None, **kw):
    kw.setdefault("headers", svc.auth_headers())
    client = api_client(api_url, **kw) if api_url else client_for(svc, **kw)

    def delete(agent_id, _path, check=False):
        if check:
            client.deletion_path(agent_id, endpoint)
            return None, True
        return client.delete_agent(agent_id, endpoint)

    return delete


def run(ident_dir, delete, confirm, local_only=False, check_mode=False):
    return decommission(str(ident_dir), UID, GID, confirm, local_only, delete, check_mode=check_mode,
                        id_pattern=r"^[0-9A-F]{8}$")


def test_removes_exactly_the_bundles_files_after_the_server_deleted_the_id(svc, registered_id, ident_dir, tmp_path):
    outside = tmp_path / "outside.ini"
    outside.write_bytes(b"not ours")
    for name in ("client.key.20261127T170002Z.bak", ".mtls-pending.json", ".client.key.new", "agent.env",
                 "api-ca.crt", "server-ca.crt"):
        (ident_dir / name).write_bytes(b"x")
    os.symlink(outside, ident_dir / "agent-tls.ini")  # removed as a link, never followed
    (ident_dir / "notes.txt").write_bytes(b"the operator's")
    result = run(ident_dir, deleter(svc), registered_id)
    assert result["action"] == "decommissioned" and result["deleted"] and result["http_status"] == 200
    assert registered_id in svc.deleted_ids()
    assert os.listdir(ident_dir) == ["notes.txt"] and not result["directory_removed"]
    assert sorted(result["removed"]) == sorted([
        ".client.key.new", ".mtls-pending.json", "agent-tls.ini", "agent.env", "api-ca.crt", "client.crt",
        "client.key", "client.key.20261127T170002Z.bak", "server-ca.crt"])
    assert outside.read_bytes() == b"not ours"


@pytest.mark.parametrize("fault", ["503", "403", "404-endpoint", "down"])
def test_nothing_is_removed_unless_the_server_confirmed(svc, registered_id, ident_dir, fault):
    before = snapshot(ident_dir)
    if fault == "503":
        svc.inject("/orchestrators/<id>", "status", count=0, status=503)
        delete = deleter(svc, retries=1)
    elif fault == "403":
        delete = deleter(svc, headers={"Authorization": "Bearer wrong-token-0123"})
    elif fault == "404-endpoint":
        delete = deleter(svc, endpoint="/orchestrator/{id}")
    else:
        delete = deleter(svc, retries=0, api_url="https://127.0.0.1:%d" % closed_port())
    with pytest.raises(ApiError):
        run(ident_dir, delete, registered_id)
    assert snapshot(ident_dir) == before
    assert registered_id not in svc.deleted_ids()


def test_an_id_the_registry_no_longer_knows_counts_as_deleted(svc, registered_id, ident_dir):
    assert svc.delete(registered_id).status_code == 200
    result = run(ident_dir, deleter(svc), "all")
    assert result["action"] == "decommissioned" and result["http_status"] == 410 and not result["deleted"]
    assert result["directory_removed"] and not ident_dir.exists()


def test_the_code_the_lean_runs_kept_goes_with_the_identity(svc, registered_id, ident_dir, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setattr(lean_cache, "HOME", str(home))
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    assert lean_cache.store("a" * 32, {}, {"probe": compile("X = 1", "probe.py", "exec")})
    beside = home / lean_cache.DIRECTORY[0] / "keep.txt"  # another program's file in ~/.cache
    beside.write_text("another program's")
    checked = run(ident_dir, deleter(svc), registered_id, check_mode=True)
    assert not checked["code_cache_removed"] and lean_cache.load("a" * 32)
    result = run(ident_dir, deleter(svc), registered_id)
    assert result["code_cache_removed"] and not home.joinpath(*lean_cache.DIRECTORY).exists()
    assert sorted(p.name for p in beside.parent.iterdir()) == ["keep.txt"]


def test_local_only_never_asks_the_server(svc, registered_id, ident_dir):
    def no_server(*_a, **_k):
        raise AssertionError("the server was asked")

    result = run(ident_dir, no_server, registered_id, local_only=True)
    assert result["action"] == "removed locally" and not ident_dir.exists()
    assert registered_id not in svc.deleted_ids()


@pytest.mark.parametrize("confirm", ["", "FFFF0000", "ALL"])
def test_refused_without_the_devices_id_or_all(svc, registered_id, ident_dir, confirm):
    before = snapshot(ident_dir)
    with pytest.raises(Refused, match="confirm=%s" % registered_id):
        run(ident_dir, deleter(svc), confirm)
    assert snapshot(ident_dir) == before


def test_check_mode_sends_nothing_and_removes_nothing(svc, registered_id, ident_dir):
    before = snapshot(ident_dir)
    result = run(ident_dir, deleter(svc), registered_id, check_mode=True)
    assert result["changed"] and result["action"] == "decommissioned"
    assert sorted(result["removed"]) == ["client.crt", "client.key"]
    assert snapshot(ident_dir) == before and registered_id not in svc.deleted_ids()


def test_a_symlinked_identity_directory_is_refused(svc, registered_id, ident_dir, tmp_path):
    os.rename(ident_dir, tmp_path / "real")
    os.symlink(tmp_path / "real", ident_dir)
    with pytest.raises(Exception, match="symbolic link"):
        run(ident_dir, deleter(svc), "all")
    assert sorted(os.listdir(tmp_path / "real")) == ["client.crt", "client.key"]
