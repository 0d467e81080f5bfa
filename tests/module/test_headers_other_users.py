"""headers_file read by another user's process: a clear error naming the file, never its
content (tests/unit/test_headers.py tests the reader in this process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SECRET = "s3cr3t-TOKEN-0123456789abcdef"


@pytest.mark.skipif(os.geteuid() != 0, reason="reads the file as another user (needs root)")
def test_unreadable_file_says_permission_denied(tmp_path):
    """A user who may not read the file (the become_user the operator forgot) gets a clear
    error naming the file, not its content."""
    os.chmod(tmp_path, 0o755)
    path = tmp_path / "headers.json"
    path.write_text(json.dumps({"Authorization": "Bearer " + SECRET}))
    os.chmod(path, 0o600)
    script = (
        "import sys\n"
        f"sys.path.insert(0, {os.environ['FLEET_MTLS_TEST_COLLECTIONS']!r})\n"
        "from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.headers import read_headers_file\n"
        "from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError\n"
        "try:\n"
        f"    read_headers_file({str(path)!r})\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], user=65534, group=65534, cwd="/",
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "cannot open headers_file %s: Permission denied" % path
