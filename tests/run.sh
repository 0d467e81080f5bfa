#!/usr/bin/env bash
# Run every fleet-mtls test: the README's test command (as root on Debian 12).
#
#   sudo tests/run.sh
#
# Stages: bootstrap -> lint (ansible-lint, yamllint, ruff, shellcheck, changelog fragments, the
# generated option and role docs, ansible-test sanity of the built collection) -> pytest ->
# molecule (every scenario under roles/mtls_identity/molecule/). A failing bootstrap stops the
# run (nothing else can work without it); any other failing stage is recorded and the remaining
# stages still run, so one log shows everything. The exit code is non-zero when anything
# failed. The last two lines are the pytest summary line and `molecule: N passed, N failed`.
# Functions here are called through `stage NAME FUNC`, which shellcheck cannot follow.
# shellcheck disable=SC2317
set -uo pipefail

usage() {
    cat <<'EOF'
Usage: sudo tests/run.sh [--skip-bootstrap] [--only STAGE[,STAGE...]] [-s SCENARIO]... [-h]

Stages, in order: bootstrap lint pytest molecule.
  --skip-bootstrap   do not run tests/bootstrap.sh (the machine is already prepared)
  --only STAGES      run only these stages (comma-separated), e.g. --only lint,pytest
  -s SCENARIO        run only this molecule scenario (repeatable); default: all of them
  -h, --help         this text

Environment:
  FLEET_MTLS_MOLECULE_TIMEOUT  seconds allowed per molecule scenario (default 900)
  FLEET_MTLS_PYTEST_ARGS       extra arguments for pytest (e.g. "-x -k unit")
  FLEET_MTLS_PYTEST_WORKERS    pytest-xdist workers (default 2, one per core; 0: one process)
  Any FLEET_MTLS_* variable of tests/bootstrap.sh (see tests/bootstrap.sh --help).

Each molecule scenario gets a fresh reference provisioning service on 127.0.0.1 (see
tests/playbook/README.md). Logs: .state/run/ (pytest) and .state/molecule/<scenario>/.
EOF
}

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_DIR" || exit 1
VENV="${FLEET_MTLS_VENV:-$REPO_DIR/.venv}"
ROLE_DIR="$REPO_DIR/roles/mtls_identity"
STATE="$REPO_DIR/.state"
MOLECULE_TIMEOUT="${FLEET_MTLS_MOLECULE_TIMEOUT:-900}"
STAGES="bootstrap,lint,pytest,molecule"
SKIP_BOOTSTRAP=0
SCENARIOS_WANTED=()

while (($#)); do
    case "$1" in
        --skip-bootstrap) SKIP_BOOTSTRAP=1 ;;
        --only) STAGES="${2:?--only needs a value}"; shift ;;
        -s) SCENARIOS_WANTED+=("${2:?-s needs a scenario name}"); shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; echo "run.sh: unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done
want() { [[ ",$STAGES," == *",$1,"* ]]; }
((SKIP_BOOTSTRAP)) && STAGES="${STAGES//bootstrap/}"

if [[ "$(id -u)" != 0 ]] && { want bootstrap || want molecule; }; then
    cat >&2 <<EOF
run.sh: the bootstrap and molecule stages need root (apt, podman). Run:
    sudo $REPO_DIR/tests/run.sh
(or, without root, only the stages that do not need it once bootstrapped:
    $REPO_DIR/tests/run.sh --only lint,pytest)
EOF
    exit 1
fi

# Clean, uncoloured logs; the venv's tools first (molecule calls ansible-* by name).
export PATH="$VENV/bin:$PATH"
export HOME="${HOME:-/root}"
export NO_COLOR=1 ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1 PY_COLORS=0 MOLECULE_NO_COLOR=1 TERM=dumb
mkdir -p "$STATE/run"
rm -f "$STATE/run/pytest.log"

now() { date +%s.%N; }
secs() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.1f", e - s }'; }

RESULTS=()   # "name|status|seconds"
FAILED=0
# stage NAME COMMAND...: run, time and record one stage (or sub-stage).
stage() {
    local name="$1" t0 rc
    shift
    printf '\n==> %s\n' "$name"
    t0=$(now)
    "$@"
    rc=$?
    local dt
    dt=$(secs "$t0" "$(now)")
    if ((rc == 0)); then
        RESULTS+=("$name|ok|$dt")
        printf '<== %s: ok (%s s)\n' "$name" "$dt"
    else
        RESULTS+=("$name|FAILED (exit $rc)|$dt")
        FAILED=1
        printf '<== %s: FAILED with exit code %s (%s s)\n' "$name" "$rc" "$dt"
    fi
    return "$rc"
}
skipped() {
    RESULTS+=("$1|skipped|0.0")
    printf '\n==> %s: skipped (%s)\n' "$1" "$2"
}

# ---------------------------------------------------------------------------------------------
has_yaml() {
    local d
    for d in "$@"; do
        [[ -d "$d" ]] && [[ -n "$(find "$d" \( -name '*.yml' -o -name '*.yaml' \) -print -quit)" ]] && return 0
    done
    return 1
}

run_ansible_lint() {
    local targets=() d
    for d in roles playbooks; do has_yaml "$d" && targets+=("$d"); done
    # Its own ANSIBLE_HOME: a copy of this collection installed in ~/.ansible/collections (an
    # older build, say) would come first on ansible-lint's collection path and hide this tree.
    ANSIBLE_HOME="$STATE/ansible-lint-home" ansible-lint --nocolor "${targets[@]}"
}

run_pytest() {
    local log="$STATE/run/pytest.log" rc
    # Both cores: one worker per core, each test file whole on one worker (a file's tests share
    # their module fixtures); FLEET_MTLS_PYTEST_WORKERS=0 runs in one process.
    local workers=(-n "${FLEET_MTLS_PYTEST_WORKERS:-2}" --dist loadfile)
    [[ "${FLEET_MTLS_PYTEST_WORKERS:-2}" == 0 ]] && workers=()
    # shellcheck disable=SC2086
    "$VENV/bin/pytest" "${workers[@]}" ${FLEET_MTLS_PYTEST_ARGS:-} 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    # Exit 5 = no test collected: there are test files, so that is a failure too.
    return "$rc"
}

run_shellcheck() {
    local scripts=()
    mapfile -t scripts < <(git ls-files '*.sh' .ci/run 2>/dev/null; [[ -e .git ]] || find . \( -path ./.venv -o -path ./.state \) -prune -o -name '*.sh' -print)
    ((${#scripts[@]})) || return 0
    shellcheck -x "${scripts[@]}"
}

PYTEST_SUMMARY=""
pytest_summary() {
    local log="$STATE/run/pytest.log"
    [[ -f "$log" ]] || return 0
    PYTEST_SUMMARY="$(grep -E '^=+ .*( in [0-9.]+s.*) =+$' "$log" | tail -n 1)"
}

# ---------------------------------------------------------------------------------------------
MOLECULE_PASSED=0
MOLECULE_FAILED=0
MOLECULE_TIMES=()

list_scenarios() {
    local f name all=()
    for f in "$ROLE_DIR"/molecule/*/molecule.yml; do
        [[ -f "$f" ]] || continue
        name="$(basename "$(dirname "$f")")"
        all+=("$name")
    done
    # `default` first, then the others alphabetically.
    local s
    for s in "${all[@]}"; do [[ "$s" == default ]] && echo "$s"; done
    for s in "${all[@]}"; do [[ "$s" != default ]] && echo "$s"; done
}

run_scenario() {
    local name="$1" dir="$STATE/molecule/$1" rc
    mkdir -p "$dir"
    # shellcheck source=tests/molecule-env.sh
    source "$REPO_DIR/tests/molecule-env.sh"
    mtls_test_service_start "$dir/service" || return 1
    (
        cd "$ROLE_DIR" &&
            timeout --kill-after=30 "$MOLECULE_TIMEOUT" molecule test -s "$name" </dev/null
    ) 2>&1 | tee "$dir/molecule.log"
    rc=${PIPESTATUS[0]}
    if ((rc == 124 || rc == 137)); then
        echo "[run] scenario $name timed out after $MOLECULE_TIMEOUT s: destroying its containers"
        (cd "$ROLE_DIR" && molecule destroy -s "$name" </dev/null) >>"$dir/molecule.log" 2>&1 || true
    fi
    echo "[run] service log: $MTLS_TEST_SERVICE_LOG"
    mtls_test_service_stop
    return "$rc"
}

run_molecule_stage() {
    local scenarios=() s t0 rc
    mapfile -t scenarios < <(list_scenarios)
    if ((${#SCENARIOS_WANTED[@]})); then
        for s in "${SCENARIOS_WANTED[@]}"; do
            [[ -f "$ROLE_DIR/molecule/$s/molecule.yml" ]] || {
                echo "run.sh: no molecule scenario '$s' in $ROLE_DIR/molecule" >&2
                MOLECULE_FAILED=$((MOLECULE_FAILED + 1))
                FAILED=1
            }
        done
        scenarios=("${SCENARIOS_WANTED[@]}")
    fi
    if ((${#scenarios[@]} == 0)); then
        skipped molecule "no scenario under roles/mtls_identity/molecule/ yet"
        return 0
    fi
    # One molecule run at a time on this machine: scenarios share container names and
    # ~/.cache/molecule with any other checkout.
    mkdir -p /run/lock
    exec 8>/run/lock/fleet-mtls-molecule.lock
    if ! flock -n 8; then
        echo "[run] another molecule run holds /run/lock/fleet-mtls-molecule.lock: waiting"
        flock 8
    fi
    for s in "${scenarios[@]}"; do
        [[ -f "$ROLE_DIR/molecule/$s/molecule.yml" ]] || continue
        t0=$(now)
        stage "molecule $s" run_scenario "$s"
        rc=$?
        if ((rc == 0)); then
            MOLECULE_PASSED=$((MOLECULE_PASSED + 1))
            MOLECULE_TIMES+=("$s: passed in $(secs "$t0" "$(now)") s")
        else
            MOLECULE_FAILED=$((MOLECULE_FAILED + 1))
            MOLECULE_TIMES+=("$s: FAILED after $(secs "$t0" "$(now)") s")
        fi
    done
    exec 8>&-
}

# ---------------------------------------------------------------------------------------------
T_START=$(now)
echo "fleet-mtls tests: $(date -u '+%Y-%m-%d %H:%M:%S UTC') in $REPO_DIR (stages: ${STAGES//,/ })"

if want bootstrap; then
    if ! stage bootstrap bash "$REPO_DIR/tests/bootstrap.sh"; then
        echo "run.sh: bootstrap failed: nothing else can run" >&2
        exit 1
    fi
fi
[[ -x "$VENV/bin/python" ]] || { echo "run.sh: no virtualenv at $VENV: run tests/bootstrap.sh" >&2; exit 1; }
# The collection built from this tree, installed where ansible.cfg looks (ansible-lint, molecule;
# pytest builds its own per session).
if ! stage collection "$REPO_DIR/tests/build_collection.sh" --install >/dev/null; then
    echo "run.sh: the collection does not build: nothing else can run" >&2
    exit 1
fi

if want lint; then
    if has_yaml roles playbooks; then
        stage "lint ansible-lint" run_ansible_lint
    else
        skipped "lint ansible-lint" "no roles/ or playbooks/ yet"
    fi
    stage "lint yamllint" yamllint --strict .
    stage "lint ruff" ruff check --no-cache --output-format concise .
    stage "lint shellcheck" run_shellcheck
    stage "lint changelog" antsibull-changelog lint
    # Each role README's variable table is generated from its meta/argument_specs.yml.
    stage "lint option docs" python tests/tools/option_docs.py --check
    stage "lint role docs" python tests/tools/role_docs.py --check
    # ansible-test sanity of the collection as it ships (tests/sanity.sh): ~40 s once its
    # virtualenvs exist in .state/sanity-home, ~3 min (and PyPI) the first time.
    stage "lint sanity" "$REPO_DIR/tests/sanity.sh"
fi

if want pytest; then
    if [[ -n "$(find tests -name 'test_*.py' -print -quit)" ]]; then
        stage pytest run_pytest
    else
        skipped pytest "no test files yet"
    fi
fi

if want molecule; then
    run_molecule_stage
fi

# ---------------------------------------------------------------------------------------------
echo
echo "==================== summary ===================="
for r in "${RESULTS[@]}"; do
    IFS='|' read -r name status dt <<<"$r"
    printf '  %-26s %-24s %8s s\n' "$name" "$status" "$dt"
done
printf '  %-26s %-24s %8s s\n' total "" "$(secs "$T_START" "$(now)")"
if ((${#MOLECULE_TIMES[@]})); then
    echo "molecule scenario times:"
    printf '  %s\n' "${MOLECULE_TIMES[@]}"
fi
pytest_summary
[[ -n "$PYTEST_SUMMARY" ]] && echo "$PYTEST_SUMMARY"
echo "molecule: $MOLECULE_PASSED passed, $MOLECULE_FAILED failed"
exit "$FAILED"
