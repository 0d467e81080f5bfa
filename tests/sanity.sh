#!/usr/bin/env bash
# ansible-test sanity on the collection as it ships: the tarball of tests/build_collection.sh,
# installed into .state/sanity/ansible_collections/autonomy_edge/fleet_mtls, then every sanity
# test of ansible-core's ansible-test (validate-modules, pylint, pep8, compile and import on
# Python 3.9-3.13, shebang, ansible-doc, action-plugin-docs, yamllint, changelog, ...) with
# --venv: each test in a virtualenv of ansible-test's own pinned requirements from PyPI.
#
#   tests/sanity.sh [ANSIBLE-TEST SANITY OPTIONS...]     e.g. tests/sanity.sh --test pylint
#
# Offline once warmed up: the virtualenvs live in .state/sanity-home (ansible-test's HOME) and
# the staged collection's tests/output/.tmp/delegation is kept across runs. ansible-test
# bootstraps pip in each new virtualenv with a get-pip script it downloads from
# ci-files.testing.ansible.com, which these machines cannot reach: its cache slot holds
# tests/tools/get_pip_offline.py and the pip wheel from PyPI instead. Python 3.9-3.13 are found
# as /usr/bin/python3.X or in pyenv (~/.pyenv/versions/3.X.*); a missing one is skipped with a
# warning by ansible-test. tests/sanity/config.yml and tests/sanity/ignore-*.txt go into the
# stage's tests/ (the repository's tests/ is not part of the collection).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FLEET_MTLS_VENV:-$REPO_DIR/.venv}"
STATE="$REPO_DIR/.state"
SANITY="$STATE/sanity"
SANITY_HOME="$STATE/sanity-home"
DEST="$SANITY/ansible_collections/autonomy_edge/fleet_mtls"
PYTHON_DIR="$SANITY/pythons"
log() { printf '[sanity] %s\n' "$*" >&2; }

# Python 3.9-3.13 on PATH as python3.X (pyenv's shims only answer for the selected versions).
mkdir -p "$PYTHON_DIR"
for minor in 9 10 11 12 13; do
    found=""
    for candidate in "/usr/bin/python3.$minor" "$HOME"/.pyenv/versions/3."$minor".*/bin/python3."$minor"; do
        [[ -x "$candidate" ]] && { found="$candidate"; break; }
    done
    if [[ -n "$found" ]]; then ln -sfn "$found" "$PYTHON_DIR/python3.$minor"; else rm -f "$PYTHON_DIR/python3.$minor"; fi
done

# ansible-test's pip bootstrap, served from its cache slot (see above).
PIP_VERSION="$("$VENV/bin/python" - <<'PY'
import re
import ansible_test._internal.python_requirements as requirements
print(re.search(r"pip='([0-9.]+)'", open(requirements.__file__).read()).group(1))
PY
)"
CACHE="$SANITY_HOME/.ansible/test/cache"
mkdir -p "$CACHE"
cp "$REPO_DIR/tests/tools/get_pip_offline.py" "$CACHE/get_pip_${PIP_VERSION//./_}.py"
if [[ ! -f "$CACHE/pip-$PIP_VERSION-py3-none-any.whl" ]]; then
    log "downloading pip $PIP_VERSION from PyPI for ansible-test's virtualenvs"
    "$VENV/bin/pip" download --quiet --no-deps --dest "$CACHE" "pip==$PIP_VERSION"
fi

# The collection as it ships, installed from its tarball; the delegation virtualenv kept.
TARBALL="$("$REPO_DIR/tests/build_collection.sh" "$SANITY/build" 2>/dev/null | tail -n 1)"
KEEP="$SANITY/delegation.keep"
rm -rf "$KEEP"
[[ -d "$DEST/tests/output/.tmp/delegation" ]] && mv "$DEST/tests/output/.tmp/delegation" "$KEEP"
rm -rf "$DEST"
ANSIBLE_HOME="$SANITY_HOME/.ansible" "$VENV/bin/ansible-galaxy" collection install --offline --force \
    -p "$SANITY" "$TARBALL" >/dev/null
mkdir -p "$DEST/tests/sanity" "$DEST/tests/output/.tmp"
cp "$REPO_DIR/tests/sanity/config.yml" "$DEST/tests/config.yml"
cp "$REPO_DIR"/tests/sanity/ignore-*.txt "$DEST/tests/sanity/" 2>/dev/null || true
[[ -d "$KEEP" ]] && mv "$KEEP" "$DEST/tests/output/.tmp/delegation"
# ansible-test lists the files through git: the stage lies in this repository's ignored .state/,
# so it gets a repository of its own (tests/output ignored, as ansible-test expects).
(
    cd "$DEST"
    printf '/tests/output/\n' >.gitignore
    git init -q && git add -A
)

log "ansible-test sanity on $(basename "$TARBALL") (Python: $(cd "$PYTHON_DIR" && echo python3.*))"
cd "$DEST"
PATH="$PYTHON_DIR:$VENV/bin:$PATH" HOME="$SANITY_HOME" "$VENV/bin/ansible-test" sanity --venv --color no "$@"
