"""The agent's configuration files: what they say, what a change restarts, and that a staged
change that is aborted leaves the live files byte-for-byte as they were."""

from __future__ import annotations

import os
import pathlib
import re
import stat

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import options
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.agent_files import (
    DROPIN_NAME,
    ENV,
    INI,
    SERVER_CA,
    Staging,
    staged_name,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.fsutil import IdentityDir
from tests.fixtures.product import agent_config

CA = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ0FGQUtF\n-----END CERTIFICATE-----\n"
OTHER_CA = CA.replace("Q0FGQUtF", "T1RIRVJDQQ")


@pytest.fixture
def ident(tmp_path):
    path = tmp_path / "home" / ".mtls"
    idir = IdentityDir.open(str(path), os.geteuid(), os.getegid(), create=True)
    yield idir
    idir.close()


# The options these tests set, by the names they use here.
OPTION_OF = {"trust": "agent_trust", "restart": "agent_restart", "service": "agent_service",
             "config_name": "agent_config_name"}


def config(ident, tmp_path, **kw):
    """The AgentConfig of these options, its files rendered from the role's templates."""
    kw.setdefault("server_url", "https://gate.example:8443")
    return agent_config(ident.path, systemd_dir=tmp_path, **{OPTION_OF.get(k, k): v for k, v in kw.items()})


def snapshot(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())} if path.is_dir() else {}


def apply(ident, cfg):
    staging = Staging(ident, cfg)
    staging.prepare()
    staging.commit()
    staging.close()
    return staging


def test_private_ca_gives_the_agent_ssl_cert_file(ident, tmp_path):
    cfg = config(ident, tmp_path, server_ca_content=CA)
    assert cfg.trust == "ca_file"
    assert cfg.render_env().splitlines()[-1] == "SSL_CERT_FILE=%s/%s" % (ident.path, SERVER_CA)
    ini = cfg.render_ini()
    assert "ca_bundle = %s/%s" % (ident.path, SERVER_CA) in ini and "trust = ca_file" in ini


def test_system_trust_gives_no_ssl_cert_file(ident, tmp_path):
    cfg = config(ident, tmp_path)
    assert cfg.trust == "system"
    assert "SSL_CERT_FILE" not in "".join(
        line for line in cfg.render_env().splitlines() if not line.startswith("#"))


def test_a_docker_agent_gets_the_path_inside_its_container(ident, tmp_path):
    cfg = config(ident, tmp_path, server_ca_content=CA, restart="docker")
    assert cfg.render_env().splitlines()[-1] == "SSL_CERT_FILE=/root/.mtls/server-ca.crt"


def test_ca_file_trust_without_a_ca_is_refused(ident, tmp_path):
    with pytest.raises(ConfigError, match="needs the server's CA"):
        config(ident, tmp_path, trust="ca_file")


@pytest.mark.parametrize("content", ["", "hello", CA + "-----BEGIN PRIVATE KEY-----\nAAAA\n"])
def test_a_ca_content_that_is_not_only_certificates_is_refused(ident, tmp_path, content):
    with pytest.raises(ConfigError):
        config(ident, tmp_path, server_ca_content=content)


def test_first_write_then_nothing_to_do(ident, tmp_path):
    cfg = config(ident, tmp_path, server_ca_content=CA)
    first = apply(ident, cfg)
    assert sorted(first.changed) == sorted([INI, ENV, SERVER_CA]) and first.restart_needed
    live = pathlib_of(ident)
    assert {p.name for p in live.iterdir()} == {INI, ENV, SERVER_CA}
    for p in live.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
    again = apply(ident, cfg)
    assert again.changed == [] and not again.restart_needed


def test_only_the_ini_changing_does_not_restart_the_agent(ident, tmp_path):
    apply(ident, config(ident, tmp_path, server_ca_content=CA))
    changed = apply(ident, config(ident, tmp_path, server_ca_content=CA, tls_min_version="TLSv1.3"))
    assert changed.changed == [INI] and not changed.restart_needed


def test_an_aborted_change_leaves_the_live_files_byte_for_byte(ident, tmp_path):
    apply(ident, config(ident, tmp_path, server_ca_content=CA))
    live = pathlib_of(ident)
    before = snapshot(live)
    inodes = {p.name: p.stat().st_ino for p in live.iterdir()}
    staging = Staging(ident, config(ident, tmp_path, server_ca_content=OTHER_CA))
    assert staging.prepare() == [SERVER_CA]
    staged = staging.staged_server_ca()
    assert staged == os.path.join(ident.path, staged_name(SERVER_CA))
    assert open(staged).read() == OTHER_CA  # what a check of the staged settings trusts
    staging.abort()
    assert snapshot(live) == before
    assert {p.name: p.stat().st_ino for p in live.iterdir()} == inodes


def test_check_mode_stages_nothing(ident, tmp_path):
    staging = Staging(ident, config(ident, tmp_path, server_ca_content=CA), check_mode=True)
    assert sorted(staging.prepare()) == sorted([INI, ENV, SERVER_CA])
    staging.commit()
    assert snapshot(pathlib_of(ident)) == {}


def test_a_wrong_mode_is_fixed_without_a_restart(ident, tmp_path):
    cfg = config(ident, tmp_path, server_ca_content=CA)
    apply(ident, cfg)
    os.chmod(os.path.join(ident.path, SERVER_CA), 0o600)
    fixed = apply(ident, cfg)
    assert fixed.changed == [] and fixed.mode_fixes == [SERVER_CA] and not fixed.restart_needed
    assert stat.S_IMODE(os.stat(os.path.join(ident.path, SERVER_CA)).st_mode) == 0o644


@pytest.mark.skipif(os.geteuid() != 0, reason="the systemd drop-in is written by root")
def test_systemd_gets_a_drop_in_naming_agent_env(ident, tmp_path):
    cfg = config(ident, tmp_path, server_ca_content=CA, restart="systemd", service="orchestrator-agent")
    staging = apply(ident, cfg)
    assert staging.dropin_changed
    dropin = tmp_path / "orchestrator-agent.service.d" / DROPIN_NAME
    assert dropin.read_text().splitlines()[-2:] == [
        "[Service]", "EnvironmentFile=%s/%s" % (ident.path, ENV)]
    assert stat.S_IMODE(dropin.stat().st_mode) == 0o644
    assert not apply(ident, cfg).dropin_changed


@pytest.mark.skipif(os.geteuid() != 0, reason="the systemd drop-in is written by root")
def test_a_symlinked_drop_in_directory_is_refused(ident, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, tmp_path / "orchestrator-agent.service.d")
    cfg = config(ident, tmp_path, restart="systemd")
    with pytest.raises(Exception, match="symbolic link"):
        apply(ident, cfg)
    assert list(elsewhere.iterdir()) == []


def pathlib_of(ident):
    return pathlib.Path(ident.path)


def test_a_symlinked_file_is_refused_and_not_followed(ident, tmp_path):
    target = tmp_path / "elsewhere.env"
    target.write_text("original\n")
    os.symlink(target, os.path.join(ident.path, ENV))
    with pytest.raises(Exception, match="symbolic link"):
        apply(ident, config(ident, tmp_path))
    assert target.read_text() == "original\n"


def test_an_oversized_file_on_the_device_is_replaced(ident, tmp_path):
    cfg = config(ident, tmp_path)
    path = os.path.join(ident.path, INI)
    with open(path, "w") as handle:
        handle.write("x" * (200 * 1024))
    assert INI in apply(ident, cfg).changed
    assert open(path).read() == cfg.render_ini()


def test_a_hard_linked_file_is_replaced_never_chmodded(ident, tmp_path):
    cfg = config(ident, tmp_path, server_ca_content=CA)
    apply(ident, cfg)
    live = os.path.join(ident.path, SERVER_CA)
    os.chmod(live, 0o600)
    os.link(live, tmp_path / "other-name.crt")
    fixed = apply(ident, cfg)
    assert SERVER_CA in fixed.changed and stat.S_IMODE(os.stat(live).st_mode) == 0o644
    assert os.lstat(live).st_nlink == 1 and open(live).read() == CA
    assert stat.S_IMODE(os.stat(tmp_path / "other-name.crt").st_mode) == 0o600  # untouched


@pytest.mark.parametrize("name", ["../agent.ini", ".hidden", "client.key", "agent.env", "a/b"])
def test_a_config_name_that_is_not_a_plain_free_name_is_refused(ident, tmp_path, name):
    with pytest.raises(ConfigError, match="plain file name"):
        config(ident, tmp_path, config_name=name)


def test_a_failed_stage_leaves_no_staged_file(ident, tmp_path, monkeypatch):
    apply(ident, config(ident, tmp_path))
    before = snapshot(pathlib_of(ident))
    original = ident.create

    def fail_on_the_ca(name, data, mode):
        if name == staged_name(SERVER_CA):
            original(name, data[:10], mode)  # a partial file, then the disk fills
            raise OSError(28, "No space left on device")
        return original(name, data, mode)

    monkeypatch.setattr(ident, "create", fail_on_the_ca)
    staging = Staging(ident, config(ident, tmp_path, server_ca_content=CA, tls_min_version="TLSv1.3"))
    with pytest.raises(OSError):
        staging.prepare()
    staging.abort()
    assert snapshot(pathlib_of(ident)) == before


# --------------------------------------------------------------------------- templates
def template(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_an_operators_template_is_rendered_and_completed_on_the_device(ident, tmp_path):
    env = template(tmp_path, "env.j2", "SITE=campinas\n{% if mtls_agent_ssl_cert_file %}SSL_CERT_FILE="
                                       "{{ mtls_agent_ssl_cert_file }}\n{% endif %}")
    ini = template(tmp_path, "ini.j2", "dir = {{ mtls_agent_identity_dir }}\nurl = {{ mtls_agent_server_url }}\n")
    cfg = config(ident, tmp_path, server_ca_content=CA, sources={"env": env, "ini": ini})
    assert cfg.render_env() == "SITE=campinas\nSSL_CERT_FILE=%s/%s\n" % (ident.path, SERVER_CA)
    assert cfg.render_ini() == "dir = %s\nurl = https://gate.example:8443\n" % ident.path


@pytest.mark.parametrize(("text", "words"), [
    ("SSL_CERT_FILE={{ mtls_agent_ssl_cert_file }}\nX={{ mtls_agent_identity_dir | upper }}\n", "cannot fill in"),
    ("SSL_CERT_FILE={{ mtls_agent_ssl_cert_file }}\nNOTE=\"two words\"\n", "line 2 is not NAME=VALUE"),
    ("SSL_CERT_FILE={{ mtls_agent_ssl_cert_file }}\nKEY=-----BEGIN PRIVATE KEY-----\n", "key material"),
    ("# no SSL_CERT_FILE at all\n", "SSL_CERT_FILE=(unset) but the agent's trust is ca_file"),
    ("SSL_CERT_FILE=/etc/ssl/other.pem\n", "the check would not prove what the agent gets"),
    ("SSL_CERT_FILE={{ mtls_agent_ssl_cert_file }}\nSSL_CERT_DIR=/etc/ssl/certs\n", "SSL_CERT_DIR"),
])
def test_an_agent_env_the_agent_would_read_otherwise_than_proven_is_refused(ident, tmp_path, text, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        config(ident, tmp_path, server_ca_content=CA, sources={"env": template(tmp_path, "env.j2", text)})


def test_a_drop_in_that_does_not_give_the_agent_its_environment_is_refused(ident, tmp_path):
    dropin = template(tmp_path, "dropin.j2", "[Service]\nEnvironment=DEBUG=1\n")
    with pytest.raises(ConfigError, match="no EnvironmentFile=%s" % re.escape(os.path.join(ident.path, ENV))):
        config(ident, tmp_path, server_ca_content=CA, restart="systemd", sources={"dropin": dropin})
    assert config(ident, tmp_path, restart="systemd", sources={"dropin": dropin}).trust == "system"  # nothing to give


def test_the_module_refuses_to_run_the_config_phase_without_rendered_files(ident, tmp_path):
    from tests.fixtures.product import params

    with pytest.raises(ConfigError, match="was not rendered"):
        options.agent_config(params(api_url="https://api.example"), ident.path, {})


def test_a_change_comes_with_its_diff(ident, tmp_path):
    apply(ident, config(ident, tmp_path))
    staging = Staging(ident, config(ident, tmp_path, server_ca_content=CA), check_mode=True)
    assert sorted(staging.prepare()) == sorted([ENV, INI, SERVER_CA])
    diffs = {d["after_header"]: d for d in staging.diffs}
    env = diffs[os.path.join(ident.path, ENV)]
    line = "SSL_CERT_FILE=%s/%s\n" % (ident.path, SERVER_CA)
    assert line not in env["before"] and env["after"].endswith(line)
    assert diffs[os.path.join(ident.path, SERVER_CA)] == {
        "before_header": os.path.join(ident.path, SERVER_CA), "after_header": os.path.join(ident.path, SERVER_CA),
        "before": "", "after": CA}
