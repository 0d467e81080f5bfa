"""Agent-true verification through the role: playbooks/verify.yml and provision.yml say what the
stock agent would see at the gate (real nginx; the certificate is checked on the WebSocket
upgrade of /ws and on the Socket.IO CONNECT; every other path answers 403 without the API key).

One fleet with the demo inventory's settings (the gate as mtls_server_url, the service CA as
mtls_server_ca_src, no verification variable), provisioned once; then the registry rotates one
host's certificate out, one host's ID is deleted, one host gets a certificate with its right CN
that was never uploaded.
"""

from __future__ import annotations

import json

import pytest

from tests.fixtures.playbook_fleet import RoleFleet
from tests.fixtures.servicectl import cert_pem, make_key, make_self_signed, run_agent_process, write_identity

pytestmark = pytest.mark.integration

CURRENT, ROTATED_OUT, DELETED, NEVER_UPLOADED = "at-current", "at-rotated-out", "at-deleted", "at-never-uploaded"
HOSTS = (CURRENT, ROTATED_OUT, DELETED, NEVER_UPLOADED)
REFUSED = (ROTATED_OUT, DELETED, NEVER_UPLOADED)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, shared_service):
    svc = shared_service
    svc.clear_faults()
    fleet = RoleFleet(tmp_path_factory.mktemp("agent-true"), svc, {h: {} for h in HOSTS})
    fleet.first = fleet.play("provision.yml")
    assert fleet.first.rc == 0, fleet.first.explain()
    ids = {h: fleet.agent_id(h) for h in HOSTS}
    replacement = make_self_signed(ids[ROTATED_OUT], make_key())
    assert svc.upload(ids[ROTATED_OUT], cert_pem(replacement)).status_code == 200
    assert svc.delete(ids[DELETED]).status_code in (200, 204)
    key = make_key()
    write_identity(fleet.host_dir(NEVER_UPLOADED), make_self_signed(ids[NEVER_UPLOADED], key), key)
    # What the gate itself says of each pair (the premise, independent of the code under test).
    for host in HOSTS:
        assert svc.ws_accepts(fleet.cert(host), fleet.key(host)) is (host == CURRENT), host
    return fleet


def assert_verdicts(fleet, run, protocol):
    assert run.rc != 0, run.explain()
    rows = fleet.rows("verify-report")
    current = rows[CURRENT]
    assert (current["action"], current["verify"], current["verify_protocol"]) == ("valid", "ok", protocol), current
    assert run.recap[CURRENT]["failed"] == 0, run.explain()
    for host in REFUSED:
        row = rows[host]
        assert (row["verify"], row["verify_failure"], row["verify_protocol"]) == ("failed", "refused", protocol), row
        assert row["phase"] == "verify" and "refused by server" in row["error"], row
        assert row["action"] == "valid", row  # the audit's verdict on the files, as for a host that passed
        assert run.recap[host]["failed"] == 1, run.explain()


def test_the_default_settings_verify_on_the_gates_websocket(fleet):
    """No verification variable at all: the role checks the gate's /ws, as the agent connects."""
    run = fleet.play("verify.yml")
    assert_verdicts(fleet, run, "websocket")


def test_socketio_gives_the_same_verdicts(fleet):
    run = fleet.play("verify.yml", "-e", "mtls_verify_protocol=socketio")
    assert_verdicts(fleet, run, "socketio")


def test_a_403_for_a_missing_api_key_is_an_http_status_not_a_refusal(fleet):
    url = fleet.service.gate_url + "/"
    run = fleet.play("verify.yml", "--limit", CURRENT, "-e", "mtls_verify_protocol=https",
                     "-e", f"mtls_verify_url={url}")
    assert run.rc != 0, run.explain()
    row = fleet.rows("verify-report")[CURRENT]
    assert (row["verify"], row["verify_failure"], row["verify_protocol"]) == ("failed", "http_status", "https"), row
    assert "HTTP 403" in row["error"] and "not a certificate verdict" in row["error"], row
    assert "refused" not in row["error"].lower(), row


def test_system_trust_with_a_private_server_ca_fails_saying_how_to_fix_it(fleet):
    before = fleet.live_files(CURRENT)
    restarts = fleet.restarts(CURRENT)
    run = fleet.play("provision.yml", "--limit", CURRENT, "-e", "mtls_agent_trust=system")
    assert run.rc != 0, run.explain()
    row = fleet.rows()[CURRENT]
    assert (row["verify_failure"], row["config"], row["phase"]) == ("untrusted_server", "refused", "config"), row
    error = row["error"]
    assert "the agent trusts OpenSSL's default store (no SSL_CERT_FILE in its environment)" in error, error
    assert "does not trust the certificate of the server" in error, error
    assert "mtls_server_ca_src" in error and "mtls_agent_trust" in error, error
    assert fleet.live_files(CURRENT) == before and fleet.restarts(CURRENT) == restarts


def test_the_stock_agent_connects_with_exactly_the_environment_the_role_delivered(fleet):
    home = str(fleet.home(CURRENT))
    agent_env = fleet.agent_env(CURRENT)
    connected = run_agent_process(fleet.service.gate_url, {"HOME": home, **agent_env})
    assert connected["connected"] is True and connected["returncode"] == 0, (connected, agent_env)
    assert agent_env == {"SSL_CERT_FILE": str(fleet.host_dir(CURRENT) / "server-ca.crt")}
    bare = run_agent_process(fleet.service.gate_url, {"HOME": home})
    assert bare["connected"] is False and "CERTIFICATE_VERIFY_FAILED" in bare["detail"], bare


def test_the_audit_checks_a_due_identity_too(fleet):
    """Due for rotation is still the pair the agent presents today: a refused one must not pass
    the audit as "skipped"."""
    due = {"mtls_renew_before_days": 370, "mtls_renew_jitter_days": 0, "mtls_valid_days": 800}  # 364 days left
    run = fleet.play("verify.yml", "--limit", ROTATED_OUT, "-e", json.dumps(due))
    row = fleet.rows("verify-report")[ROTATED_OUT]
    assert row["action"] == "due", row
    assert (row["verify"], row["verify_failure"]) == ("failed", "refused"), row
    assert run.rc != 0, run.explain()
