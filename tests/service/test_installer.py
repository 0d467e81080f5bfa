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


# The current installer's enrollment (orchestrator-agent install/install.sh, steps 2 to 5): an
# ID from /orchestrators/id, an RSA key, a CSR from its own config (OU=Production, keyUsage
# keyEncipherment + dataEncipherment, EKU clientAuth), POST /orchestrators/enroll with the one
# field csr, then it requires "SSL client : Yes" from openssl x509 -purpose.
ENROLLING_INSTALLER = r"""
set -euo pipefail
MTLS_DIR="$HOME/.mtls"
KEY_PATH="$MTLS_DIR/client.key"; CRT_PATH="$MTLS_DIR/client.crt"
CSR_PATH="$MTLS_DIR/client.csr"; CSR_CONFIG_FILE="$MTLS_DIR/client.conf"
response=$(curl -fsSL --cacert "$CA" "$API/orchestrators/id")
echo "$response" | jq empty
CUSTOM_ID=$(echo "$response" | jq -r '.data.id')
EXPIRES_IN=$(echo "$response" | jq -r '.data.expiresIn')
[[ -n "$CUSTOM_ID" && "$CUSTOM_ID" != "null" && "$EXPIRES_IN" -gt 0 ]]
mkdir -p "$MTLS_DIR"; chmod 700 "$MTLS_DIR"
openssl genrsa -out "$KEY_PATH" "$BITS" 2>/dev/null
chmod 600 "$KEY_PATH"
cat << CONF > "$CSR_CONFIG_FILE"
[req]
distinguished_name = req_distinguished_name
req_extensions = v3_req
prompt = no

[req_distinguished_name]
C=BR
ST=SP
L=SaoPaulo
O=AutonomyLogic
OU=Production
CN=${CUSTOM_ID}

[v3_req]
keyUsage = keyEncipherment, dataEncipherment
extendedKeyUsage = clientAuth
CONF
openssl req -new -key "$KEY_PATH" -out "$CSR_PATH" -config "$CSR_CONFIG_FILE" 2>/dev/null
http_code=$(curl -sS --cacert "$CA" -w "%{http_code}" -o "$MTLS_DIR/enroll_resp.json" \
    -X POST "$API/orchestrators/enroll" -F "csr=@$CSR_PATH")
if [[ "$http_code" -ne 200 ]]; then cat "$MTLS_DIR/enroll_resp.json" >&2; exit 1; fi
[[ "$(jq -r '.statusCode' "$MTLS_DIR/enroll_resp.json")" == "200" ]]
jq -r '.data.certificate' "$MTLS_DIR/enroll_resp.json" > "$CRT_PATH"
chmod 644 "$CRT_PATH"
openssl x509 -in "$CRT_PATH" -noout -purpose 2>/dev/null | grep -q "SSL client : Yes"
[[ "$(jq -r '.data.id' "$MTLS_DIR/enroll_resp.json")" == "$CUSTOM_ID" ]]
rm -f "$CSR_PATH" "$CSR_CONFIG_FILE" "$MTLS_DIR/enroll_resp.json"
echo "$CUSTOM_ID"
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


def run_enrolling_installer(service, home, bits=4096):
    home.mkdir()
    env = dict(os.environ, HOME=str(home), CA=str(service.ca_path), API=service.api_url, BITS=str(bits))
    return subprocess.run(["bash", "-c", ENROLLING_INSTALLER], env=env, capture_output=True, text=True, timeout=120)


def test_current_installer_enrolls_through_orchestrators_id(service, tmp_path):
    """The installer's own CSR (OU=Production, keyUsage keyEncipherment + dataEncipherment,
    only the csr field) is enrolled; the certificate passes its "SSL client : Yes" check and the
    stock agent's connection with it is accepted."""
    home = tmp_path / "device"
    proc = run_enrolling_installer(service, home, bits=2048)  # the installer's 4096: seconds, same answer
    assert proc.returncode == 0, proc.stderr
    agent_id = proc.stdout.strip()
    assert service.reserved_ids() == [agent_id]
    crt = home / ".mtls" / "client.crt"
    assert list(service.registrations()) == [agent_id]
    assert service.registered_pem(agent_id).strip() == crt.read_text().strip()  # jq adds a newline
    assert service.enrollments(agent_id) == [service.registrations()[agent_id]]
    result = service.run_stock_agent(home, {"SSL_CERT_FILE": str(service.ca_path)})
    assert result["connected"] is True, result
    assert b"PRIVATE KEY" not in service.log_path.read_bytes()


def test_current_installer_fails_on_a_lapsed_reservation(service_factory, tmp_path):
    """The ID lapses before the enrollment reaches the registry (a slow device): the installer
    gets the registry's 410 and stops there."""
    service = service_factory(reservation_ttl=1)
    service.inject("/orchestrators/enroll", "hang", seconds=1.5)  # then handled for real
    proc = run_enrolling_installer(service, tmp_path / "device", bits=2048)
    assert proc.returncode != 0
    assert "expired at" in proc.stderr and "unused; reserve a new ID" in proc.stderr, proc.stderr
    assert service.registrations() == {}
