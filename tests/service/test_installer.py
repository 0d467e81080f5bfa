"""The upstream installer's own steps, unchanged, with real curl, openssl and jq."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("curl", "openssl", "jq")),
    reason="needs curl, openssl and jq",
)

# The installer's sequence; only the base URLs and the CA to trust are parameters.
INSTALLER = r"""
set -euo pipefail
cd "$WORKDIR"
ID=$(curl -fsSL --cacert "$CA" "$API/generate-orchestrator-id" | jq -r .data.id)
openssl req -x509 -newkey rsa:$BITS -nodes -keyout client.key -out client.crt -days 365 \
    -subj "/C=BR/ST=SP/L=SaoPaulo/O=AutonomyLogic/OU=Development/CN=$ID" 2>/dev/null
chmod 600 client.key
curl -fsSL --cacert "$CA" -F certificate=@client.crt -F id="$ID" \
    "$API/upload-orchestrator-certificate" > upload.json
jq -e '.statusCode == 200' upload.json > /dev/null
curl -fsSL --cacert "$CA" --cert client.crt --key client.key "$GATE/whoami" | jq -r .id > whoami.txt
echo "$ID"
"""


def run_installer(service, workdir, bits=4096, openssl_conf=None):
    workdir.mkdir()
    env = dict(
        os.environ,
        WORKDIR=str(workdir),
        CA=str(service.ca_path),
        API=service.api_url,
        GATE=service.gate_url,
        BITS=str(bits),
    )
    if openssl_conf is not None:
        env["OPENSSL_CONF"] = str(openssl_conf)
    proc = subprocess.run(["bash", "-c", INSTALLER], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_upstream_installer_steps(service, tmp_path):
    """RSA-4096 with the distribution's openssl.cnf (Debian adds v3_ca: CA:TRUE)."""
    agent_id = run_installer(service, tmp_path / "device")
    assert (tmp_path / "device" / "whoami.txt").read_text().strip() == agent_id
    upload = (tmp_path / "device" / "upload.json").read_text()
    assert agent_id in upload
    assert list(service.registrations()) == [agent_id]
    assert b"PRIVATE KEY" not in service.log_path.read_bytes()


def test_upstream_installer_certificate_without_extensions(service, tmp_path):
    """An openssl.cnf without x509_extensions gives a v1 certificate with no extensions at
    all; the registry and the gate must accept it."""
    conf = tmp_path / "openssl.cnf"
    conf.write_text("[req]\ndistinguished_name = dn\n[dn]\n")
    agent_id = run_installer(service, tmp_path / "device", bits=2048, openssl_conf=conf)
    crt = (tmp_path / "device" / "client.crt").read_text()
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-text"], input=crt, capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    assert "X509v3" not in text and "Version: 1" in text
    assert (tmp_path / "device" / "whoami.txt").read_text().strip() == agent_id


def test_curl_sees_the_gate_refuse_an_impostor(service, tmp_path):
    """TLS accepts any certificate (as the real cloud's nginx does); the gate answers 403."""
    agent_id = run_installer(service, tmp_path / "device", bits=2048)
    impostor = tmp_path / "impostor"
    impostor.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key",
         "-out", "client.crt", "-days", "365", "-subj", f"/CN={agent_id}"],
        cwd=impostor, capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    proc = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", "--cacert", str(service.ca_path), "--cert", "client.crt",
         "--key", "client.key", f"{service.gate_url}/whoami"],
        cwd=impostor, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    body, status = proc.stdout.rsplit("\n", 1)
    assert status == "403" and agent_id in body and '"id"' not in body
