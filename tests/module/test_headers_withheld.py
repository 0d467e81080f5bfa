"""mtls_identity run without the API's headers (``headers_withheld``, which the action plugin
sets when the identity ledger expects no request): a run that would need the API changes
nothing, makes no request and says what it would do (``headers_needed``); one that needs none
runs as always. Through ansible-playbook, against the reference service.
"""

from __future__ import annotations

import shutil

import pytest

from tests.fixtures.ansible_runner import run_task
from tests.module.test_module_headers_file import json_args, total_requests

pytestmark = pytest.mark.integration


def snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())} if directory.exists() else None


@pytest.fixture
def provisioned(svc, tmp_path):
    ident = tmp_path / "mtls"
    run = run_task(tmp_path, "mtls_identity", json_args(svc, ident, headers={"Authorization": "Bearer " + svc.token}))
    assert not run.failed and run.result["action"] == "created", run.output[-3000:]
    svc.clear_faults()
    return ident


def withheld(svc, tmp_path, ident, **kw):
    run = run_task(tmp_path, "mtls_identity", json_args(svc, ident, headers_withheld=True, **kw))
    assert not run.failed, run.output[-3000:]
    return run.result


def test_a_creation_stops_before_the_directory_exists(svc, tmp_path):
    ident = tmp_path / "fresh"
    result = withheld(svc, tmp_path, ident)
    assert (result["headers_needed"], result["changed"]) == ("created", False)
    assert not ident.exists() and total_requests(svc) == 0


def test_an_unchanged_identity_needs_no_headers(svc, tmp_path, provisioned):
    result = withheld(svc, tmp_path, provisioned)
    assert result["action"] == "unchanged" and "headers_needed" not in result
    assert svc.faults()["requests"] == {"/ws": 1}  # the agent-true check at the gate; the API not asked


def test_a_rotation_stops_before_any_key_or_request(svc, tmp_path, provisioned):
    before = snapshot(provisioned)
    result = withheld(svc, tmp_path, provisioned, rotate="always")
    assert (result["headers_needed"], result["changed"]) == ("rotated", False)
    assert snapshot(provisioned) == before and total_requests(svc) == 0


def test_an_interrupted_transaction_waits_for_the_headers(svc, tmp_path, provisioned):
    # A staged pair an interrupted run left: resolving it may upload, so it needs the headers.
    shutil.copy2(provisioned / "client.key", provisioned / ".client.key.new")
    shutil.copy2(provisioned / "client.crt", provisioned / ".client.crt.new")
    before = snapshot(provisioned)
    result = withheld(svc, tmp_path, provisioned)
    assert result["headers_needed"] == "an interrupted transaction to resolve" and not result["changed"]
    assert snapshot(provisioned) == before and total_requests(svc) == 0
