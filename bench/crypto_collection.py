"""community.crypto for the benchmark's baseline playbook: found where Ansible looks for
collections, or extracted from the pinned PyPI `ansible` wheel (no Galaxy here) into
bench/.collections (git-ignored; the wheel is cached outside the repository)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
LOCAL_COLLECTIONS = BENCH / ".collections"

# community.crypto comes from the PyPI `ansible` wheel (no Galaxy here): pinned release.
ANSIBLE_WHEEL_VERSION = "12.3.0"
ANSIBLE_WHEEL = f"ansible-{ANSIBLE_WHEEL_VERSION}-py3-none-any.whl"
CRYPTO_PREFIX = "ansible_collections/community/crypto/"


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _cache_dir() -> Path:
    env = os.environ.get("FLEET_MTLS_CACHE")
    candidates = [Path(env)] if env else []
    candidates += [Path("/var/cache/fleet-mtls"), Path.home() / ".cache" / "fleet-mtls"]
    for cand in candidates:
        try:
            (cand / "wheels").mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(cand / "wheels", os.W_OK):
            return cand
    raise SystemExit("no writable cache dir for the ansible wheel (set FLEET_MTLS_CACHE)")


def _collection_roots() -> list[Path]:
    roots = [Path(p) for p in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep) if p]
    roots += [Path.home() / ".ansible" / "collections", Path("/usr/share/ansible/collections")]
    roots += [Path(p) for p in sys.path if p]  # ansible scans sys.path for ansible_collections
    return roots


def crypto_version(root: Path) -> str | None:
    manifest = root / CRYPTO_PREFIX / "MANIFEST.json"
    try:
        return json.loads(manifest.read_text())["collection_info"]["version"]
    except (OSError, ValueError, KeyError):
        return None


def ensure_community_crypto() -> tuple[Path, str]:
    """Find community.crypto where ansible looks, or extract it from the `ansible` wheel into
    bench/.collections (wheel cached outside the repo). Returns (collections root, version)."""
    for root in _collection_roots():
        version = crypto_version(root)
        if version:
            return root, version
    version = crypto_version(LOCAL_COLLECTIONS)
    if version:
        return LOCAL_COLLECTIONS, version
    wheel = _cache_dir() / "wheels" / ANSIBLE_WHEEL
    if not wheel.exists():
        log(f"downloading {ANSIBLE_WHEEL} (~54 MB, once) into {wheel.parent}")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", f"ansible=={ANSIBLE_WHEEL_VERSION}", "-d", str(wheel.parent)],
            check=True, stdout=subprocess.DEVNULL,
        )
    log(f"extracting community.crypto from {wheel.name} into {LOCAL_COLLECTIONS}")
    LOCAL_COLLECTIONS.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=LOCAL_COLLECTIONS, prefix=".extract-"))
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.namelist() if m.startswith(CRYPTO_PREFIX)]
            if not members:
                raise SystemExit(f"{wheel} holds no {CRYPTO_PREFIX}")
            for member in members:
                zf.extract(member, staging)
        target = LOCAL_COLLECTIONS / "ansible_collections" / "community"
        target.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target / "crypto", ignore_errors=True)
        os.replace(staging / CRYPTO_PREFIX, target / "crypto")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    version = crypto_version(LOCAL_COLLECTIONS)
    if not version:
        raise SystemExit("community.crypto extraction failed")
    return LOCAL_COLLECTIONS, version
