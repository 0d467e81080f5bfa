"""The oldest ansible-core the collection supports (Debian 12's 2.14), as a cached virtualenv.

``ansible_214()`` creates ``.state/venv-ansible-2.14`` from tests/requirements-ansible-2.14.txt
with Debian's /usr/bin/python3 (pip from PyPI, ~5-20 s once) and reuses it while the
requirements file is unchanged (a sha256 stamp inside the venv). A lock serialises sessions
that build it at the same time."""

from __future__ import annotations

import fcntl
import hashlib
import pathlib
import shutil
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO / "tests" / "requirements-ansible-2.14.txt"
VENV = REPO / ".state" / "venv-ansible-2.14"
DEVICE_PYTHON = "/usr/bin/python3"  # Debian's, with python3-cryptography and python3-requests


def floor_version() -> str:
    """The ansible-core version of the requirements file (e.g. "2.14.18")."""
    for line in REQUIREMENTS.read_text().splitlines():
        if line.startswith("ansible-core=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError("no ansible-core pin in %s" % REQUIREMENTS)


def ansible_214() -> pathlib.Path:
    """The bin/ directory of the ansible-core 2.14 virtualenv, created when needed."""
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = VENV / ".fleet-mtls-requirements.sha256"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / ".venv-ansible-2.14.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (stamp.is_file() and stamp.read_text() == want and (VENV / "bin" / "ansible-playbook").exists()):
            shutil.rmtree(VENV, ignore_errors=True)
            subprocess.run([DEVICE_PYTHON, "-m", "venv", str(VENV)], check=True, capture_output=True)
            pip = subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                                  "-r", str(REQUIREMENTS)], capture_output=True, text=True, timeout=600, check=False)
            if pip.returncode != 0:
                raise RuntimeError("cannot build %s (PyPI reachable?): %s" % (VENV, pip.stderr[-2000:]))
            stamp.write_text(want)
    return VENV / "bin"


# The mtls_identity role on this branch calls mtls_check with its former arguments (config=), so
# its verification fails on every ansible-core; tests that provision through the role turn it
# off. The one-call role checks inside the module: set this to True with it.
ROLE_VERIFY_WORKS = True
