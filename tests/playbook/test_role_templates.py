"""The agent's files come from the role's templates (roles/mtls_identity/templates), rendered on the
controller by the module's action plugin with the task's variables; an operator replaces one
with a template of their own (mtls_agent_env_template, ...); ``--check --diff`` shows each file
that would change; the modes are role variables the module enforces.

Real ``ansible-playbook playbooks/provision.yml`` runs over local "devices" against the reference
service (tests/fixtures/playbook_fleet.py).
"""

from __future__ import annotations

import secrets
import stat

import pytest

from tests.fixtures.playbook_fleet import RoleFleet

pytestmark = pytest.mark.integration

HOST = "tpl-01"
SYSTEMD = "/etc/systemd/system"


@pytest.fixture
def fleet(tmp_path, shared_service):
    shared_service.clear_faults()
    # A docker agent (the role's default) on a device without docker: nothing to restart.
    return RoleFleet(tmp_path, shared_service, {HOST: {}}, mtls_agent_restart="docker",
                     mtls_agent_docker_command="/nonexistent/docker")


def test_check_diff_shows_the_drop_in_and_agent_env_a_switch_to_systemd_would_write(fleet):
    first = fleet.play("provision.yml")
    assert first.rc == 0, first.explain()
    env_file = fleet.host_dir(HOST) / "agent.env"
    assert env_file.read_text().endswith("SSL_CERT_FILE=/root/.mtls/server-ca.crt\n")  # as the container sees it
    before = fleet.live_files(HOST)
    unit = "fleet-mtls-diff-" + secrets.token_hex(4)
    check = fleet.play("provision.yml", "--check", "--diff", "-e", "mtls_agent_restart=systemd",
                       "-e", "mtls_agent_service=" + unit)
    assert check.rc == 0, check.explain()
    dropin = "%s/%s.service.d/fleet-mtls.conf" % (SYSTEMD, unit)
    output = check.output
    # Not a bare "changed:": each file, before and after.
    assert "after: %s" % dropin in output and "+EnvironmentFile=%s" % env_file in output, output[-4000:]
    assert "after: %s" % env_file in output, output[-4000:]
    assert "-SSL_CERT_FILE=/root/.mtls/server-ca.crt" in output
    assert "+SSL_CERT_FILE=%s" % (fleet.host_dir(HOST) / "server-ca.crt") in output
    assert "+restart = systemd" in output  # the record (agent-tls.ini)
    assert "PRIVATE KEY" not in output
    # Check mode: nothing written.
    assert fleet.live_files(HOST) == before
    assert not __import__("os").path.exists("%s/%s.service.d" % (SYSTEMD, unit))


def test_an_operators_template_replaces_the_roles(fleet, tmp_path):
    template = tmp_path / "project" / "templates" / "agent.env.j2"
    template.parent.mkdir(parents=True)
    template.write_text("# {{ inventory_hostname }}: our own environment file\nAGENT_SITE={{ site_code }}\n"
                        "{% if mtls_agent_ssl_cert_file %}SSL_CERT_FILE={{ mtls_agent_ssl_cert_file }}\n{% endif %}")
    fleet.set(mtls_agent_env_template=str(template), site_code="campinas-2")
    run = fleet.play("provision.yml")
    assert run.rc == 0, run.explain()
    assert (fleet.host_dir(HOST) / "agent.env").read_text() == (
        "# %s: our own environment file\nAGENT_SITE=campinas-2\nSSL_CERT_FILE=/root/.mtls/server-ca.crt\n" % HOST)
    # A value the agent's environment files cannot carry alike is refused before anything changes.
    before = fleet.live_files(HOST)
    fleet.set(site_code="two words")
    refused = fleet.play("provision.yml")
    row = fleet.rows()[HOST]
    assert refused.rc != 0 and row["phase"] == "preflight", refused.explain()
    assert "line 2 is not NAME=VALUE" in row["error"] and "mtls_agent_env_template" in row["error"], row
    assert fleet.live_files(HOST) == before


def test_the_modes_are_role_variables_and_the_key_is_never_loosened(fleet):
    fleet.set(mtls_key_mode="0400", mtls_cert_mode="0640")
    run = fleet.play("provision.yml")
    assert run.rc == 0, run.explain()
    directory = fleet.host_dir(HOST)
    assert stat.S_IMODE((directory / "client.key").stat().st_mode) == 0o400
    assert stat.S_IMODE((directory / "client.crt").stat().st_mode) == 0o640
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    fleet.set(mtls_key_mode="0644")
    refused = fleet.play("provision.yml")
    row = fleet.rows()[HOST]
    assert refused.rc != 0 and "mtls_key_mode 0644 is refused" in row["error"], row
    assert stat.S_IMODE((directory / "client.key").stat().st_mode) == 0o400
