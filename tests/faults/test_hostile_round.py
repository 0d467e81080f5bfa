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
