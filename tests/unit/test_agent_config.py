"""The agent configuration written in the same module run as the identity (one module call per
host, after the engine) and the file facts the run returns, against the real reference service."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.agent import (
    check_agent_config,
    ensure_agent_config,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import (
    ConfigError,
    FileSafetyError,
    IdentityError,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import Settings, ensure_identity
from tests.unit.helpers import NoNetwork, client_for

CONFIG = "[tls]\ncert = client.crt\nkey = client.key\nverify = CERT_REQUIRED\n"


def run(svc, path, check_mode=False, agent_config=None, agent_config_name="agent-tls.ini", **kw):
    """What library/mtls_identity.py does: the identity, then the configuration."""
    kw.setdefault("key_size", 2048)
    settings = Settings(path=str(path), **kw)
    check_agent_config(agent_config, agent_config_name)
    factory = NoNetwork() if svc is None else (lambda: client_for(svc))
    result, _ = ensure_identity(settings, factory, check_mode=check_mode)
    if agent_config is not None:
        written = ensure_agent_config(settings, agent_config_name, agent_config, check_mode=check_mode)
        result["agent_config_changed"] = written
        result["changed"] = result["changed"] or written
    return result


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_config_is_written_with_the_identity_then_left_alone(svc, ident_dir):
    created = run(svc, ident_dir, agent_config=CONFIG)
    assert created["action"] == "created" and created["agent_config_changed"] is True
    conf = ident_dir / "agent-tls.ini"
    assert conf.read_text() == CONFIG and mode(conf) == 0o644
    assert sorted(p.name for p in ident_dir.iterdir()) == ["agent-tls.ini", "client.crt", "client.key"]

    again = run(None, ident_dir, agent_config=CONFIG)  # no network: nothing to do
    assert not again["changed"] and again["agent_config_changed"] is False
    inode = os.lstat(conf).st_ino
    changed = run(None, ident_dir, agent_config=CONFIG + "ciphers = HIGH\n")
    assert changed["changed"] and changed["action"] == "unchanged" and changed["agent_config_changed"]
    assert conf.read_text().endswith("ciphers = HIGH\n")
    assert os.lstat(conf).st_ino != inode  # replaced by a rename, never rewritten in place


def test_config_mode_is_repaired_without_rewriting(svc, ident_dir):
    run(svc, ident_dir, agent_config=CONFIG)
    conf = ident_dir / "agent-tls.ini"
    os.chmod(conf, 0o600)
    assert run(None, ident_dir, agent_config=CONFIG, check_mode=True)["agent_config_changed"]
    assert mode(conf) == 0o600  # check mode computed it, wrote nothing
    fixed = run(None, ident_dir, agent_config=CONFIG)
    assert fixed["changed"] and fixed["agent_config_changed"] and mode(conf) == 0o644


def test_config_in_check_mode_is_not_written(svc, ident_dir):
    run(svc, ident_dir)
    result = run(None, ident_dir, agent_config=CONFIG, check_mode=True)
    assert result["changed"] and result["agent_config_changed"]
    assert not (ident_dir / "agent-tls.ini").exists()


def test_config_is_not_written_when_the_identity_fails(svc, ident_dir):
    svc.inject("/generate-orchestrator-id", "status", status=403, count=None)
    with pytest.raises(IdentityError):
        run(svc, ident_dir, agent_config=CONFIG, )
    assert not (ident_dir / "agent-tls.ini").exists()


def test_a_symlinked_config_is_refused_and_not_followed(svc, ident_dir, tmp_path):
    run(svc, ident_dir)
    target = tmp_path / "elsewhere.ini"
    target.write_text("original\n")
    (ident_dir / "agent-tls.ini").symlink_to(target)
    with pytest.raises(FileSafetyError):
        run(None, ident_dir, agent_config=CONFIG)
    assert target.read_text() == "original\n"


@pytest.mark.parametrize("kw", [
    {"agent_config": "key = -----BEGIN PRIVATE KEY-----\n"},
    {"agent_config": "x" * (64 * 1024 + 1)},
    {"agent_config": CONFIG, "agent_config_name": "../agent.ini"},
    {"agent_config": CONFIG, "agent_config_name": ".hidden"},
    {"agent_config": CONFIG, "agent_config_name": "client.key"},
])
def test_bad_config_settings_are_refused(ident_dir, kw):
    kw.setdefault("agent_config_name", "agent-tls.ini")
    with pytest.raises(ConfigError):
        check_agent_config(kw["agent_config"], kw["agent_config_name"])


def test_file_facts_are_read_from_the_file_system(svc, ident_dir):
    created = run(svc, ident_dir)
    files = created["files"]
    assert (files["directory"]["mode"], files["key"]["mode"], files["cert"]["mode"]) == ("0700", "0600", "0644")
    assert files["key"]["uid"] == os.geteuid()
    os.chmod(ident_dir / "client.crt", 0o600)
    # Check mode reports what is there now, not what the run would make of it.
    assert run(None, ident_dir, check_mode=True)["files"]["cert"]["mode"] == "0600"
    assert run(None, ident_dir)["files"]["cert"]["mode"] == "0644"
    assert run(None, ident_dir / "missing", check_mode=True)["files"] == {}


def test_an_oversized_config_on_the_device_is_replaced(svc, ident_dir):
    run(svc, ident_dir)
    conf = ident_dir / "agent-tls.ini"
    conf.write_text("x" * (200 * 1024))  # larger than any agent_config the module accepts
    os.chmod(conf, 0o644)
    result = run(None, ident_dir, agent_config=CONFIG)
    assert result["agent_config_changed"] and conf.read_text() == CONFIG


def test_a_hard_linked_config_is_replaced_not_chmodded(svc, ident_dir, tmp_path):
    run(svc, ident_dir, agent_config=CONFIG)
    conf = ident_dir / "agent-tls.ini"
    os.chmod(conf, 0o600)
    os.link(conf, tmp_path / "other-name.ini")
    fixed = run(None, ident_dir, agent_config=CONFIG)
    assert fixed["agent_config_changed"] and mode(conf) == 0o644 and conf.read_text() == CONFIG
    assert os.lstat(conf).st_nlink == 1
    assert mode(tmp_path / "other-name.ini") == 0o600  # nothing chmod-ed through the link
