"""mtls_identity_info (and mtls_check) read another user's identity the way an audit needs: root
reads any user's files (only the writing path has the ownership rules), and an identity the
module cannot read is a failure, never "no identity". Real users (the ``accounts`` fixture), the
module in its own process as Ansible runs it on a device."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from tests.fixtures.identities import build_cert, write_identity
from tests.fixtures.module_runner import PYTHON, RUN_MODULE, module_env

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: other users' identities")


@pytest.fixture
def world_dir():
    """A directory every user can traverse (pytest's own tmp dirs are root's 0700)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="fleet-mtls-info-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def agent_identity(world_dir, accounts, keys):
    """The agent user's identity in its home: <world>/home-<user>/.mtls, all the agent's."""
    agent = accounts.user()
    home = world_dir / ("home-" + agent.pw_name)
    home.mkdir(mode=0o755)
    key = keys.get(0)
    ident = write_identity(home / ".mtls", key, build_cert(key))
    for path in (home, ident, ident / "client.key", ident / "client.crt"):
        os.chown(path, agent.pw_uid, agent.pw_gid)
    return agent, ident


def run_info(world_dir, args, user=None):
    """mtls_identity_info's main() in its own process, as root or as ``user``."""
    argfile = world_dir / ("args-%d.json" % len(list(world_dir.glob("args-*.json"))))
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_remote_tmp=str(world_dir))}))
    os.chmod(argfile, 0o644)
    extra = {"FLEET_FAULTS_MODULE": "mtls_identity_info", "HOME": str(world_dir)}
    proc = subprocess.run([str(PYTHON), str(RUN_MODULE), str(argfile)], env=module_env(extra),
                          user=user.pw_uid if user else None, group=user.pw_gid if user else None,
                          cwd=str(world_dir), capture_output=True, text=True, check=False, timeout=120)
    return json.loads(proc.stdout[proc.stdout.index("{"):]), proc


def test_root_reads_another_users_identity(world_dir, accounts, keys):
    agent, ident = agent_identity(world_dir, accounts, keys)
    result, proc = run_info(world_dir, {"path": str(ident)})
    assert not result.get("failed"), proc.stdout + proc.stderr
    assert result["exists"] is True and result["key_matches"] is True, result
    assert result["problems"] == [], result["problems"]
    assert result["files"]["key"]["owner"] == agent.pw_name
    # Named by its owner, the path defaults to ~owner/.mtls (owner's home from the password
    # database), and the owners are checked too.
    by_owner, proc = run_info(world_dir, {"owner": agent.pw_name, "path": str(ident)})
    assert by_owner["exists"] is True and by_owner["problems"] == [], by_owner
    os.chown(ident / "client.crt", 0, 0)
    wrong, _proc = run_info(world_dir, {"owner": agent.pw_name, "path": str(ident)})
    assert wrong["exists"] is True
    assert any("client.crt has owner 0:0" in p for p in wrong["problems"]), wrong["problems"]


def test_an_identity_the_module_cannot_read_fails_instead_of_reporting_none(world_dir, accounts, keys):
    _agent, ident = agent_identity(world_dir, accounts, keys)
    other = accounts.user()
    result, proc = run_info(world_dir, {"path": str(ident)}, user=other)
    assert result.get("failed") is True, proc.stdout + proc.stderr
    assert "Permission denied" in result["msg"] and str(ident) in result["msg"], result
    assert "exists" not in result
    # An identity that is not there is still "no identity".
    missing, _proc = run_info(world_dir, {"path": str(world_dir / "nobody" / ".mtls")}, user=other)
    assert not missing.get("failed") and missing["exists"] is False, missing


def test_a_readable_directory_with_an_unreadable_key_fails_too(world_dir, accounts, keys):
    _agent, ident = agent_identity(world_dir, accounts, keys)
    os.chmod(ident, 0o755)  # the directory is readable, the key (0600) is not
    result, proc = run_info(world_dir, {"path": str(ident)}, user=accounts.user())
    assert result.get("failed") is True, proc.stdout + proc.stderr
    assert "client.key" in result["msg"] and "Permission denied" in result["msg"], result
