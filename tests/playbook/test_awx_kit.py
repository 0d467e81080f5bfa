"""The AWX / Automation Controller kit (extensions/awx/): the custom credential type rendered by
AWX's own injection code (awx-plugins.interfaces' inject_credential, which AWX runs for every
job), the token reaching the upload only as a controller file, and the execution environment
definition validated and rendered by ansible-builder (no image is built: no registry here)."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml
from awx_plugins.interfaces import _temporary_private_container_api as awx_container
from awx_plugins.interfaces._temporary_private_api import ManagedCredentialType
from awx_plugins.interfaces._temporary_private_credential_api import Credential
from awx_plugins.interfaces._temporary_private_inject_api import inject_credential

from tests.fixtures.ansible_runner import ansible_env
from tests.fixtures.compat import ROLE_VERIFY_WORKS

pytestmark = pytest.mark.integration

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
AWX = REPO / "extensions" / "awx"
# A token as odd as a real secret store may hand out.
TOKEN = 'tok-3n"quote\\back/slash-' + "x" * 20


def credential_type():
    return ManagedCredentialType(
        namespace="fleet_mtls", name="fleet-mtls provisioning API", kind="cloud",
        inputs=yaml.safe_load((AWX / "credential_type" / "inputs.yml").read_text()),
        injectors=yaml.safe_load((AWX / "credential_type" / "injectors.yml").read_text()))


def awx_inject(private_data_dir, monkeypatch, token=TOKEN):
    """What AWX does for a job with the credential: files rendered into <private data dir>/env,
    the extra variables in a file passed as ``-e @file``. Returns (args, env, safe_env). The
    job runs on this machine, not in an execution environment: the private data directory is
    mounted at its own path instead of /runner."""
    (private_data_dir / "env").mkdir(parents=True)
    monkeypatch.setattr(awx_container, "CONTAINER_ROOT", str(private_data_dir))
    env, safe_env, args = {}, {}, []
    inject_credential(credential_type(), Credential({"token": token}), env, safe_env, args, str(private_data_dir),
                      container_root=str(private_data_dir))
    return args, env, safe_env


def test_the_token_is_a_secret_input_and_reaches_the_job_only_as_a_0600_file(tmp_path, monkeypatch):
    inputs = yaml.safe_load((AWX / "credential_type" / "inputs.yml").read_text())
    assert inputs["required"] == ["token"]
    assert [(f["id"], f["secret"]) for f in inputs["fields"]] == [("token", True)]

    args, env, safe_env = awx_inject(tmp_path / "pdd", monkeypatch)
    assert env == safe_env == {}  # nothing in the environment
    assert args[0] == "-e" and args[1].startswith("@")
    extra_vars_text = pathlib.Path(args[1][1:]).read_text()
    assert TOKEN not in extra_vars_text
    extra_vars = yaml.safe_load(extra_vars_text)
    assert list(extra_vars) == ["mtls_api_headers_src"]
    headers = pathlib.Path(extra_vars["mtls_api_headers_src"])
    assert headers.parent == tmp_path / "pdd" / "env"
    assert headers.stat().st_mode & 0o777 == 0o600
    assert json.loads(headers.read_text()) == {"Authorization": "Bearer " + TOKEN}  # valid JSON, any token


def role_takes_headers_src():
    specs = yaml.safe_load((REPO / "roles" / "mtls_identity" / "meta" / "argument_specs.yml").read_text())
    return "mtls_api_headers_src" in specs["argument_specs"]["main"]["options"]


def test_the_token_authenticates_the_upload_and_appears_nowhere(tmp_path, monkeypatch, service_factory):
    if not role_takes_headers_src():
        pytest.skip("the mtls_identity role does not take mtls_api_headers_src yet "
                    "(roles/mtls_identity/meta/argument_specs.yml): the credential's headers file has no reader")
    service = service_factory(token=TOKEN)
    args, _, _ = awx_inject(tmp_path / "pdd", monkeypatch)
    device, reports = tmp_path / "device" / ".mtls", tmp_path / "reports"
    extra = {
        "mtls_api_url": service.api_url, "mtls_api_ca": str(service.ca_path), "mtls_server_url": service.gate_url,
        "mtls_server_ca": str(service.ca_path),
        "mtls_dir": str(device), "mtls_agent_restart": "none", "mtls_key_size": 2048, "mtls_verify": ROLE_VERIFY_WORKS,
        "mtls_install_prerequisites": False, "mtls_report_dir": str(reports),
        # The cloud's JSON upload: 403 without the bearer token.
        "mtls_upload_format": "json", "mtls_upload_endpoint": "/agent/certificate",
        "ansible_python_interpreter": sys.executable,
    }
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "playbooks/provision.yml",
                           "-e", json.dumps(extra), *args], cwd=REPO, capture_output=True, text=True, timeout=280,
                          env=ansible_env(ANSIBLE_DEBUG="1", ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp")),
                          check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    agent_id = json.loads((reports / "provision-report.json").read_text())["hosts"][0]["agent_id"]
    assert agent_id in service.registrations()  # the upload authenticated with the bearer token
    assert TOKEN not in output and json.dumps(TOKEN)[1:-1] not in output
    for root in (reports, device, tmp_path / "ansible-tmp"):
        for path in (p for p in root.rglob("*") if p.is_file()):
            assert TOKEN.encode() not in path.read_bytes(), path


# --------------------------------------------------------------------------- execution environment


def builder(*args):
    return subprocess.run([str(BIN / "ansible-builder"), *args], capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.fixture(scope="module")
def ee_context(tmp_path_factory, collection_tarball):
    """extensions/awx with the collection tarball in collections/, rendered by
    ``ansible-builder create`` (schema validation, then the build context)."""
    root = tmp_path_factory.mktemp("ee")
    shutil.copytree(AWX, root / "awx")
    (root / "awx" / "collections").mkdir(exist_ok=True)
    shutil.copy(collection_tarball, root / "awx" / "collections")
    proc = builder("create", "--file", str(root / "awx" / "execution-environment.yml"), "--context", str(root / "ctx"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root / "ctx"


def test_the_ee_definition_is_valid_and_renders_a_containerfile(ee_context):
    containerfile = (ee_context / "Containerfile").read_text()
    definition = yaml.safe_load((AWX / "execution-environment.yml").read_text())
    assert definition["version"] == 3
    assert 'ARG EE_BASE_IMAGE="quay.io/centos/centos:stream9"' in containerfile
    pins = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core==%s ansible-runner==' % pins["ansible-core"] in containerfile
    ee_pins = dict(line.split("==") for line in (AWX / "requirements.txt").read_text().splitlines()
                   if "==" in line and not line.startswith("#"))
    assert ee_pins == {"cryptography": pins["cryptography"], "requests": pins["requests"]}  # what the tests run
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    assert (ee_context / "_build" / "collections" / ("autonomy_edge-fleet_mtls-%s.tar.gz" % version)).is_file()


def test_the_galaxy_and_introspection_stages_install_the_collection_and_its_needs(ee_context, tmp_path):
    # The galaxy stage: `ansible-galaxy collection install -r requirements.yml` in /build (= _build),
    # with nothing installed yet (as in the base image: no collection of this machine's ~/.ansible).
    build = ee_context / "_build"
    installed = tmp_path / "usr-share-ansible-collections"
    env = dict(ansible_env(), ANSIBLE_GALAXY_DISABLE_GPG_VERIFY="1", ANSIBLE_COLLECTIONS_PATH=str(installed),
               ANSIBLE_HOME=str(tmp_path / "ansible-home"))
    proc = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "-r", "requirements.yml",
                           "--collections-path", str(installed)], cwd=build, capture_output=True, text=True,
                          timeout=120, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (installed / "ansible_collections" / "autonomy_edge" / "fleet_mtls" / "MANIFEST.json").is_file()
    # The builder stage: ansible-builder's introspect.py merges the collection's
    # meta/execution-environment.yml with the environment's own requirements.
    out = tmp_path / "src"
    proc = subprocess.run([sys.executable, str(build / "scripts" / "introspect.py"), "introspect", str(installed),
                           "--user-pip", str(build / "requirements.txt"), "--user-bindep", str(build / "bindep.txt"),
                           "--write-pip", str(out / "requirements.txt"), "--write-bindep", str(out / "bindep.txt")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pip = (out / "requirements.txt").read_text().splitlines()
    for line in ("cryptography>=3.3.2  # from collection autonomy_edge.fleet_mtls",
                 "requests>=2.25.1  # from collection autonomy_edge.fleet_mtls",
                 "cryptography==48.0.0  # from collection user", "requests==2.34.2  # from collection user"):
        assert line in pip, pip
    bindep = (out / "bindep.txt").read_text().splitlines()
    assert "openssh-clients [platform:rpm]  # from collection autonomy_edge.fleet_mtls" in bindep, bindep


def test_the_schema_refuses_a_wrong_definition(tmp_path):
    broken = yaml.safe_load((AWX / "execution-environment.yml").read_text())
    broken["dependencies"]["pythn"] = broken["dependencies"].pop("python")
    (tmp_path / "awx").mkdir()
    for name in ("requirements.txt", "bindep.txt", "requirements.yml"):
        shutil.copy(AWX / name, tmp_path / "awx" / name)
    (tmp_path / "awx" / "execution-environment.yml").write_text(yaml.safe_dump(broken))
    proc = builder("create", "--file", str(tmp_path / "awx" / "execution-environment.yml"),
                   "--context", str(tmp_path / "ctx"))
    assert proc.returncode != 0 and "pythn" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert not (tmp_path / "ctx" / "Containerfile").exists()
