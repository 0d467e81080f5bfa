#!/usr/bin/env bash
# The main job on a local demo fleet, from a fresh clone, with nothing but Python 3:
#
#   ./demo.sh
#
#  1. creates .venv (python3 -m venv), installs requirements-demo.txt into it, and builds and
#     installs the collection into .state/collections (where ansible.cfg looks)
#  2. starts the reference provisioning service on 127.0.0.1: its API, and its gate, a real
#     nginx as in the cloud (installed with apt-get when missing and run as root)
#  3. provisions the five demo devices of inventory/demo with playbooks/provision.yml
#  4. verifies every device through the gate with playbooks/verify.yml
#  5. runs the provisioning again: nothing may change (changed=0 on every host)
#  6. rotates one device (--limit edge-sp-01 -e mtls_rotate=always): same ID, new certificate
#  7. audits the fleet once more and prints the fleet report, then stops the service
#
# No root needed once nginx is there (Debian: nginx-light); nothing leaves 127.0.0.1. The devices' identities live in a scratch
# directory that is removed at the end (KEEP=1 ./demo.sh keeps it); the reports and the identity
# ledger stay in ./fleet-mtls-state (mtls_state_dir). Environment: PYTHON (default python3), KEEP=1, DEMO_HOST (rotated device).
set -euo pipefail

cd "$(dirname "$0")"
REPO=$(pwd)
PYTHON=${PYTHON:-python3}
VENV="$REPO/.venv"
ROTATE_HOST=${DEMO_HOST:-edge-sp-01}
STARTED=$(date +%s)

if [ -t 1 ]; then
    say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    say() { printf '\n== %s\n' "$*"; }
fi
die() { printf '\ndemo.sh: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------ 1. virtualenv
say "1/7 Python environment (.venv)"
if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "python3-venv is missing: installing it with apt-get"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
            "$PYTHON" -m venv "$VENV"
        else
            die "cannot create a virtualenv: install python3-venv (sudo apt-get install python3-venv) and run again"
        fi
    fi
fi
stamp="$VENV/.demo-requirements"
want=$(cat requirements-demo.txt requirements.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-demo.txt
    echo "$want" > "$stamp"
fi
version=$("$VENV/bin/ansible-playbook" --version) || die "ansible-playbook does not run from $VENV"
echo "${version%%$'\n'*}"
export PATH="$VENV/bin:$PATH"
# The collection as an operator gets it: built from this tree, installed where ansible.cfg looks.
FLEET_MTLS_VENV="$VENV" tests/build_collection.sh --install >/dev/null
echo "collection autonomy_edge.fleet_mtls built and installed into .state/collections"

# ------------------------------------------------------------------ 2. reference service
say "2/7 Reference provisioning service"
# Its gate is a real nginx (ssl_verify_client optional_no_ca), as in front of the real cloud.
if [ -z "${PROVISIONING_SERVICE_NGINX:-}" ] && ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "nginx is missing (the reference service's gate runs it): installing nginx-light with apt-get"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light
        echo "(Debian may start its own nginx site on port 80: 'systemctl disable --now nginx' stops it;"
        echo " the demo runs its own nginx as a child of the reference service)"
    else
        die "the reference service's gate needs nginx: install it (sudo apt-get install nginx-light), or set PROVISIONING_SERVICE_NGINX to an nginx binary, and run again"
    fi
fi
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/fleet-mtls-demo.XXXXXX")
SERVICE_PID=""
cleanup() {
    if [ -n "$SERVICE_PID" ] && kill -0 "$SERVICE_PID" 2>/dev/null; then
        kill "$SERVICE_PID" 2>/dev/null || true
        wait "$SERVICE_PID" 2>/dev/null || true
        echo "reference service stopped"
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "kept the demo devices and the service state in $SCRATCH"
    else
        rm -rf "$SCRATCH"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

MTLS_DEMO_TOKEN=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(24))')
PROVISIONING_SERVICE_TOKEN=$MTLS_DEMO_TOKEN "$VENV/bin/python" -m tests.fixtures.provisioning_service \
    --state-dir "$SCRATCH/service" >"$SCRATCH/service.out" 2>"$SCRATCH/service.log" &
SERVICE_PID=$!
for _ in $(seq 1 300); do
    grep -q '^READY ' "$SCRATCH/service.out" 2>/dev/null && break
    kill -0 "$SERVICE_PID" 2>/dev/null || { tail -20 "$SCRATCH/service.log" >&2; die "the service did not start"; }
    sleep 0.1
done
ready=$(grep -m1 '^READY ' "$SCRATCH/service.out") || die "the service did not become ready"
echo "$ready"
MTLS_DEMO_API_URL=$(sed -n 's/.* api=\([^ ]*\).*/\1/p' <<<"$ready")
MTLS_DEMO_GATE_URL=$(sed -n 's/.* gate=\([^ ]*\).*/\1/p' <<<"$ready")
MTLS_DEMO_CA=$(sed -n 's/.* ca=\([^ ]*\).*/\1/p' <<<"$ready")
MTLS_DEMO_ROOT="$SCRATCH/fleet"
export MTLS_DEMO_API_URL MTLS_DEMO_GATE_URL MTLS_DEMO_CA MTLS_DEMO_ROOT MTLS_DEMO_TOKEN

# Quieter Ansible output: no skipped tasks, no colour codes in logs.
export ANSIBLE_DISPLAY_SKIPPED_HOSTS=false ANSIBLE_DEPRECATION_WARNINGS=false
[ -t 1 ] || export ANSIBLE_NOCOLOR=1

play() {  # play LOG PLAYBOOK [ARGS...]: run, show the output, keep it in $SCRATCH/LOG
    local log="$SCRATCH/$1"; shift
    ansible-playbook -i inventory/demo "$@" 2>&1 | tee "$log"
    return "${PIPESTATUS[0]}"
}
fingerprint() {
    "$VENV/bin/python" - "$MTLS_DEMO_ROOT/$1/.mtls/client.crt" <<'EOF'
import sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
cert = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
print(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, cert.fingerprint(hashes.SHA256()).hex())
EOF
}

# ------------------------------------------------------------------ 3. provision
say "3/7 Provision the demo fleet (playbooks/provision.yml)"
play provision-1.log playbooks/provision.yml || die "provisioning failed (see above)"

# ------------------------------------------------------------------ 4. verify
say "4/7 Verify every device through the gate (playbooks/verify.yml)"
play verify-1.log playbooks/verify.yml || die "verification failed (see above)"

# ------------------------------------------------------------------ 5. idempotence
say "5/7 Provision again: nothing may change"
play provision-2.log playbooks/provision.yml || die "the second provisioning run failed"
if grep -E '^\S+ +: ok=[0-9]+ +changed=[1-9]' "$SCRATCH/provision-2.log"; then
    die "the second run changed something (see the recap above)"
fi
echo "re-run: changed=0 on every host"

# ------------------------------------------------------------------ 6. rotation
say "6/7 Rotate one device: $ROTATE_HOST"
before=$(fingerprint "$ROTATE_HOST")
play rotate.log playbooks/provision.yml --limit "$ROTATE_HOST" -e mtls_rotate=always \
    || die "rotation failed (see above)"
after=$(fingerprint "$ROTATE_HOST")
echo "before: ID ${before% *}  certificate sha256 ${before#* }"
echo "after:  ID ${after% *}  certificate sha256 ${after#* }"
[ "${before% *}" = "${after% *}" ] || die "the rotation changed the agent ID"
[ "${before#* }" != "${after#* }" ] || die "the rotation did not change the certificate"

# ------------------------------------------------------------------ 7. report
say "7/7 Audit the fleet and print the report"
play verify-2.log playbooks/verify.yml >/dev/null || { cat "$SCRATCH/verify-2.log"; die "the final audit failed"; }
cat fleet-mtls-state/verify-report.txt
echo
echo "reports: $REPO/fleet-mtls-state/{provision,verify}-report.{json,csv,txt}"
echo "demo finished in $(( $(date +%s) - STARTED ))s"
