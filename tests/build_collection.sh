#!/usr/bin/env bash
# Build the collection autonomy_edge.fleet_mtls: this repository's root is the collection (galaxy.yml,
# plugins/, roles/, playbooks/, meta/, docs/; galaxy.yml's build_ignore leaves out the rest), so the
# build is one `ansible-galaxy collection build` of it. Prints the tarball's path as the last line
# of stdout (ansible-galaxy's own output goes to stderr).
#
#   tests/build_collection.sh [--install | --install=DIR] [OUTDIR]
#
#   OUTDIR      where the tarball goes (default .state/collection)
#   --install   also install it into .state/collections (where the repository's ansible.cfg
#               looks), or into DIR, replacing what is there
# FLEET_MTLS_SOURCE builds another tree laid out like this one (a mutant of tests/faults/mutate.py).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SOURCE="${FLEET_MTLS_SOURCE:-$REPO_DIR}"
VENV="${FLEET_MTLS_VENV:-$REPO_DIR/.venv}"
GALAXY="$VENV/bin/ansible-galaxy"
[[ -x "$GALAXY" ]] || GALAXY="$(command -v ansible-galaxy || true)"
if [[ -z "$GALAXY" ]]; then
    echo "build_collection.sh: no ansible-galaxy: run tests/bootstrap.sh (it creates $VENV), or" \
        "install ansible-core (pip install -r requirements.txt)" >&2
    exit 1
fi

INSTALL=""
while (($#)); do
    case "$1" in
        --install) INSTALL="$REPO_DIR/.state/collections" ;;
        --install=*) INSTALL="${1#--install=}" ;;
        -h | --help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) break ;;
    esac
    shift
done
OUTDIR="${1:-$REPO_DIR/.state/collection}"
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"

"$GALAXY" collection build --force --output-path "$OUTDIR" "$SOURCE" >&2
VERSION="$(sed -n 's/^version: *//p' "$SOURCE/galaxy.yml")"
TARBALL="$OUTDIR/autonomy_edge-fleet_mtls-$VERSION.tar.gz"
[[ -f "$TARBALL" ]] || { echo "build_collection.sh: no $TARBALL after the build" >&2; exit 1; }
if [[ -n "$INSTALL" ]]; then
    mkdir -p "$INSTALL"
    ANSIBLE_COLLECTIONS_PATH="$INSTALL" "$GALAXY" collection install --offline --force --no-deps \
        -p "$INSTALL" "$TARBALL" >&2
fi
echo "$TARBALL"
