"""The role with mtls_api_headers_file: the token lives only in a file on the device."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


def provision(service, tmp_path, extra_vars):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_DEBUG="1", MTLS_DEMO_ROOT=str(tmp_path / "fleet"),
               MTLS_DEMO_API_URL=service.api_url, MTLS_DEMO_GATE_URL=service.gate_url,
               MTLS_DEMO_CA=str(service.ca_path), MTLS_DEMO_TOKEN="")  # no token on the controller
    # No agent runs here: the cloud's confirmation (the default there) is tests/module/test_confirm.py's.
    extra = {"mtls_report_dir": str(tmp_path / "reports"), "mtls_key_size": 2048, "mtls_confirm": "none",
             "mtls_upload_format": "json", "mtls_upload_endpoint": "/agent/certificate", **extra_vars}
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "inventory/demo", "playbooks/provision.yml", "--limit", "edge-sp-01",
         "-e", json.dumps(extra)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def test_role_authenticates_with_a_token_only_in_a_device_file(service, tmp_path):
    # Control: the JSON endpoint refuses the upload without the token.
    refused = provision(service, tmp_path, {})
    assert refused.returncode != 0
    assert "HTTP 403" in refused.stdout + refused.stderr

    headers_file = tmp_path / "api-headers.json"
    fd = os.open(headers_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"Authorization": "Bearer " + service.token}, f)
    run = provision(service, tmp_path, {"mtls_api_headers_file": str(headers_file)})
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    row = json.loads((tmp_path / "reports" / "provision-report.json").read_text())["hosts"][0]
    assert row["action"] == "created" and row["verify"] == "ok", row
    assert service.registrations()[row["agent_id"]] == row["fingerprint_sha256"]
    assert service.request_count("/agent/certificate") == 2
    assert service.token not in output  # ANSIBLE_DEBUG=1 included
