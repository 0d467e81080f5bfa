"""The agent check on the oldest and newest device Pythons (3.9, 3.13, from pyenv when this
machine has them), standard library only: a bare interpreter, no ansible, no cryptography."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import textwrap

import pytest

from tests.fixtures.check_helpers import (
    OPEN,
    engineio,
    ws_accept,
)
from tests.fixtures.collection import source_root

REPO = pathlib.Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["cryptography"] = None
    sys.path.insert(0, sys.argv[1])
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.check import run_agent_check
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import CheckError
    identity, url, protocol, ca_file = sys.argv[2:6]
    try:
        result = run_agent_check(identity, url, protocol=protocol, trust="ca_file" if ca_file else "system",
                                 ca_file=ca_file or None, timeout=10)
        print(json.dumps({"ok": result}))
    except CheckError as exc:
        print(json.dumps({"failure": exc.kind, "msg": exc.message}))
    """
)


def _python(version):
    root = pathlib.Path(os.environ.get("PYENV_ROOT", pathlib.Path.home() / ".pyenv")) / "versions"
    found = sorted(root.glob(f"{version}.*/bin/python{version}"))
    if not found:
        pytest.skip(f"no Python {version} under pyenv on this machine")
    return str(found[-1])


@pytest.fixture(scope="module")
def bare_ansible(tmp_path_factory):
    """A directory where the collection's module_utils are importable and nothing else is:
    plain namespace packages, no ansible."""
    root = tmp_path_factory.mktemp("bare")
    plugins = root / "ansible_collections" / "autonomy_edge" / "fleet_mtls" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "module_utils").symlink_to(source_root() / "plugins" / "module_utils")
    return str(root)


def _run(python, bare_ansible, identity, url, protocol, ca_file):
    proc = subprocess.run([python, "-I", "-c", SCRIPT, bare_ansible, str(identity), url, protocol, ca_file or ""],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("version", ["3.9", "3.13"])
def test_check_runs_on_device_pythons(pki, edge, bare_ansible, version):
    python = _python(version)
    ws = edge(ws_accept, pki.server)
    sio = edge(engineio(OPEN, None, b'40{"sid":"py"}'), pki.server)
    assert _run(python, bare_ansible, pki.client_dir, ws.url, "websocket", pki.ca)["ok"]["status"] == 101
    assert _run(python, bare_ansible, pki.client_dir, sio.url, "socketio", pki.ca)["ok"]["sid"] == "py"
    untrusted = _run(python, bare_ansible, pki.client_dir, ws.url, "websocket", None)
    assert untrusted["failure"] == "untrusted_server", untrusted
