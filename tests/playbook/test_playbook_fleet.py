"""The playbooks over the demo inventory (five local "devices") against the reference service.

One module-scoped fleet walks the operator's life: provision, re-run, audit, rotate, rotate
one host, decommission. Failure cases use their own small fleets. Every run is a real
``ansible-playbook`` from the repository root, as an operator would type it.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import textwrap

import pytest

from tests.fixtures.playbook_fleet import Fleet, explain, write_inventory
from tests.fixtures.servicectl import ProvisioningService

pytestmark = pytest.mark.integration

DEMO_HOSTS = ("edge-sp-01", "edge-sp-02", "edge-sp-03", "edge-cps-01", "edge-cps-02")
PEM_KEY_RE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


# --------------------------------------------------------------------------- helpers


def key_material(fleet: Fleet, hosts) -> list[str]:
    """Every base64 line of every device key (what must never appear anywhere)."""
    lines = []
    for host in hosts:
        for line in fleet.key(host).read_text().splitlines():
            if line and not line.startswith("-----"):
                lines.append(line)
    return lines


def assert_no_key_material(text: str, secrets_lines: list[str], where: str) -> None:
    assert not PEM_KEY_RE.search(text), f"PEM private key header in {where}"
    assert "PRIVATE KEY" not in text, f"'PRIVATE KEY' in {where}"
    leaked = [line for line in secrets_lines if line in text]
    assert not leaked, f"{len(leaked)} base64 line(s) of a device key in {where}"


# --------------------------------------------------------------------------- the fleet's life


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    with ProvisioningService(root / "service", token=secrets.token_urlsafe(24)) as service:
        fleet = Fleet(root, service)
        fleet.first_run = fleet.play("provision.yml")
        yield fleet


def test_first_run_creates_and_verifies_every_host(fleet):
    run = fleet.first_run
    assert run.rc == 0, explain(run)
    assert set(run.recap) == set(DEMO_HOSTS), explain(run)
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in run.recap.values()), explain(run)
    rows = fleet.rows()
    registered = fleet.service.registrations()
    for host in DEMO_HOSTS:
        row = rows[host]
        assert row["action"] == "created", row
        assert row["verify"] == "ok", row
        assert row["error"] == ""
        assert row["agent_id"] == fleet.agent_id(host)
        assert row["fingerprint_sha256"] == fleet.fingerprint(host) == registered[row["agent_id"]]
        assert 363 <= row["days_left"] <= 365
        # The gate answers the device with its own ID, exactly as the agent would be answered.
        assert fleet.service.whoami(fleet.cert(host), fleet.key(host)) == (200, {"id": row["agent_id"]})
        # Files as the agent expects them.
        assert fleet.host_dir(host).stat().st_mode & 0o777 == 0o700
        assert fleet.key(host).stat().st_mode & 0o777 == 0o600
        assert fleet.cert(host).stat().st_mode & 0o777 == 0o644
        ini = (fleet.host_dir(host) / "agent-tls.ini").read_text()
        assert ini.startswith("# Managed by fleet-mtls")
        # The ID lives in one place, the certificate's CN: a copy here could go stale.
        assert "agent_id" not in ini.split("[server]", 1)[1]
        assert f"cert = {fleet.cert(host)}" in ini and f"key = {fleet.key(host)}" in ini
        assert f"port = {fleet.service.gate_port}" in ini
        assert "verify_mode = CERT_REQUIRED" in ini and "check_hostname = true" in ini
        assert "min_version = TLSv1.2" in ini
        # What the agent really reads: its trust through SSL_CERT_FILE (agent.env), the CA
        # delivered from the controller (mtls_server_ca_src).
        ca_copy = fleet.host_dir(host) / "server-ca.crt"
        assert fleet.agent_env(host) == {"SSL_CERT_FILE": str(ca_copy)}
        assert ca_copy.read_bytes() == fleet.service.ca_path.read_bytes()
        assert ca_copy.stat().st_mode & 0o777 == 0o644
        assert not [p.name for p in fleet.host_dir(host).iterdir() if p.name.endswith(".new")]
        # The stock agent, given exactly those files, connects where the cloud checks them.
        assert fleet.stock_agent(host)["connected"] is True
        assert fleet.service.ws_accepts(fleet.cert(host), fleet.key(host))
        # The (fake) agent was restarted exactly once, the identity being new, after the swap:
        # it loaded the new certificate and CA.
        assert fleet.restart_log(host)[0].endswith(" restarted " + fleet.loaded(host))
        assert fleet.restarts(host) == 1
        assert row["config"] == "changed" and row["config_changed"] is True, row
        assert row["restarted"] is True and isinstance(row["blackout_ms"], int) and row["blackout_ms"] >= 0, row
        assert row["verify_protocol"] == "websocket" and row["phase"] == "", row
    assert len({rows[h]["agent_id"] for h in DEMO_HOSTS}) == len(DEMO_HOSTS)
    # The table is printed at the end of the run.
    assert "fleet-mtls report provision-report: 5 host(s)" in run.output


def test_report_files_are_complete_and_hold_no_key_material(fleet):
    secrets_lines = key_material(fleet, DEMO_HOSTS)
    for suffix in ("json", "csv", "txt"):
        path = fleet.reports / f"provision-report.{suffix}"
        assert path.exists()
        assert path.stat().st_mode & 0o777 == 0o644
        assert_no_key_material(path.read_text(), secrets_lines, path.name)
    report = fleet.report()
    assert report["summary"]["hosts"] == 5 and report["summary"]["verified"] == 5
    assert report["summary"]["actions"] == {"created": 5}
    csv_lines = (fleet.reports / "provision-report.csv").read_text().splitlines()
    assert csv_lines[0].startswith('"host","agent_id","action"')
    assert len(csv_lines) == 6
    for column in ("fingerprint_sha256", "not_after", "days_left", "verify", "error"):
        assert f'"{column}"' in csv_lines[0]


def test_second_run_changes_nothing_and_calls_no_api(fleet):
    ids_before = fleet.service.request_count("/generate-orchestrator-id")
    uploads_before = fleet.service.request_count("/upload-orchestrator-certificate")
    fingerprints = {h: fleet.fingerprint(h) for h in DEMO_HOSTS}
    run = fleet.play("provision.yml")
    assert run.rc == 0, explain(run)
    assert set(run.recap) == set(DEMO_HOSTS)
    assert run.changed() == 0, explain(run)
    assert fleet.service.request_count("/generate-orchestrator-id") == ids_before
    assert fleet.service.request_count("/upload-orchestrator-certificate") == uploads_before
    assert {h: fleet.fingerprint(h) for h in DEMO_HOSTS} == fingerprints
    rows = fleet.rows()
    assert {rows[h]["action"] for h in DEMO_HOSTS} == {"unchanged"}
    assert {rows[h]["verify"] for h in DEMO_HOSTS} == {"ok"}
    assert {(rows[h]["config"], rows[h]["restarted"]) for h in DEMO_HOSTS} == {("unchanged", False)}
    # Nothing changed, so the agent was not restarted.
    assert [fleet.restarts(h) for h in DEMO_HOSTS] == [1] * 5


def test_check_mode_on_the_provisioned_fleet_reports_nothing_to_do(fleet):
    run = fleet.play("provision.yml", "--check")
    assert run.rc == 0, explain(run)
    assert run.changed() == 0, explain(run)


def test_audit_verifies_every_host_and_changes_nothing(fleet):
    before = {h: (fleet.fingerprint(h), (fleet.host_dir(h) / "agent-tls.ini").stat().st_mtime_ns) for h in DEMO_HOSTS}
    run = fleet.play("verify.yml")
    assert run.rc == 0, explain(run)
    assert run.changed() == 0, explain(run)
    rows = fleet.rows("verify-report")
    for host in DEMO_HOSTS:
        # The audit's verdict: the identity each device holds is valid (not due, not broken).
        assert rows[host]["action"] == "valid", rows[host]
        assert rows[host]["verify"] == "ok" and rows[host]["restarted"] is False
        assert rows[host]["agent_id"] == fleet.agent_id(host)
    after = {h: (fleet.fingerprint(h), (fleet.host_dir(h) / "agent-tls.ini").stat().st_mtime_ns) for h in DEMO_HOSTS}
    assert after == before
    assert [fleet.restarts(h) for h in DEMO_HOSTS] == [1] * 5


def test_lean_rerun_verifies_only_what_changed(fleet, tmp_path):
    """mtls_verify_unchanged=false: unchanged hosts skip the check (the gate sees no /ws
    upgrade), a host whose configuration changed is checked, and the agent restarts only there
    and only when a file it reads changed (agent-tls.ini is a record the agent never reads)."""
    checks_before = fleet.service.request_count("/ws")
    restarts = {h: fleet.restarts(h) for h in DEMO_HOSTS}
    run = fleet.play("provision.yml", "-e", "mtls_verify_unchanged=false")
    assert run.rc == 0, explain(run)
    assert run.changed() == 0, explain(run)
    rows = fleet.rows()
    assert {rows[h]["verify"] for h in DEMO_HOSTS} == {"skipped"}
    assert fleet.service.request_count("/ws") == checks_before
    # The same with the config phase left out by tags (the tags select the module's phases).
    run = fleet.play("provision.yml", "--tags", "mtls_identity,mtls_verify", "-e", "mtls_verify_unchanged=false")
    assert run.rc == 0, explain(run)
    assert {(fleet.rows()[h]["config"], fleet.rows()[h]["verify"]) for h in DEMO_HOSTS} == {("skipped", "skipped")}
    assert fleet.service.request_count("/ws") == checks_before

    host = "edge-sp-02"
    conf, env = fleet.host_dir(host) / "agent-tls.ini", fleet.host_dir(host) / "agent.env"
    original, original_env = conf.read_text(), env.read_bytes()
    # A record-only change: checked before the swap (one /ws upgrade), no restart.
    run = fleet.play("provision.yml", "--limit", host, "-e", "mtls_verify_unchanged=false",
                     "-e", "mtls_tls_min_version=TLSv1.3")
    assert run.rc == 0, explain(run)
    row = fleet.rows()[host]
    assert (row["action"], row["config"], row["verify"], row["restarted"]) == ("unchanged", "changed", "ok", False), row
    assert row["tls_version"] in ("TLSv1.2", "TLSv1.3"), row
    assert "min_version = TLSv1.3" in conf.read_text() and env.read_bytes() == original_env
    assert fleet.service.request_count("/ws") == checks_before + 1
    assert fleet.restarts(host) == restarts[host]
    # A file the agent reads changes (its CA bundle gains a second CA): checked with the staged
    # copy, swapped in, the agent restarted once, after the swap.
    bundle = tmp_path / "ca-bundle.crt"
    bundle.write_bytes(fleet.service.ca_path.read_bytes() + (fleet.service.state_dir / "enroll-ca.crt").read_bytes())
    run = fleet.play("provision.yml", "--limit", host, "-e", "mtls_verify_unchanged=false",
                     "-e", f"mtls_server_ca_src={bundle}")
    assert run.rc == 0, explain(run)
    row = fleet.rows()[host]
    assert (row["config"], row["verify"], row["restarted"]) == ("changed", "ok", True), row
    assert (fleet.host_dir(host) / "server-ca.crt").read_bytes() == bundle.read_bytes()
    assert fleet.service.request_count("/ws") == checks_before + 2
    assert fleet.restarts(host) == restarts[host] + 1
    assert fleet.restart_log(host)[-1].endswith(" restarted " + fleet.loaded(host))
    run = fleet.play("provision.yml", "--limit", host)  # back to the fleet's settings
    assert run.rc == 0, explain(run)
    assert conf.read_text() == original
    assert fleet.restarts(host) == restarts[host] + 2
    assert fleet.restart_log(host)[-1].endswith(" restarted " + fleet.loaded(host))
    assert {h: fleet.restarts(h) for h in DEMO_HOSTS if h != host} == {h: restarts[h] for h in DEMO_HOSTS if h != host}
    assert fleet.stock_agent(host)["connected"] is True


def test_forced_rotation_keeps_ids_and_swaps_certificates(fleet, tmp_path):
    ids = {h: fleet.agent_id(h) for h in DEMO_HOSTS}
    fingerprints = {h: fleet.fingerprint(h) for h in DEMO_HOSTS}
    restarts = {h: fleet.restarts(h) for h in DEMO_HOSTS}
    old = {}
    for host in DEMO_HOSTS:  # keep the old pair to show the gate refuses it afterwards
        old[host] = (tmp_path / f"{host}.crt", tmp_path / f"{host}.key")
        old[host][0].write_bytes(fleet.cert(host).read_bytes())
        fd = os.open(old[host][1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(fleet.key(host).read_bytes())
    ids_requested = fleet.service.request_count("/generate-orchestrator-id")

    run = fleet.play("provision.yml", "-e", "mtls_rotate=always", verbosity=4)
    fleet.rotation_run = run
    assert run.rc == 0, explain(run)
    rows = fleet.rows()
    for host in DEMO_HOSTS:
        assert rows[host]["action"] == "rotated", rows[host]
        assert fleet.agent_id(host) == ids[host]
        assert fleet.fingerprint(host) != fingerprints[host]
        assert rows[host]["fingerprint_sha256"] == fleet.fingerprint(host)
        assert rows[host]["verify"] == "ok"
        assert not fleet.gate_accepts(*old[host]), f"gate still accepts the old certificate of {host}"
        assert fleet.gate_accepts(fleet.cert(host), fleet.key(host))
        # The identity changed: exactly one more restart, after the new pair was swapped in,
        # measured from the registry's acceptance of the new certificate.
        assert fleet.restarts(host) == restarts[host] + 1
        assert fleet.restart_log(host)[-1].endswith(" restarted " + fleet.loaded(host))
        assert rows[host]["restarted"] is True and rows[host]["blackout_ms"] >= 0, rows[host]
    assert fleet.service.request_count("/generate-orchestrator-id") == ids_requested
    assert fleet.stock_agent("edge-sp-01")["connected"] is True


def test_verbose_output_and_temp_files_hold_no_key_material(fleet):
    run = getattr(fleet, "rotation_run", None)
    if run is None:  # run alone: make one
        run = fleet.rotation_run = fleet.play("provision.yml", "-e", "mtls_rotate=always", verbosity=4)
    assert run.rc == 0, explain(run)
    assert "<127.0.0.1>" in run.output or "ESTABLISH LOCAL CONNECTION" in run.output  # really -vvvv
    secrets_lines = key_material(fleet, DEMO_HOSTS)
    assert_no_key_material(run.output, secrets_lines, "the -vvvv output")
    assert fleet.service.token not in run.output, "the bearer token leaked into the -vvvv output"
    for path in fleet.tmp.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert_no_key_material(text, secrets_lines, str(path))
            assert fleet.service.token not in text, f"the bearer token leaked into {path}"
    for path in fleet.reports.rglob("*"):  # the fleet files and each run's copy in history/
        if path.is_file():
            assert_no_key_material(path.read_text(), secrets_lines, str(path))


def test_rotating_one_host_leaves_the_others_alone(fleet):
    fingerprints = {h: fleet.fingerprint(h) for h in DEMO_HOSTS}
    restarts = {h: fleet.restarts(h) for h in DEMO_HOSTS}
    rows_before = fleet.rows()
    run = fleet.play("provision.yml", "--limit", "edge-cps-02", "-e", "mtls_rotate=always")
    assert run.rc == 0, explain(run)
    assert set(run.recap) == {"edge-cps-02"}
    assert fleet.fingerprint("edge-cps-02") != fingerprints["edge-cps-02"]
    assert fleet.restarts("edge-cps-02") == restarts["edge-cps-02"] + 1
    for host in DEMO_HOSTS[:-1]:
        assert fleet.fingerprint(host) == fingerprints[host]
        assert fleet.restarts(host) == restarts[host]
        assert fleet.gate_accepts(fleet.cert(host), fleet.key(host))
    # The fleet report keeps the other hosts' rows; the rotated host's row is this run's.
    rows = fleet.rows()
    assert sorted(rows) == sorted(DEMO_HOSTS)
    assert rows["edge-cps-02"]["action"] == "rotated"
    assert rows["edge-cps-02"]["fingerprint_sha256"] == fleet.fingerprint("edge-cps-02")
    for host in DEMO_HOSTS[:-1]:
        assert rows[host]["fingerprint_sha256"] == rows_before[host]["fingerprint_sha256"] == fingerprints[host]


def test_decommission_refuses_without_confirmation(fleet):
    host = "edge-sp-03"
    run = fleet.play("decommission.yml", "--limit", host)
    assert run.rc != 0, explain(run)
    assert run.recap[host]["failed"] == 1
    assert f"mtls_decommission_confirm={fleet.agent_id(host)}" in run.output
    assert fleet.cert(host).exists() and fleet.key(host).exists()
    assert fleet.service.deleted_ids() == []
    assert fleet.gate_accepts(fleet.cert(host), fleet.key(host))
    # A wrong ID is no confirmation either.
    run = fleet.play("decommission.yml", "--limit", host, "-e", "mtls_decommission_confirm=FFFFFFFF")
    assert run.rc != 0 and fleet.cert(host).exists(), explain(run)
    row = fleet.rows("decommission-report")[host]
    assert "Refusing to decommission" in row["error"]


def test_decommission_deletes_the_id_and_the_local_identity(fleet, tmp_path):
    host = "edge-sp-03"
    agent_id = fleet.agent_id(host)
    cert, key = tmp_path / "old.crt", tmp_path / "old.key"
    cert.write_bytes(fleet.cert(host).read_bytes())
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(fleet.key(host).read_bytes())
    # ANSIBLE_DEBUG prints every module's arguments: the DELETE's bearer token must not be one.
    fleet.extra_env["ANSIBLE_DEBUG"] = "1"
    try:
        run = fleet.play("decommission.yml", "--limit", host, "-e", f"mtls_decommission_confirm={agent_id}")
    finally:
        del fleet.extra_env["ANSIBLE_DEBUG"]
    assert run.rc == 0, explain(run)
    assert "_execute_module (autonomy_edge.fleet_mtls.mtls_deregister" in run.output  # the debug lines are there...
    assert fleet.service.token not in run.output  # ...without the token
    assert agent_id in fleet.service.deleted_ids()
    assert not fleet.host_dir(host).exists(), list(fleet.host_dir(host).iterdir())
    assert not fleet.gate_accepts(cert, key)
    row = fleet.rows("decommission-report")[host]
    assert row["action"] == "decommissioned" and row["agent_id"] == agent_id
    # The rest of the fleet is untouched.
    for other in ("edge-sp-01", "edge-sp-02"):
        assert fleet.gate_accepts(fleet.cert(other), fleet.key(other))


# --------------------------------------------------------------------------- failures


@pytest.fixture
def small_fleet(tmp_path, service):
    def make(hosts: dict[str, dict], **group_vars) -> Fleet:
        inventory = write_inventory(tmp_path / "inventory.yml", hosts, **group_vars)
        return Fleet(tmp_path, service, inventory=inventory)

    return make


def test_untrusted_server_fails_only_that_host_with_a_clear_message(small_fleet, service):
    # A real CA, but not the one that signed the gate's certificate.
    other_ca = service.state_dir / "enroll-ca.crt"
    assert other_ca.exists()
    fleet = small_fleet({"good-01": {}, "bad-01": {"mtls_server_ca": str(other_ca), "mtls_server_ca_src": ""}})
    run = fleet.play("provision.yml")
    assert run.rc != 0, explain(run)
    assert run.recap["bad-01"]["failed"] == 1, explain(run)
    assert run.recap["good-01"]["failed"] == 0, explain(run)
    rows = fleet.rows()
    assert rows["good-01"]["verify"] == "ok" and rows["good-01"]["error"] == ""
    bad = rows["bad-01"]
    assert bad["verify"] == "failed" and bad["verify_failure"] == "untrusted_server"
    assert "untrusted server" in bad["error"] and str(other_ca) in bad["error"]
    # The identity itself was provisioned and is registered: only the agent's trust is wrong.
    assert bad["action"] == "created"
    assert fleet.gate_accepts(fleet.cert("bad-01"), fleet.key("bad-01"))
    # The configuration was checked before the swap and refused: no live agent file was
    # written, none staged is left behind.
    assert (bad["phase"], bad["config"], bad["config_changed"]) == ("config", "refused", False), bad
    assert sorted(p.name for p in fleet.host_dir("bad-01").iterdir()) == ["client.crt", "client.key"]
    # The new identity was handed to the agent (restarted) all the same: the registry already
    # refuses the old one.
    assert bad["restarted"] is True
    assert fleet.restarts("bad-01") == 1 and fleet.restarts("good-01") == 1
    assert "untrusted server" in run.output
    # The host is failed after the report: the table lists both hosts.
    assert "fleet-mtls report provision-report: 2 host(s)" in run.output


def test_hostname_mismatch_fails_the_audit_with_a_clear_message(small_fleet, service):
    fleet = small_fleet({"edge-01": {}})
    run = fleet.play("provision.yml")
    assert run.rc == 0, explain(run)
    service.restart(server_cert="wrong-host")
    run = fleet.play("verify.yml")
    assert run.rc != 0, explain(run)
    row = fleet.rows("verify-report")["edge-01"]
    assert row["verify"] == "failed" and row["verify_failure"] == "hostname_mismatch", row
    assert "hostname mismatch" in row["error"]
    # The provisioning run says the same (the identity is unchanged: no API call is made).
    run = fleet.play("provision.yml")
    assert run.rc != 0
    row = fleet.rows()["edge-01"]
    assert row["action"] == "unchanged" and row["verify_failure"] == "hostname_mismatch", row
    assert (row["phase"], row["restarted"]) == ("verify", False), row


def test_ini_inventory_float_id_is_refused_before_any_request(tmp_path, service):
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(textwrap.dedent(f"""\
        [fleet]
        edge-float ansible_connection=local mtls_agent_id=1234e567

        [fleet:vars]
        ansible_python_interpreter={sys.executable}
        mtls_dir={tmp_path}/edge-float/.mtls
        mtls_api_url={service.api_url}
        mtls_api_ca={service.ca_path}
        mtls_agent_restart=none
        mtls_install_prerequisites=false
        """))
    fleet = Fleet(tmp_path, service, inventory=str(inventory))
    run = fleet.play("provision.yml")
    assert run.rc != 0, explain(run)
    assert "float inf" in run.output and "quote it" in run.output, explain(run)
    assert service.request_count("/generate-orchestrator-id") == 0
    assert service.request_count("/upload-orchestrator-certificate") == 0
    row = fleet.rows()["edge-float"]
    assert row["action"] == "failed" and "must be a string" in row["error"], row
    # Refused before anything is written; through the role, the message names the variable the
    # operator sets, and an argument is refused as an argument, not as an identity failure.
    wrong = [what for what, bad in (
        ("the identity directory was created", (tmp_path / "edge-float").exists()),
        ("the error names agent_id, not mtls_agent_id", "mtls_agent_id" not in row["error"]),
        ("the phase is %r" % row["phase"], row["phase"] not in ("arguments", "preflight"))) if bad]
    if wrong:
        pytest.fail("product: a float mtls_agent_id: " + "; ".join(wrong))


def test_check_mode_on_a_fresh_fleet_touches_nothing(small_fleet, service, tmp_path):
    fleet = small_fleet({"edge-01": {}, "edge-02": {}})
    run = fleet.play("provision.yml", "--check")
    assert run.rc == 0, explain(run)
    assert not fleet.demo_root.exists() or not any(fleet.demo_root.rglob("client.*"))
    assert service.request_count("/generate-orchestrator-id") == 0
    rows = fleet.rows()
    assert {rows[h]["action"] for h in ("edge-01", "edge-02")} == {"created"}


def test_json_upload_with_bearer_token(small_fleet, service):
    # No agent runs here: the cloud's confirmation (the default there) is tests/module/test_confirm.py's.
    fleet = small_fleet({"edge-01": {}}, mtls_upload_format="json", mtls_upload_endpoint="/agent/certificate",
                        mtls_confirm="none")
    run = fleet.play("provision.yml")
    assert run.rc == 0, explain(run)
    row = fleet.rows()["edge-01"]
    assert row["action"] == "created" and row["verify"] == "ok", row
    assert service.request_count("/agent/certificate") == 1
    assert service.request_count("/upload-orchestrator-certificate") == 0
    assert service.token not in run.output


def test_refused_upload_keeps_the_identity_and_reports_it(small_fleet, service):
    fleet = small_fleet({"edge-01": {}})
    assert fleet.play("provision.yml").rc == 0
    agent_id, fingerprint = fleet.agent_id("edge-01"), fleet.fingerprint("edge-01")
    key_before = fleet.key("edge-01").read_bytes()
    service.inject("/upload-orchestrator-certificate", "status", count=0, status=400)
    run = fleet.play("provision.yml", "-e", "mtls_rotate=always")
    assert run.rc != 0, explain(run)
    row = fleet.rows()["edge-01"]
    assert row["action"] == "failed" and "400" in row["error"], row
    assert (row["phase"], row["restarted"]) == ("identity", False), row
    assert fleet.key("edge-01").read_bytes() == key_before
    assert sorted(p.name for p in fleet.host_dir("edge-01").iterdir()) == [
        "agent-tls.ini", "agent.env", "client.crt", "client.key", "server-ca.crt"]
    assert fleet.gate_accepts(fleet.cert("edge-01"), fleet.key("edge-01"))
    assert fleet.restarts("edge-01") == 1  # nothing changed: no restart
    failed_row = row
    service.clear_faults()
    run = fleet.play("provision.yml", "-e", "mtls_rotate=always")
    assert run.rc == 0, explain(run)
    assert fleet.agent_id("edge-01") == agent_id and fleet.fingerprint("edge-01") != fingerprint
    assert fleet.restarts("edge-01") == 2
    # The report of the failed run shows the identity the device still had, which still worked.
    if (failed_row["agent_id"], failed_row["fingerprint_sha256"]) != (agent_id, fingerprint):
        pytest.fail("product: a failed identity phase reports no identity (agent_id %r, fingerprint %r): "
                     "provision.run raises before the status row gets the current identity"
                     % (failed_row["agent_id"], failed_row["fingerprint_sha256"]))
