"""plugins/module_utils/der.py on the device's side: it and mtls_check load and parse in a
Python process without ``cryptography`` (tests/unit/test_der.py tests the reader itself)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
from cryptography.hazmat.primitives import serialization

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import der
from tests.fixtures.identities import AGENT_ID, build_cert

REPO = pathlib.Path(__file__).resolve().parents[2]
DER_PY = REPO / "plugins" / "module_utils" / "der.py"


CHECK_DER = textwrap.dedent(
    """
    import importlib.util, sys
    sys.modules["cryptography"] = None  # as on a device without the library
    spec = importlib.util.spec_from_file_location("der", sys.argv[1])
    der = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(der)
    data = bytes.fromhex(sys.argv[2])
    tag, start, end = der.read_tlv(data, 0)
    print(tag, end == len(data), len(der.read_children(data, start, end)))
    """
)


def _pyenv_python(version: str) -> str | None:
    root = pathlib.Path(os.environ.get("PYENV_ROOT", pathlib.Path.home() / ".pyenv")) / "versions"
    found = sorted(root.glob(f"{version}.*/bin/python{version}"))
    return str(found[-1]) if found else None


@pytest.mark.parametrize("version", ["3.9", "3.13"])
def test_der_runs_on_device_pythons_without_cryptography(keys, version):
    """The oldest and newest supported device Pythons (from pyenv, when this machine has them)."""
    python = _pyenv_python(version)
    if python is None:
        pytest.skip(f"no Python {version} under pyenv on this machine")
    data = build_cert(keys.get(0)).public_bytes(serialization.Encoding.DER)
    proc = subprocess.run([python, "-I", "-c", CHECK_DER, str(DER_PY), data.hex()], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(der.SEQUENCE), "True", "3"]


def test_mtls_check_imports_and_parses_without_cryptography(keys):
    """mtls_check (check.py, der.py and the rest it imports) must load where cryptography is missing."""
    pem = build_cert(keys.get(0)).public_bytes(serialization.Encoding.PEM).decode()
    script = textwrap.dedent(
        """
        import importlib.util, sys
        sys.modules["cryptography"] = None
        sys.path.insert(0, sys.argv[1])
        spec = importlib.util.spec_from_file_location("mtls_check", sys.argv[2])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import der
        print(der.parse_certificate(sys.stdin.read())["cn"])
        print(sorted(name for name in sys.modules if name.startswith("cryptography")))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, os.environ["FLEET_MTLS_TEST_COLLECTIONS"],
         str(REPO / "plugins" / "modules" / "mtls_check.py")],
        input=pem, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [AGENT_ID, "['cryptography']"]  # only the blocked entry
