# shellcheck shell=bash
# Start the reference provisioning service on the host for molecule scenarios and export the
# MTLS_TEST_* variables the scenarios read (see tests/playbook/README.md).
#
# Sourced by tests/run.sh for every scenario. By hand, from the repository root:
#     source tests/molecule-env.sh && mtls_test_service_start
#     (cd roles/mtls_identity && molecule converge -s default)
#     mtls_test_service_stop
#
# The service listens on 127.0.0.1 only (random ports); containers use `network: host` to
# reach it.

_MTLS_TEST_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# mtls_test_service_start [STATE_DIR]
# Starts a service with a fresh state directory (default .state/molecule/manual/service) and a
# random token; exports MTLS_TEST_{API_URL,GATE_URL,CA,ENROLL_CA,TOKEN,STATE_DIR,SERVICE_PID,
# SERVICE_LOG}. Returns non-zero (with the service's log) when it does not come up in 30 s.
mtls_test_service_start() {
    local state="${1:-$_MTLS_TEST_REPO/.state/molecule/manual/service}"
    local python="${FLEET_MTLS_VENV:-$_MTLS_TEST_REPO/.venv}/bin/python"
    local out="$state.ready" log="$state.log" token pid line i
    rm -rf "$state" "$out" "$log"
    mkdir -p "$(dirname "$state")"
    token="$("$python" -c 'import secrets; print(secrets.token_hex(16))')"
    # The token goes through the environment, not the command line (ps shows that).
    (cd "$_MTLS_TEST_REPO" &&
        PROVISIONING_SERVICE_TOKEN="$token" exec "$python" -m tests.fixtures.provisioning_service \
            --state-dir "$state" --host 127.0.0.1 --port 0 --gate-port 0 >"$out" 2>"$log" </dev/null) &
    pid=$!
    for ((i = 0; i < 300; i++)); do
        line="$(grep -m1 '^READY ' "$out" 2>/dev/null || true)"
        [[ -n "$line" ]] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    if [[ -z "$line" ]]; then
        echo "[molecule-env] the provisioning service did not start; its log ($log):" >&2
        tail -n 30 "$log" >&2 || true
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        return 1
    fi
    # READY api=https://127.0.0.1:PORT gate=https://127.0.0.1:GATEPORT ca=DIR/ca.crt
    local word
    for word in $line; do
        case "$word" in
            api=*) export MTLS_TEST_API_URL="${word#api=}" ;;
            gate=*) export MTLS_TEST_GATE_URL="${word#gate=}" ;;
            ca=*) export MTLS_TEST_CA="${word#ca=}" ;;
        esac
    done
    export MTLS_TEST_TOKEN="$token"
    export MTLS_TEST_STATE_DIR="$state"
    export MTLS_TEST_ENROLL_CA="$state/enroll-ca.crt"
    export MTLS_TEST_SERVICE_PID="$pid"
    export MTLS_TEST_SERVICE_LOG="$log"
    echo "[molecule-env] service up: api=$MTLS_TEST_API_URL gate=$MTLS_TEST_GATE_URL state=$state"
}

# mtls_test_service_stop: stop the service started above (by its pid) and unset the variables.
mtls_test_service_stop() {
    if [[ -n "${MTLS_TEST_SERVICE_PID:-}" ]]; then
        kill "$MTLS_TEST_SERVICE_PID" 2>/dev/null || true
        wait "$MTLS_TEST_SERVICE_PID" 2>/dev/null || true
    fi
    unset MTLS_TEST_API_URL MTLS_TEST_GATE_URL MTLS_TEST_CA MTLS_TEST_ENROLL_CA MTLS_TEST_TOKEN \
        MTLS_TEST_STATE_DIR MTLS_TEST_SERVICE_PID MTLS_TEST_SERVICE_LOG
}
