"""HTTP 200 answers to an upload that are not the contract's success shape (the reference
service's `malformed` fault sends them without storing anything): never taken as success."""
from __future__ import annotations

import pytest

from tests.fixtures import module_runner as h

UP_EP = "/upload-orchestrator-certificate"
JSON_EP = "/agent/certificate"
HOSTILE = {
    "statusCode-string": '{"statusCode": "500"}',
    "status-error": '{"status": "error"}',
    "error": '{"error": "database is read-only"}',
    "empty": "{}",
}
JSON_HOSTILE = {
    "message-only": '{"message": "Certificate uploaded successfully"}',
    "other-id": '{"message": "Certificate uploaded successfully", "agent_id": "FFFF0000"}',
}
CASES = [("multipart", k, v) for k, v in HOSTILE.items()] + [("json", k, v) for k, v in JSON_HOSTILE.items()]
IDS = [f"{fmt}-{name}" for fmt, name, _ in CASES]


def fmt_args(svc, fmt):
    if fmt == "json":
        return {"upload_format": "json", "upload_endpoint": JSON_EP, "headers": svc.auth_headers()}
    return {}


@pytest.mark.parametrize(("fmt", "name", "body"), CASES, ids=IDS)
def test_hostile_200_on_rotation_rolls_back(device, svc, fmt, name, body):
    device.seed()
    before = device.state()
    svc.inject(JSON_EP if fmt == "json" else UP_EP, "malformed", body=body)
    result = device.run(rotate="always", **fmt_args(svc, fmt))
    assert result.failed, result
    assert "not the contract's success answer" in result.msg or "names another ID" in result.msg, result
    assert "rollback succeeded" in result.msg, result
    device.assert_intact(before)  # nothing swapped in
    device.assert_registered()  # the registry holds the previous certificate (again)


@pytest.mark.parametrize(("fmt", "name", "body"), CASES, ids=IDS)
def test_hostile_200_on_creation_journals_then_converges(device, svc, registry_delta, fmt, name, body):
    svc.inject(JSON_EP if fmt == "json" else UP_EP, "malformed", body=body)
    result = device.run(**fmt_args(svc, fmt))
    assert result.failed and result.result.get("registry_uncertain"), result
    assert not device.cert_path.exists() and not device.key_path.exists()
    assert h.journal_files(device.path) == [".mtls-pending.json"]
    again = device.run(**fmt_args(svc, fmt))
    assert not again.failed and again.result["action"] == "created", again
    device.assert_registered()
    ids, regs = registry_delta()
    assert len(ids) == 1 and list(regs) == ids  # the journaled ID was reused: no orphan
