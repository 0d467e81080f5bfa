"""Repository and input hygiene: no key material in git, reports ignored, IDs kept as strings."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
# A PEM private key block with content (a mere mention of the header in code is fine).
PEM_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----\r?\n[A-Za-z0-9+/=:, -]{16,}")


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, check=False)


@pytest.fixture(scope="module")
def tracked_files():
    proc = git("ls-files", "-z")
    if proc.returncode != 0:
        pytest.skip("not a git checkout")
    return [REPO / name for name in proc.stdout.decode().split("\0") if name]


def test_no_tracked_file_holds_a_private_key(tracked_files):
    offenders = []
    for path in tracked_files:
        if path.is_symlink() or not path.is_file():
            continue
        if PEM_PRIVATE_KEY.search(path.read_bytes()):
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_no_key_or_certificate_file_is_tracked(tracked_files):
    suffixes = {".key", ".crt", ".pem", ".csr", ".p12", ".pfx"}
    assert [str(p.relative_to(REPO)) for p in tracked_files if p.suffix in suffixes] == []


def test_the_pattern_finds_a_real_key(tmp_path):
    """The scan above must be able to fail: a freshly written key is caught."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        assert PEM_PRIVATE_KEY.search(b"some text\n" + pem)


@pytest.mark.parametrize(
    "path",
    ["reports/provision-report.json", "reports/verify-report.csv", ".state/demo/edge-sp-01/.mtls/client.key",
     "inventory/example/files/ca.crt", "client.key", "client.crt", "device.pem"],
)
def test_run_artifacts_are_ignored_by_git(path):
    if git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout")
    assert git("check-ignore", "-q", "--no-index", path).returncode == 0, f"{path} is not ignored"


def run_preflight(extra_vars: dict, tmp_path: pathlib.Path) -> subprocess.CompletedProcess:
    """provision.yml on one demo host; the preflight must stop it before any network use
    (the API URL points at a closed loopback port; the CA is a real PEM file, so that reading
    mtls_server_ca_src on the controller is not what stops the run)."""
    from tests.fixtures.servicectl import cert_pem, make_key, make_self_signed

    ca = tmp_path / "ca.crt"
    ca.write_bytes(cert_pem(make_self_signed("Some CA", make_key())))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", MTLS_DEMO_ROOT=str(tmp_path / "fleet"),
               MTLS_DEMO_API_URL="https://127.0.0.1:9", MTLS_DEMO_GATE_URL="https://127.0.0.1:9",
               MTLS_DEMO_CA=str(ca), MTLS_DEMO_TOKEN="")
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "inventory/demo", "playbooks/provision.yml", "--limit", "edge-sp-01",
         "-e", f"mtls_report_dir={tmp_path / 'reports'}", "-e", json.dumps(extra_vars)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False,
    )


def assert_no_product_gaps(what: str, gaps: list[tuple[str, bool]]) -> None:
    """After the assertions that hold: fail (naming each gap) where the product falls
    short of what the role promised before it became one module call."""
    wrong = [gap for gap, present in gaps if present]
    if wrong:
        pytest.fail("product: %s: %s" % (what, "; ".join(wrong)))


@pytest.mark.parametrize(
    "value, shown",
    [(12345678, "int 12345678"), (float("inf"), "float inf"), (1.5e3, "float 1500.0")],
    ids=["yaml-integer", "ini-float-inf", "float"],
)
def test_numeric_agent_ids_are_refused_not_converted(tmp_path, value, shown):
    proc = run_preflight({"mtls_agent_id": value}, tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert shown in output and "quote it" in output, output
    row = json.loads((tmp_path / "reports" / "provision-report.json").read_text())["hosts"][0]
    assert row["action"] == "failed" and "must be a string" in row["error"], row
    assert_no_product_gaps("a numeric mtls_agent_id", [
        ("the identity directory was created", (tmp_path / "fleet" / "edge-sp-01" / ".mtls").exists()),
        ("the message names agent_id, not mtls_agent_id", "mtls_agent_id" not in row["error"]),
        ("reported in phase %r, not as an argument" % row["phase"], row["phase"] not in ("arguments", "preflight")),
    ])


@pytest.mark.parametrize(
    "extra, words, role_words",
    [
        ({"mtls_agent_id": "../etc"}, "'../etc' does not match", "mtls_agent_id"),
        ({"mtls_key_size": 1024}, "must be an integer between 2048", "mtls_key_size"),
        ({"mtls_renew_before_days": 360}, "must be smaller than", "mtls_valid_days"),
        ({"mtls_server_url": "http://127.0.0.1:9"}, "must be an https:// URL", "mtls_server_url"),
        ({"mtls_api_headers_file": "api-headers.json"}, "must be an absolute path, got 'api-headers.json'",
         "mtls_api_headers_file"),
        ({"mtls_api_headers_file": "/etc/fleet/api-headers.json", "mtls_api_headers": {"X-Site": "7"}},
         "set either mtls_api_headers or mtls_api_headers_file, not both", "mtls_api_headers_file"),
    ],
    ids=["id-pattern", "key-size", "renewal-window", "plain-http", "relative-headers-file", "headers-and-file"],
)
def test_preflight_refuses_bad_inputs(tmp_path, extra, words, role_words):
    proc = run_preflight(extra, tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert " ".join(words.split()) in " ".join(output.split()), output
    row = json.loads((tmp_path / "reports" / "provision-report.json").read_text())["hosts"][0]
    assert row["action"] == "failed" and row["phase"], row
    # Through the role, the message names the variable to change (DESIGN: messages name what
    # the reader sets), and nothing is written on the device.
    assert_no_product_gaps("bad input %s" % sorted(extra), [
        ("the identity directory was created", (tmp_path / "fleet" / "edge-sp-01" / ".mtls").exists()),
        ("the message does not name %s: %r" % (role_words, row["error"]), role_words not in row["error"]),
    ])


def test_role_readme_documents_every_variable():
    import yaml

    specs = yaml.safe_load((REPO / "roles/mtls_identity/meta/argument_specs.yml").read_text())["argument_specs"]
    defaults = yaml.safe_load((REPO / "roles/mtls_identity/defaults/main.yml").read_text())
    readme = (REPO / "roles/mtls_identity/README.md").read_text()
    documented = set()
    for entry in specs.values():
        documented |= set(entry["options"])
    assert set(defaults) <= documented, set(defaults) - documented  # every default has a spec
    missing = sorted(name for name in documented if f"`{name}`" not in readme)
    assert missing == []
