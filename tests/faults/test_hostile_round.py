"""The hostile round of issue 18: answers, names and files an attacker (or an odd server)
controls, each met by the real module, the real report writer or a real ansible-playbook run
against the reference service. Every case failed on the code before issue 18."""
from __future__ import annotations

import pytest

from tests.fixtures import module_runner as h

DELETE_EP = "/orchestrators/<id>"


# --------------------------------------------------------------------------- decommission


def deregister(device, svc, **args):
    """mtls_deregister's own main() in its own process (as Ansible runs it on a device)."""
    args = {"path": str(device.path), "api_url": svc.api_url, "ca_path": str(svc.ca_path),
            "endpoint": "/orchestrators/{id}", "headers": svc.auth_headers(), "retries": 0, **args}
    result = h.run_module(args, workdir=device.work, via="direct", env={"FLEET_FAULTS_MODULE": "mtls_deregister"})
    device.assert_no_secrets(result)
    return result


# 200 answers that do not prove a deletion (the reference service's `malformed` fault sends
# them without deleting anything).
NO_PROOF = {
    "message-ok": '{"statusCode": 200, "message": "ok"}',
    "data-message": '{"statusCode": 200, "data": {"message": "deleted"}}',
    "other-id": '{"statusCode": 200, "data": {"id": "FFFF0000", "message": "Orchestrator decommissioned"}}',
    "not-json": "deleted",
}


@pytest.mark.parametrize("body", list(NO_PROOF.values()), ids=list(NO_PROOF))
def test_decommission_believes_only_the_proof_of_deletion(device, svc, body):
    agent_id = device.seed()
    before = device.state()
    svc.inject(DELETE_EP, "malformed", body=body)
    result = deregister(device, svc, confirm=agent_id)
    assert result.failed and result.result.get("action") == "failed", result
    assert "not the contract's proof of deletion" in result.msg, result
    assert "(%s)" % " ".join(body.split()) in result.msg, result  # the answer quoted
    assert svc.fired(DELETE_EP, "malformed") == 1
    device.assert_intact(before)  # files kept
    assert agent_id not in svc.deleted_ids()
    assert svc.gate_accepts(device.cert_path, device.key_path)  # the registry still holds the pair


def test_decommission_with_the_proof_wipes_the_device(device, svc):
    agent_id = device.seed()
    result = deregister(device, svc, confirm=agent_id)
    assert not result.failed and result.result["action"] == "decommissioned", result
    assert not device.path.exists() and agent_id in svc.deleted_ids()


# --------------------------------------------------------------------------- API headers

ID_EP = "/generate-orchestrator-id"
UP_EP = "/upload-orchestrator-certificate"
MARK = "SECRETPART42"  # the ASCII part of each token: never printed
TOKENS = {"latin-1": "Bearer t\u00f6k\u00e9n-" + MARK,
          "beyond-latin-1": "Bearer \u0442\u043e\u043a\u0435\u043d\u20ac-" + MARK}
OUTSIDE = "the value of header Authorization holds a character outside ASCII"


def assert_nothing_sent(svc):
    assert svc.request_count(ID_EP) == svc.request_count(UP_EP) == 0


@pytest.mark.parametrize("token", list(TOKENS.values()), ids=list(TOKENS))
def test_a_non_ascii_token_is_refused_before_any_request_naming_the_role_variable(tmp_path, svc, token):
    from tests.fixtures.playbook_fleet import RoleFleet, explain

    fleet = RoleFleet(tmp_path, svc, {"hd-1": {"mtls_api_headers": {"Authorization": token}}})
    run = fleet.play("provision.yml")
    assert run.rc != 0, explain(run)
    row = fleet.rows()["hd-1"]
    assert (row["action"], row["phase"]) == ("failed", "arguments"), row
    assert row["error"].startswith("mtls_api_headers: " + OUTSIDE), row
    assert MARK not in run.output and token.split("-")[0] not in run.output, explain(run)
    assert all(MARK not in p.read_text() for p in fleet.reports.glob("provision-report.*"))
    assert_nothing_sent(svc)
    assert not fleet.host_dir("hd-1").exists()


def test_a_module_user_is_told_the_options_name(device, svc, tmp_path):
    source = tmp_path / "api-headers.json"
    source.write_text('{"Authorization": "%s"}' % TOKENS["latin-1"])
    for option, value in (("headers", {"Authorization": TOKENS["beyond-latin-1"]}), ("headers_src", str(source))):
        result = device.run(via="ansible", **{option: value})
        assert result.failed and result.msg.startswith("%s: %s" % (option, OUTSIDE)), result
        assert result.result["status"]["phase"] == "arguments", result
        assert MARK not in result.output
    assert_nothing_sent(svc)
    assert not device.path.exists()


def test_a_headers_file_on_the_device_names_itself_and_fails_the_identity_phase(device, svc, tmp_path):
    headers_file = tmp_path / "api-headers.json"
    headers_file.write_text('{"Authorization": "%s"}' % TOKENS["latin-1"])
    result = device.run(headers_file=str(headers_file))
    assert result.failed and result.msg.startswith("headers_file %s: %s" % (headers_file, OUTSIDE)), result
    assert result.result["status"]["phase"] == "identity", result
    assert MARK not in result.output
    assert_nothing_sent(svc)
    assert not device.path.exists()
