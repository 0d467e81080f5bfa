"""An unchanged run loads only what reads and checks the identity: the writing code (the
transaction, the background keygen's, the facts' module), the API client with its HTTP plumbing
(no request is made) and ``cryptography`` (certinfo.py reads the certificate) are not imported,
since a re-run's device CPU is mostly import time (issue 21: a re-run's cost against a ping's).
The module runs in its own Python process as on a device; ``-X importtime``
(PYTHONPROFILEIMPORTTIME) lists what it loaded."""

from __future__ import annotations

from tests.fixtures import module_runner as h

PREFIX = "ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils."
WRITING = ("identity.transaction", "identity.prekey", "api_client", "transport", "identity.facts")


def all_imported(result):
    return {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def imported(result):
    return {name[len(PREFIX):] for name in all_imported(result) if name.startswith(PREFIX)}


def run(svc, tmp_path, **env):
    args = {"api_url": svc.api_url, "ca_path": str(svc.ca_path), "path": str(tmp_path / "home" / ".mtls"),
            "key_size": 2048, "server_url": svc.gate_url, "server_ca": str(svc.ca_path)}
    result = h.run_module(args, workdir=tmp_path / "work", via="direct", env=env)
    assert result.rc == 0, result.stderr[-2000:]
    return result


def test_an_unchanged_run_imports_no_writing_code(svc, tmp_path):
    created = run(svc, tmp_path, PYTHONPROFILEIMPORTTIME="1")
    assert created.result["action"] == "created"
    assert set(WRITING[:4]) <= imported(created)  # what this test looks for is there when it writes
    again = run(svc, tmp_path, PYTHONPROFILEIMPORTTIME="1")
    assert again.result["action"] == "unchanged" and not again.result["changed"]
    loaded = imported(again)
    assert "identity.engine" in loaded and "check" in loaded  # read, decided and verified
    assert not loaded & set(WRITING), sorted(loaded & set(WRITING))
    assert "cryptography" in all_imported(created)
    assert not [name for name in all_imported(again) if name.startswith("cryptography")]
