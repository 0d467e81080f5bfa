"""Device-side renewal (playbooks/pull.yml, role mtls_pull): the unit files the role writes are
checked by ``systemd-analyze verify``, the role refuses a schedule or an ansible-core that could
miss a renewal, and real runs of the service in a Debian 12 container booting systemd, with
Debian's own ansible-core 2.14, against the reference service (on the host's 127.0.0.1: network
host):

- collection mode (the default): the commands of playbooks/pull.yml's header for the device
  itself, as written - the tarball installed with ansible-galaxy, the role applied from it - in a
  container without git; ``systemctl start fleet-mtls-pull.service`` then runs
  ``ansible-playbook autonomy_edge.fleet_mtls.provision`` from the collection the role installed;
- git mode: the role installed by ansible-pull from a local git repository of this tree, the
  service running ansible-pull of it."""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import pathlib
import secrets
import shlex
import shutil
import subprocess
import sys
import time

import pytest
import yaml
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.compat import DEVICE_PYTHON, ROLE_VERIFY_WORKS, ansible_214
from tests.fixtures.consumer import header_commands
from tests.fixtures.source_repo import make_source_repo

pytestmark = pytest.mark.integration

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
CONTAINERFILE = REPO / "tests" / "fixtures" / "pull" / "Containerfile"
BASE_IMAGE = "localhost/debian-py:bookworm"
# Passed through every layer (unit quoting, ansible-pull, ansible-playbook) as one literal value.
ODD_VALUE = "100%-$HOME-'quoted'"


def run_pull_role(tmp_path, bin_dir=BIN, **overrides):
    """Apply playbooks/pull.yml to this machine (connection local, the ansible-core of
    ``bin_dir``) with every path under ``tmp_path`` and nothing enabled; returns
    (CompletedProcess, paths)."""
    paths = {"units": tmp_path / "units", "vars": tmp_path / "etc" / "pull.yml",
             "headers": tmp_path / "etc" / "api-headers.json", "metrics": tmp_path / "metrics"}
    headers_src = tmp_path / "headers-src.json"
    headers_src.write_text(json.dumps({"Authorization": "Bearer not-a-real-token"}))
    paths["units"].mkdir(parents=True, exist_ok=True)
    extra = {
        "mtls_pull_mode": "git",
        "mtls_pull_url": "file:///srv/fleet-mtls", "mtls_pull_install_packages": False, "mtls_pull_enable": False,
        "mtls_pull_become": False, "mtls_pull_unit_dir": str(paths["units"]), "mtls_pull_vars_file": str(paths["vars"]),
        "mtls_pull_checkout_dir": str(tmp_path / "var" / "checkout"), "mtls_pull_metrics_dir": str(paths["metrics"]),
        "mtls_pull_ansible_pull": str(bin_dir / "ansible-pull"), "mtls_pull_api_headers_src": str(headers_src),
        "mtls_pull_api_headers_file": str(paths["headers"]),
        "mtls_pull_extra_args": ["--extra-vars", "fleet_mtls_probe=" + ODD_VALUE],
        "mtls_pull_vars": {"mtls_api_url": "https://api.example.invalid"},
        "ansible_python_interpreter": DEVICE_PYTHON,
    }
    extra.update(overrides)
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", PATH=str(bin_dir) + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run([str(bin_dir / "ansible-playbook"), "-i", "localhost,", "-c", "local", "playbooks/pull.yml",
                           "-e", json.dumps(extra)], cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
                          check=False)
    return proc, paths


def unit(path):
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    proc, paths = run_pull_role(tmp_path_factory.mktemp("pull-role"))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return paths


def test_the_units_pass_systemd_analyze_verify(rendered):
    if not shutil.which("systemd-analyze"):
        pytest.skip("no systemd-analyze on this machine")
    units = [str(rendered["units"] / name) for name in ("fleet-mtls-pull.service", "fleet-mtls-pull.timer")]
    proc = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout + proc.stderr == "", proc.stdout + proc.stderr


def test_the_timer_and_the_service(rendered):
    timer = unit(rendered["units"] / "fleet-mtls-pull.timer")
    assert dict(timer["Timer"]) == {"OnCalendar": "daily", "RandomizedDelaySec": "86400", "FixedRandomDelay": "true",
                                    "Persistent": "true", "Unit": "fleet-mtls-pull.service"}
    assert timer["Install"]["WantedBy"] == "timers.target"
    service = unit(rendered["units"] / "fleet-mtls-pull.service")["Service"]
    assert service["Type"] == "oneshot"
    # Every argument quoted for systemd: "%" and "$" doubled, nothing expanded but %H.
    assert service["ExecStart"] == (
        '"%s" --url "file:///srv/fleet-mtls" --checkout "main" --directory "%s" --inventory "%%H," '
        '--extra-vars "@%s" "--extra-vars" "fleet_mtls_probe=100%%%%-$$HOME-\'quoted\'" "playbooks/provision.yml"'
        % (BIN / "ansible-pull", rendered["vars"].parent.parent / "var" / "checkout", rendered["vars"]))
    for path in (rendered["units"] / "fleet-mtls-pull.service", rendered["units"] / "fleet-mtls-pull.timer"):
        assert path.stat().st_mode & 0o777 == 0o644


def test_the_device_variables_name_the_headers_file_and_the_metrics(rendered):
    assert rendered["vars"].stat().st_mode & 0o777 == 0o600
    assert rendered["headers"].stat().st_mode & 0o777 == 0o600
    assert json.loads(rendered["headers"].read_text()) == {"Authorization": "Bearer not-a-real-token"}
    device_vars = yaml.safe_load(rendered["vars"].read_text())
    assert device_vars == {
        "mtls_api_url": "https://api.example.invalid", "mtls_api_headers_file": str(rendered["headers"]),
        "mtls_state_dir": "/var/lib/fleet-mtls/state", "mtls_report_metrics": True,
        "mtls_report_metrics_file": str(rendered["metrics"] / "fleet-mtls.prom")}
    assert "not-a-real-token" not in rendered["vars"].read_text()


@pytest.mark.parametrize("overrides, message", [
    ({"mtls_pull_randomized_delay_sec": 90000},
     "mtls_pull_randomized_delay_sec (90000 s) must be at most one period of mtls_pull_on_calendar (86400 s)"),
    ({"mtls_pull_on_calendar": "weekly", "mtls_pull_randomized_delay_sec": 604800,
      "mtls_pull_vars": {"mtls_api_url": "https://a.invalid", "mtls_renew_before_days": 10}},
     "below the renewal window mtls_renew_before_days (10 days = 864000 s)"),
    ({"mtls_pull_on_calendar": "dayly"}, "mtls_pull_on_calendar 'dayly' is not a repeating systemd calendar"),
    ({"__mtls_pull_ansible_floor": "99.1"}, "older than 99.1, the oldest this collection supports"),
])
def test_the_role_refuses_what_could_miss_a_renewal(tmp_path, overrides, message):
    """With the floor's ansible-core (2.14: no native types in templates) on the controller."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("no systemd-analyze on this machine")
    proc, paths = run_pull_role(tmp_path, ansible_214(), **overrides)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and message in " ".join(output.split()), output[-3000:]
    assert not paths["vars"].exists() and list(paths["units"].iterdir()) == []  # nothing written


# --------------------------------------------------------------------------- the real thing


def podman(*args, timeout=120, check=True):
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("podman %s: rc %d\n%s%s" % (" ".join(args[:3]), proc.returncode, proc.stdout[-3000:],
                                                          proc.stderr[-3000:]))
    return proc


@pytest.fixture(scope="module")
def device_image():
    """localhost/fleet-mtls-pull:bookworm-<hash of the Containerfile>, built when missing (~75 s)."""
    if os.geteuid() != 0 or not shutil.which("podman"):
        pytest.skip("needs root and podman (tests/bootstrap.sh)")
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        pytest.skip("no %s image (tests/bootstrap.sh builds it)" % BASE_IMAGE)
    tag = "localhost/fleet-mtls-pull:bookworm-" + hashlib.sha256(CONTAINERFILE.read_bytes()).hexdigest()[:12]
    if podman("image", "exists", tag, check=False).returncode != 0:
        podman("build", "--network", "host", "-t", tag, "-f", str(CONTAINERFILE), str(CONTAINERFILE.parent),
               timeout=900)
    return tag


def device_settings(service):
    return {
        "mtls_api_url": service.api_url, "mtls_api_ca": "/srv/ca.crt", "mtls_server_url": service.gate_url,
        "mtls_server_ca": "/srv/ca.crt",
        "mtls_verify": ROLE_VERIFY_WORKS, "mtls_key_size": 2048, "mtls_agent_restart": "none",
        # The cloud's JSON upload, which refuses a request without the bearer token.
        "mtls_upload_format": "json", "mtls_upload_endpoint": "/agent/certificate"}


def booted_device(device_image, service, tmp_path, mounts):
    name = "fleet-mtls-pull-test-" + secrets.token_hex(4)
    volumes = ["-v", "%s:/srv/ca.crt:ro" % service.ca_path]
    for source, target in mounts.items():
        volumes += ["-v", "%s:%s:ro" % (source, target)]
    podman("run", "-d", "--name", name, "--hostname", "edge-pull-01", "--systemd=always", "--network", "host",
           *volumes, device_image, "/sbin/init")
    return name


def test_collection_mode_renews_the_device_in_a_booted_systemd_container(device_image, service, collection_tarball,
                                                                          tmp_path):
    tarball = collection_tarball
    work = tmp_path / "work"
    work.mkdir()
    shutil.copyfile(tarball, work / pathlib.Path(tarball).name)
    (work / "api-headers.json").write_text(json.dumps({"Authorization": "Bearer " + service.token}))
    (work / "pull-install.yml").write_text(yaml.safe_dump({
        "mtls_pull_collection_src": pathlib.Path(tarball).name,  # relative: the directory it runs in
        "mtls_pull_api_headers_src": "api-headers.json",
        "mtls_pull_apt_cache_valid_time": 10 * 365 * 86400,  # the image's lists: no network update
        "mtls_pull_extra_args": ["--extra-vars", "fleet_mtls_probe=" + ODD_VALUE],
        "mtls_pull_vars": device_settings(service),
    }))
    name = booted_device(device_image, service, tmp_path, {work: "/srv/work"})
    try:
        wait_for_boot(name)
        podman("exec", name, "rm", "-f", "/usr/bin/git")  # no git in this mode
        (device_block,) = [block for block in header_commands(REPO / "playbooks" / "pull.yml")
                           if any(cmd.startswith("ansible-galaxy") for cmd in block)]
        for command in device_block:  # as written, in the directory holding the tarball
            done = podman("exec", "-w", "/srv/work", name, *shlex.split(command), timeout=300, check=False)
            assert done.returncode == 0, command + "\n" + (done.stdout + done.stderr)[-5000:]
        collection = "/var/lib/fleet-mtls/collections/ansible_collections/autonomy_edge/fleet_mtls"
        assert podman("exec", name, "test", "-f", collection + "/MANIFEST.json", check=False).returncode == 0
        assert podman("exec", name, "sh", "-c", "find / -xdev -name .git | head -1").stdout == ""
        check_device(name, service, "ansible-playbook")
        assert "/var/lib/fleet-mtls/state/identity-ledger.json" in podman(
            "exec", name, "journalctl", "-u", "fleet-mtls-pull.service", "-o", "cat", "--no-pager").stdout
        assert podman("exec", name, "test", "-f", "/var/lib/fleet-mtls/state/identity-ledger.json",
                      check=False).returncode == 0
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


def test_git_mode_renews_the_device_in_a_booted_systemd_container(device_image, service, tmp_path):
    source = make_source_repo(tmp_path / "source")
    assert source.startswith("file://")
    headers = tmp_path / "api-headers.json"
    headers.write_text(json.dumps({"Authorization": "Bearer " + service.token}))
    bootstrap = tmp_path / "bootstrap.yml"
    bootstrap.write_text(yaml.safe_dump({
        "mtls_pull_mode": "git",
        "mtls_pull_url": "file:///srv/fleet-mtls",
        "mtls_pull_api_headers_src": "/srv/api-headers.json",
        "mtls_pull_apt_cache_valid_time": 10 * 365 * 86400,  # the image's lists: no network update
        "mtls_pull_extra_args": ["--extra-vars", "fleet_mtls_probe=" + ODD_VALUE],
        "mtls_pull_vars": device_settings(service),
    }))
    name = booted_device(device_image, service, tmp_path, {
        tmp_path / "source": "/srv/fleet-mtls", headers: "/srv/api-headers.json", bootstrap: "/srv/bootstrap.yml"})
    try:
        wait_for_boot(name)
        # The device installs its own timer, with Debian's ansible-core, from the repository.
        checkout = "/var/lib/fleet-mtls/bootstrap/ansible_collections/autonomy_edge/fleet_mtls"  # the collection
        installed = podman("exec", name, "ansible-pull", "-U", "file:///srv/fleet-mtls", "-C", "main",
                           "-d", checkout, "-i", "localhost,", "-e", "@/srv/bootstrap.yml",
                           "playbooks/pull.yml", timeout=300, check=False)
        assert installed.returncode == 0, (installed.stdout + installed.stderr)[-5000:]
        check_device(name, service, "ansible-pull")
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


def wait_for_boot(name, seconds=90):
    """Until systemd in the container says it finished booting (its bus exists a moment after start)."""
    deadline = time.monotonic() + seconds
    while True:
        state = podman("exec", name, "systemctl", "is-system-running", "--wait", timeout=seconds, check=False)
        if state.stdout.strip() in ("running", "degraded"):
            return
        assert time.monotonic() < deadline, "systemd did not boot: %s%s" % (state.stdout, state.stderr)
        time.sleep(0.2)


def check_device(name, service, runner):
    assert "%s [core 2.14." % runner in podman("exec", name, runner, "--version").stdout
    assert podman("exec", name, "systemctl", "is-enabled", "fleet-mtls-pull.timer").stdout.strip() == "enabled"
    assert podman("exec", name, "systemctl", "is-active", "fleet-mtls-pull.timer").stdout.strip() == "active"
    verify = podman("exec", name, "systemd-analyze", "verify", "/etc/systemd/system/fleet-mtls-pull.service",
                    "/etc/systemd/system/fleet-mtls-pull.timer", check=False)
    assert verify.returncode == 0 and verify.stdout + verify.stderr == "", verify.stdout + verify.stderr

    run = podman("exec", name, "systemctl", "start", "fleet-mtls-pull.service", timeout=600, check=False)
    journal = podman("exec", name, "journalctl", "-u", "fleet-mtls-pull.service", "-o", "cat", "--no-pager").stdout
    shown = podman("exec", name, "systemctl", "show", "fleet-mtls-pull.service", "-p", "Result",
                   "-p", "ExecMainStatus", "-p", "ExecMainCode").stdout.split()
    assert run.returncode == 0 and shown == ["Result=success", "ExecMainCode=1", "ExecMainStatus=0"], (
        run.stderr + "\n".join(shown) + journal[-6000:])
    if runner == "ansible-pull":  # it prints the command it runs: %H, the quoting
        assert "--inventory edge-pull-01," in journal and "fleet_mtls_probe=" + ODD_VALUE in journal
    assert "fleet-mtls report provision-report: 1 host(s)" in journal, journal[-4000:]
    assert service.token not in journal

    # The identity on the device, registered with the cloud; its metrics for node_exporter.
    pem = podman("exec", name, "cat", "/root/.mtls/client.crt").stdout.encode()
    cert = x509.load_pem_x509_certificate(pem)
    agent_id = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert agent_id in service.registrations()
    assert podman("exec", name, "stat", "-c", "%a %U", "/root/.mtls/client.key",
                  "/etc/fleet-mtls/pull.yml", "/etc/fleet-mtls/api-headers.json").stdout.split() == [
        "600", "root"] * 3
    assert service.token not in podman("exec", name, "cat", "/etc/fleet-mtls/pull.yml").stdout
    prom = podman("exec", name, "cat", "/var/lib/prometheus/node-exporter/fleet-mtls.prom").stdout
    samples = {s.name: s for family in text_string_to_metric_families(prom) for s in family.samples}
    not_after = samples["fleet_mtls_certificate_not_after_timestamp_seconds"]
    assert not_after.labels == {"host": "edge-pull-01", "agent_id": agent_id}
    assert not_after.value == cert.not_valid_after_utc.timestamp()
    assert samples["fleet_mtls_action_info"].labels["action"] == "created"
    assert samples["fleet_mtls_last_run_success"].value == 1
