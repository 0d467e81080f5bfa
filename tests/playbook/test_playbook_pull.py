"""Pull mode: a device behind NAT runs ansible-pull against a git repository of this project
and provisions itself (localhost, connection local), as documented in the README."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
import yaml
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.source_repo import make_source_repo

pytestmark = pytest.mark.integration

BIN = pathlib.Path(sys.executable).parent


def metric_values(path: pathlib.Path) -> dict[str, tuple[dict, float]]:
    """{sample name: (labels, value)} of a one-host metrics file, parsed by prometheus_client."""
    return {s.name: (s.labels, s.value) for family in text_string_to_metric_families(path.read_text())
            for s in family.samples}


def test_ansible_pull_provisions_the_device_itself(tmp_path, service):
    url = make_source_repo(tmp_path / "source")
    device = tmp_path / "device"
    vars_file = tmp_path / "pull-vars.yml"
    vars_file.write_text(yaml.safe_dump({
        "mtls_api_url": service.api_url,
        "mtls_api_ca": str(service.ca_path),
        "mtls_server_url": service.gate_url,
        "mtls_server_ca": str(service.ca_path),
        "mtls_dir": str(device / ".mtls"),
        "mtls_agent_restart": "none",
        "mtls_install_prerequisites": False,
        "mtls_report_dir": str(tmp_path / "reports"),
    }))
    checkout = tmp_path / "ansible_collections" / "autonomy_edge" / "fleet_mtls"  # the checkout is the collection
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", PATH=str(BIN) + os.pathsep + os.environ.get("PATH", ""))
    env.pop("ANSIBLE_CONFIG", None)
    cmd = [
        str(BIN / "ansible-pull"), "-U", url, "-C", "main", "-d", str(checkout), "-i", "localhost,",
        "-e", f"@{vars_file}", "-e", f"ansible_python_interpreter={sys.executable}",
        "playbooks/provision.yml",
    ]

    first = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280, check=False)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-6000:]
    assert "localhost" in output and "fleet-mtls report provision-report: 1 host(s)" in output, output[-4000:]
    cert, key = device / ".mtls" / "client.crt", device / ".mtls" / "client.key"
    assert key.stat().st_mode & 0o777 == 0o600
    status, body = service.whoami(cert, key)
    assert status == 200 and body["id"] in service.registrations()
    assert (checkout / "ansible.cfg").exists()  # the playbook ran from the pulled checkout
    rows = yaml.safe_load((tmp_path / "reports" / "provision-report.json").read_text())["hosts"]
    assert [(r["host"], r["action"], r["verify"], r["verify_protocol"]) for r in rows] == [
        ("localhost", "created", "ok", "websocket")]
    # The agent's environment names the device's CA file (mtls_server_ca), and with it the
    # stock agent connects.
    agent_env = (device / ".mtls" / "agent.env").read_text()
    assert f"SSL_CERT_FILE={service.ca_path}\n" in agent_env
    assert service.run_stock_agent(device, {"SSL_CERT_FILE": str(service.ca_path)})["connected"] is True
    # The expiry metrics leave with the report: the certificate's own dates, by agent ID.
    prom = tmp_path / "reports" / "fleet-mtls.prom"
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    first_metrics = metric_values(prom)
    labels, not_after = first_metrics["fleet_mtls_certificate_not_after_timestamp_seconds"]
    assert labels == {"host": "localhost", "agent_id": body["id"]}
    assert not_after == certificate.not_valid_after_utc.timestamp()
    assert first_metrics["fleet_mtls_certificate_not_before_timestamp_seconds"][1] == \
        certificate.not_valid_before_utc.timestamp()
    assert first_metrics["fleet_mtls_action_info"][0]["action"] == "created"
    rotated_at = first_metrics["fleet_mtls_last_rotation_timestamp_seconds"][1]
    assert rotated_at == first_metrics["fleet_mtls_last_success_timestamp_seconds"][1]

    # The next pull (a cron job, say) finds nothing to do.
    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280, check=False)
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-6000:]
    recap = [line for line in output.splitlines() if line.startswith("localhost ") and "ok=" in line]
    assert recap and "changed=0" in recap[-1], output[-4000:]
    second_metrics = metric_values(prom)
    assert second_metrics["fleet_mtls_action_info"][0]["action"] == "unchanged"
    assert second_metrics["fleet_mtls_last_rotation_timestamp_seconds"][1] == rotated_at  # kept
    assert second_metrics["fleet_mtls_last_run_timestamp_seconds"][1] >= rotated_at
    assert service.gate_accepts(cert, key), "the gate refused the device after the second pull"
