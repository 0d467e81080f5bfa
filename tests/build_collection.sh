#!/usr/bin/env bash
# Build the collection autonomy_edge.fleet_mtls from this tree; print the tarball's path.
#
#   tests/build_collection.sh [OUTDIR]        (default OUTDIR: .state/collection)
#
# Stages a real-file copy (no symlinks: ansible-test refuses symlinked directories) in
# <stage>/ansible_collections/autonomy_edge/fleet_mtls/ - library/ as plugins/modules,
# module_utils/fleet_mtls/ as plugins/module_utils, action_plugins/ as plugins/action, then
# roles/, playbooks/, meta/, extensions/ (the AWX kit), changelogs/, galaxy.yml, README.md,
# LICENSE - and runs
# `ansible-galaxy collection build` there (galaxy.yml's build_ignore leaves out the molecule
# scenarios). The stage is a temporary directory, removed at the end, unless
# FLEET_MTLS_COLLECTION_STAGE names a directory to stage into and keep (for ansible-test).
# The last line of stdout is the tarball's path; ansible-galaxy's own output goes to stderr.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FLEET_MTLS_VENV:-$REPO_DIR/.venv}"
GALAXY="$VENV/bin/ansible-galaxy"
[[ -x "$GALAXY" ]] || GALAXY="$(command -v ansible-galaxy)"
OUTDIR="${1:-$REPO_DIR/.state/collection}"
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"

if [[ -n "${FLEET_MTLS_COLLECTION_STAGE:-}" ]]; then
    STAGE="$FLEET_MTLS_COLLECTION_STAGE"
    rm -rf "$STAGE/ansible_collections/autonomy_edge/fleet_mtls"
else
    STAGE="$(mktemp -d "${TMPDIR:-/tmp}/fleet-mtls-collection.XXXXXX")"
    trap 'rm -rf "$STAGE"' EXIT
fi
DEST="$STAGE/ansible_collections/autonomy_edge/fleet_mtls"
mkdir -p "$DEST/plugins"

# copy SRC DEST: a real-file copy (symlinks followed), without bytecode caches.
copy() {
    cp -RL "$1" "$2"
    find "$2" -name __pycache__ -prune -exec rm -rf {} +
}
cd "$REPO_DIR"
copy library "$DEST/plugins/modules"
copy module_utils/fleet_mtls "$DEST/plugins/module_utils"
copy action_plugins "$DEST/plugins/action"
copy doc_fragments "$DEST/plugins/doc_fragments"
for item in roles playbooks meta extensions changelogs galaxy.yml README.md LICENSE; do
    copy "$item" "$DEST/$item"
done

"$GALAXY" collection build --force --output-path "$OUTDIR" "$DEST" >&2
VERSION="$(sed -n 's/^version: *//p' galaxy.yml)"
TARBALL="$OUTDIR/autonomy_edge-fleet_mtls-$VERSION.tar.gz"
[[ -f "$TARBALL" ]] || { echo "build_collection.sh: no $TARBALL after the build" >&2; exit 1; }
echo "$TARBALL"
