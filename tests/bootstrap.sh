#!/usr/bin/env bash
# Prepare a Debian 12 machine to run every fleet-mtls test (run as root).
#
# Idempotent: every step checks first and skips what is already there, so a second run takes
# a few seconds. See --help for the options.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: sudo tests/bootstrap.sh [--images-only | --venv-only | --no-images] [-h|--help]

Prepares this Debian 12 machine for the fleet-mtls tests. Each step is skipped when its result
is already there:
  1. apt: podman runc catatonit debootstrap python3-venv ca-certificates openssl curl jq git
     shellcheck faketime nginx-light openssh-server python3-cryptography python3-requests sudo
     (nginx-light: the reference service's gate; openssh-server and the two libraries for
     bench/fleet.py --connection ssh and tests/consumer: their own sshd on 127.0.0.1, never the
     system's; devices use Debian's own libraries; sudo: the playbooks' become on those devices)
     (apt-get update + install only when one of them is missing)
  2. podman drop-in /etc/containers/containers.conf.d/fleet-mtls.conf
     (runtime runc, explicit low ulimits: what works on these machines)
  3. images localhost/debian-py:{bullseye,bookworm,trixie}, built with debootstrap
     (minbase + python3 + sudo) and `podman import`; rebuilt only when missing
  4. the virtualenv .venv (Debian's /usr/bin/python3) with requirements-dev.txt; pip runs
     only when requirements*.txt changed since the last install (stamp inside .venv)
  5. the Ansible collections containers.podman and community.crypto, taken from the PyPI
     `ansible` wheel (cached) and put into the venv's site-packages

Options:
  --images-only   run steps 1-3 only
  --venv-only     run steps 4-5 only (no root needed if .venv is writable)
  --no-images     skip step 3 (same as FLEET_MTLS_SKIP_IMAGES=1)
  -h, --help      this text

Environment:
  FLEET_MTLS_CACHE_DIR    cache for downloads and image builds (default /var/cache/fleet-mtls)
  FLEET_MTLS_RELEASES     Debian releases to build images for (default "bullseye bookworm trixie")
  FLEET_MTLS_MIRROR       Debian mirror for debootstrap (default http://deb.debian.org/debian)
  FLEET_MTLS_IMAGE_JOBS   images built at once (default 3: on 2 cores parallel is faster)
  FLEET_MTLS_VENV         the virtualenv to create/update (default <repo>/.venv)
  FLEET_MTLS_SKIP_IMAGES  1 = skip step 3
  FLEET_MTLS_FORCE_IMAGES 1 = rebuild the images even when they exist
EOF
}

log() { printf '[bootstrap] %s\n' "$*"; }
skip() { printf '[bootstrap] skip: %s\n' "$*"; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${FLEET_MTLS_CACHE_DIR:-/var/cache/fleet-mtls}"
RELEASES="${FLEET_MTLS_RELEASES:-bullseye bookworm trixie}"
MIRROR="${FLEET_MTLS_MIRROR:-http://deb.debian.org/debian}"
IMAGE_JOBS="${FLEET_MTLS_IMAGE_JOBS:-3}"
VENV="${FLEET_MTLS_VENV:-$REPO_DIR/.venv}"
APT_PACKAGES=(podman runc catatonit debootstrap python3-venv ca-certificates openssl curl jq git shellcheck faketime
    nginx-light openssh-server python3-cryptography python3-requests sudo)
PODMAN_DROPIN=/etc/containers/containers.conf.d/fleet-mtls.conf
# The PyPI `ansible` package we take two collections from, pinned by hash.
ANSIBLE_WHEEL=ansible-12.3.0-py3-none-any.whl
ANSIBLE_WHEEL_SHA256=cd156f82fa87f7a899212b0efa9f7ca3a24d609212de9f78428a572eb01e5414
COLLECTIONS=(containers/podman community/crypto)

do_system=1 do_images=1 do_venv=1
[[ "${FLEET_MTLS_SKIP_IMAGES:-0}" == 1 ]] && do_images=0
while (($#)); do
    case "$1" in
        --images-only) do_venv=0 ;;
        --venv-only) do_system=0 do_images=0 ;;
        --no-images) do_images=0 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done

now() { date +%s.%N; }
elapsed() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.1f", e - s }'; }

# ---------------------------------------------------------------------------------------------
preflight() {
    if ((do_system || do_images)) && [[ "$(id -u)" != 0 ]]; then
        cat >&2 <<EOF
[bootstrap] This step needs root: it installs apt packages, configures podman and builds
[bootstrap] container images. Run it as root:
[bootstrap]     sudo $REPO_DIR/tests/bootstrap.sh
[bootstrap] (or: sudo $REPO_DIR/tests/run.sh to bootstrap and run all tests)
EOF
        exit 1
    fi
    if [[ -r /etc/os-release ]]; then
        # shellcheck disable=SC1091
        . /etc/os-release
        [[ "${ID:-}" == debian ]] || die "this script supports Debian only (found ${ID:-unknown})"
        [[ "${VERSION_ID:-}" == 12 ]] || log "warning: made for Debian 12, found Debian ${VERSION_ID:-?}"
    fi
}

# ---------------------------------------------------------------------------------------------
install_packages() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        skip "apt packages already installed"
        return
    fi
    log "apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

configure_podman() {
    local want
    want='# Written by fleet-mtls tests/bootstrap.sh.
# crun fails on these machines (hybrid cgroups); root lacks CAP_SYS_RESOURCE, so podman'"'"'s
# default rlimits cannot be set: use runc and explicit low ulimits.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"'
    if [[ -f "$PODMAN_DROPIN" ]] && [[ "$(cat "$PODMAN_DROPIN")" == "$want" ]]; then
        skip "podman drop-in $PODMAN_DROPIN up to date"
        return
    fi
    log "podman: writing $PODMAN_DROPIN"
    mkdir -p "$(dirname "$PODMAN_DROPIN")"
    printf '%s\n' "$want" >"$PODMAN_DROPIN"
}

# Remove a build directory safely: a failed debootstrap can leave proc/sys mounted inside.
remove_build_dir() {
    local dir="$1" m
    [[ -e "$dir" ]] || return 0
    while read -r m; do
        if [[ -n "$m" ]]; then umount -l "$m" 2>/dev/null || true; fi
    done < <(findmnt -rn -o TARGET | grep -F "$dir/" | sort -r)
    rm -rf --one-file-system "$dir"
}

# Build one image; run in a subshell (possibly in parallel). Output goes to a per-release log.
build_image() {
    local release="$1" work rootfs
    work="$CACHE_DIR/build/$release"
    rootfs="$work/rootfs"
    remove_build_dir "$work"
    mkdir -p "$work"
    debootstrap --variant=minbase --include=python3,sudo "$release" "$rootfs" "$MIRROR"
    # No apt caches or package lists in the image (the role runs apt-get update itself), and
    # nothing of the build host's identity.
    chroot "$rootfs" apt-get clean
    find "$rootfs/var/lib/apt/lists" -mindepth 1 -maxdepth 1 ! -name partial ! -name lock -exec rm -rf {} +
    rm -rf "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/*
    : >"$rootfs/etc/resolv.conf"
    : >"$rootfs/etc/hostname"
    local old_id
    old_id="$(podman image inspect --format '{{.Id}}' "localhost/debian-py:$release" 2>/dev/null || true)"
    tar -C "$rootfs" --numeric-owner -c . |
        podman import --change 'CMD ["/bin/bash"]' --message "fleet-mtls debootstrap $release" \
            - "localhost/debian-py:$release"
    # A forced rebuild leaves the previous image untagged: remove it (unless a container uses it).
    if [[ -n "$old_id" ]]; then podman rmi "$old_id" >/dev/null 2>&1 || true; fi
    remove_build_dir "$work"
}

build_images() {
    local todo=() r
    for r in $RELEASES; do
        if [[ "${FLEET_MTLS_FORCE_IMAGES:-0}" != 1 ]] && podman image exists "localhost/debian-py:$r"; then
            skip "image localhost/debian-py:$r exists"
        else
            todo+=("$r")
        fi
    done
    ((${#todo[@]})) || return 0
    mkdir -p "$CACHE_DIR/build"
    log "images: building ${todo[*]} with debootstrap ($IMAGE_JOBS at once; logs in $CACHE_DIR/build/*.log)"
    local -A pids=() starts=()
    local failed=0 running
    for r in "${todo[@]}"; do
        while running=$(jobs -rp | wc -l) && ((running >= IMAGE_JOBS)); do
            wait -n || true
        done
        starts[$r]=$(now)
        (build_image "$r" >"$CACHE_DIR/build/$r.log" 2>&1) &
        pids[$r]=$!
    done
    for r in "${todo[@]}"; do
        if wait "${pids[$r]}"; then
            log "image localhost/debian-py:$r built in $(elapsed "${starts[$r]}") s ($(podman image inspect --format '{{.Size}}' "localhost/debian-py:$r" | awk '{printf "%d MB", $1/1e6}'))"
        else
            failed=1
            log "image localhost/debian-py:$r FAILED; last lines of $CACHE_DIR/build/$r.log:"
            tail -n 20 "$CACHE_DIR/build/$r.log" >&2 || true
        fi
    done
    ((failed == 0)) || die "image build failed"
}

# ---------------------------------------------------------------------------------------------
requirements_hash() {
    {
        /usr/bin/python3 --version 2>&1
        cat "$REPO_DIR"/requirements*.txt
    } | sha256sum | cut -d' ' -f1
}

setup_venv() {
    local stamp="$VENV/.fleet-mtls-requirements.sha256" want
    [[ -x /usr/bin/python3 ]] || die "/usr/bin/python3 is missing (apt-get install python3-venv)"
    if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        skip "virtualenv $VENV exists"
    else
        log "venv: creating $VENV with /usr/bin/python3"
        rm -rf "$VENV"
        /usr/bin/python3 -m venv "$VENV"
    fi
    want="$(requirements_hash)"
    if [[ -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$want" ]]; then
        skip "venv requirements unchanged since last install"
    else
        log "venv: pip install -r requirements-dev.txt"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REPO_DIR/requirements-dev.txt"
        printf '%s\n' "$want" >"$stamp"
    fi
}

install_collections() {
    local site marker wheel c absent=0
    site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    marker="$site/ansible_collections/.fleet-mtls-$ANSIBLE_WHEEL.sha256"
    for c in "${COLLECTIONS[@]}"; do
        [[ -f "$site/ansible_collections/$c/MANIFEST.json" ]] || absent=1
    done
    if ((absent == 0)) && [[ -f "$marker" ]] && [[ "$(cat "$marker")" == "$ANSIBLE_WHEEL_SHA256" ]]; then
        skip "collections ${COLLECTIONS[*]} present in the venv"
        return
    fi
    # A user's own cache when the system one is not writable (e.g. --venv-only as non-root).
    local wheels="$CACHE_DIR/wheels"
    mkdir -p "$wheels" 2>/dev/null || true
    [[ -w "$wheels" ]] || wheels="${XDG_CACHE_HOME:-$HOME/.cache}/fleet-mtls/wheels"
    mkdir -p "$wheels"
    wheel="$wheels/$ANSIBLE_WHEEL"
    if [[ -f "$wheel" ]] && echo "$ANSIBLE_WHEEL_SHA256  $wheel" | sha256sum -c --status; then
        skip "cached $wheel"
    else
        log "collections: downloading $ANSIBLE_WHEEL (54 MB, cached in $wheels)"
        rm -f "$wheel"
        "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
            --only-binary=:all: -d "$wheels" "ansible==12.3.0"
        echo "$ANSIBLE_WHEEL_SHA256  $wheel" | sha256sum -c --status ||
            die "$wheel does not match the pinned sha256"
    fi
    log "collections: extracting ${COLLECTIONS[*]} into $site"
    "$VENV/bin/python" - "$wheel" "$site" "${COLLECTIONS[@]}" <<'PY'
import os
import shutil
import sys
import zipfile

wheel, site, *names = sys.argv[1:]
prefixes = tuple(f"ansible_collections/{n}/" for n in names)
for n in names:
    shutil.rmtree(os.path.join(site, "ansible_collections", n), ignore_errors=True)
with zipfile.ZipFile(wheel) as zf:
    members = [m for m in zf.namelist() if m.startswith(prefixes)]
    if not members:
        sys.exit(f"no {names} in {wheel}")
    zf.extractall(site, members)
print(f"[bootstrap] extracted {len(members)} files")
PY
    printf '%s\n' "$ANSIBLE_WHEEL_SHA256" >"$marker"
}

# ---------------------------------------------------------------------------------------------
main() {
    local t0 t
    t0=$(now)
    preflight
    if ((do_system || do_images)); then
        mkdir -p "$CACHE_DIR"
        # One bootstrap at a time on this machine (several test runs may start together).
        exec 9>"$CACHE_DIR/bootstrap.lock"
        flock 9
    fi
    if ((do_system)); then
        t=$(now); install_packages; log "apt step: $(elapsed "$t") s"
        configure_podman
    fi
    if ((do_images)); then
        t=$(now); build_images; log "images step: $(elapsed "$t") s"
    fi
    if ((do_venv)); then
        t=$(now); setup_venv; install_collections; log "venv step: $(elapsed "$t") s"
    fi
    log "done in $(elapsed "$t0") s"
}

main
