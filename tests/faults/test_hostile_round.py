"""The hostile round of issue 18: answers, names and files an attacker (or an odd server)
controls, each met by the real module, the real report writer or a real ansible-playbook run
against the reference service. Every case failed on the code before issue 18."""
from __future__ import annotations

import json
import os

import pytest

from tests.fixtures import module_runner as h

DELETE_EP = "/orchestrators/<id>"


# --------------------------------------------------------------------------- decommission


def deregister(device, svc, **args):
    """mtls_deregister's own main() in its own process (as Ansible runs it on a device)."""
    args = {"path": str(device.path), "api_url": svc.api_url, "ca_path": str(svc.ca_path),
            "endpoint": "/orchestrators/{id}", "headers": svc.auth_headers(), "retries": 0, **args}
    result = h.run_module(args, workdir=device.work, via="direct", env={"FLEET_FAULTS_MODULE": "mtls_deregister"})
    device.assert_no_secrets(result)
    return result


# 200 answers that do not prove a deletion (the reference service's `malformed` fault sends
# them without deleting anything).
NO_PROOF = {
    "message-ok": '{"statusCode": 200, "message": "ok"}',
    "data-message": '{"statusCode": 200, "data": {"message": "deleted"}}',
    "other-id": '{"statusCode": 200, "data": {"id": "FFFF0000", "message": "Orchestrator decommissioned"}}',
    "not-json": "deleted",
}


@pytest.mark.parametrize("body", list(NO_PROOF.values()), ids=list(NO_PROOF))
def test_decommission_believes_only_the_proof_of_deletion(device, svc, body):
    agent_id = device.seed()
    before = device.state()
    svc.inject(DELETE_EP, "malformed", body=body)
    result = deregister(device, svc, confirm=agent_id)
    assert result.failed and result.result.get("action") == "failed", result
    assert "not the contract's proof of deletion" in result.msg, result
    assert "(%s)" % " ".join(body.split()) in result.msg, result  # the answer quoted
    assert svc.fired(DELETE_EP, "malformed") == 1
    device.assert_intact(before)  # files kept
    assert agent_id not in svc.deleted_ids()
    assert svc.gate_accepts(device.cert_path, device.key_path)  # the registry still holds the pair


def test_decommission_with_the_proof_wipes_the_device(device, svc):
    agent_id = device.seed()
    result = deregister(device, svc, confirm=agent_id)
    assert not result.failed and result.result["action"] == "decommissioned", result
    assert not device.path.exists() and agent_id in svc.deleted_ids()


# --------------------------------------------------------------------------- API headers

ID_EP = "/generate-orchestrator-id"
UP_EP = "/upload-orchestrator-certificate"
MARK = "SECRETPART42"  # the ASCII part of each token: never printed
TOKENS = {"latin-1": "Bearer t\u00f6k\u00e9n-" + MARK,
          "beyond-latin-1": "Bearer \u0442\u043e\u043a\u0435\u043d\u20ac-" + MARK}
OUTSIDE = "the value of header Authorization holds a character outside ASCII"


def assert_nothing_sent(svc):
    assert svc.request_count(ID_EP) == svc.request_count(UP_EP) == 0


@pytest.mark.parametrize("token", list(TOKENS.values()), ids=list(TOKENS))
def test_a_non_ascii_token_is_refused_before_any_request_naming_the_role_variable(tmp_path, svc, token):
    from tests.fixtures.playbook_fleet import RoleFleet, explain

    fleet = RoleFleet(tmp_path, svc, {"hd-1": {"mtls_api_headers": {"Authorization": token}}})
    run = fleet.play("provision.yml")
    assert run.rc != 0, explain(run)
    row = fleet.rows()["hd-1"]
    assert (row["action"], row["phase"]) == ("failed", "arguments"), row
    assert row["error"].startswith("mtls_api_headers: " + OUTSIDE), row
    assert MARK not in run.output and token.split("-")[0] not in run.output, explain(run)
    assert all(MARK not in p.read_text() for p in fleet.reports.glob("provision-report.*"))
    assert_nothing_sent(svc)
    assert not fleet.host_dir("hd-1").exists()


def test_a_module_user_is_told_the_options_name(device, svc, tmp_path):
    source = tmp_path / "api-headers.json"
    source.write_text('{"Authorization": "%s"}' % TOKENS["latin-1"])
    for option, value in (("headers", {"Authorization": TOKENS["beyond-latin-1"]}), ("headers_src", str(source))):
        result = device.run(via="ansible", **{option: value})
        assert result.failed and result.msg.startswith("%s: %s" % (option, OUTSIDE)), result
        assert result.result["status"]["phase"] == "arguments", result
        assert MARK not in result.output
    assert_nothing_sent(svc)
    assert not device.path.exists()


def test_a_headers_file_on_the_device_names_itself_and_fails_the_identity_phase(device, svc, tmp_path):
    headers_file = tmp_path / "api-headers.json"
    headers_file.write_text('{"Authorization": "%s"}' % TOKENS["latin-1"])
    result = device.run(headers_file=str(headers_file))
    assert result.failed and result.msg.startswith("headers_file %s: %s" % (headers_file, OUTSIDE)), result
    assert result.result["status"]["phase"] == "identity", result
    assert MARK not in result.output
    assert_nothing_sent(svc)
    assert not device.path.exists()


# --------------------------------------------------------------------------- the reports

HOSTILE_HOSTS = {
    "newline": "evil\nFAKEHOST  AAAAAAAA  created  ok",
    "terminal": "\x1b]0;pwned\x07\x1bc",  # OSC window title, then RIS (terminal reset)
    "csv-tab": '\t=HYPERLINK("http://x.invalid")',
    "csv-cr": "\r@SUM(1)",
    "del-c1-bidi": "del\x7fc1\x85\x9bbidi\u202e",
}
# What any control (C0, DEL, C1) looks like in a text: never there raw.
CONTROL = "[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    """One real ansible-playbook run of the report fixture over hosts with hostile names (and a
    hostile error), with the AWX artifact printed."""
    from tests.fixtures.report_fleet import FP, ReportFleet, healthy

    hosts = {"ok-01": healthy("A1", FP["a"])}  # first: run_once tasks print under its name
    hosts.update({name: healthy("B%d" % n, FP["b"]) for n, name in enumerate(HOSTILE_HOSTS.values())})
    hosts[HOSTILE_HOSTS["terminal"]] = {"fixture_fail_phase": "verify", "fixture_error": "refused \x1b[2J\x1b]0;x\x07"}
    fleet = ReportFleet(tmp_path_factory.mktemp("hostile-report"), hosts)
    fleet.run = fleet.play(ANSIBLE_SHOW_CUSTOM_STATS="1")
    fleet.names = list(hosts)
    return fleet


def no_control(text, what):
    import re

    found = re.search(CONTROL, text)
    assert found is None, "%s holds a raw control character %r" % (what, found.group(0))


def test_the_json_report_and_the_ledger_keep_each_name_exactly(hostile_report):
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.ledger import Ledger
    from tests.fixtures.playbook_fleet import explain

    fleet = hostile_report
    assert fleet.run.rc != 0, explain(fleet.run)  # the failed host fails the play after the report
    assert sorted(fleet.rows()) == sorted(fleet.names)  # one row per host, names exactly
    no_control((fleet.reports / "provision-report.json").read_text().replace("\n", " "), "the JSON")
    # The ledger holds each host under its inventory name (a stripped "\t=..." was another host).
    ledger = Ledger(str(fleet.reports / "identity-ledger.json"))
    assert sorted(ledger.hosts()) == sorted(n for n in fleet.names if n != HOSTILE_HOSTS["terminal"])
    assert ledger.orphans(fleet.names) == []


def test_the_csv_has_one_neutralised_row_per_host(hostile_report):
    import csv

    text = (hostile_report.reports / "provision-report.csv").read_text()
    no_control(text.replace("\n", " "), "the CSV")
    rows = list(csv.DictReader(text.splitlines()))
    assert len(text.splitlines()) == len(rows) + 1 == len(hostile_report.names) + 1
    cells = {row["host"] for row in rows}
    assert "'\\t=HYPERLINK(\"http://x.invalid\")" in cells and "'\\r@SUM(1)" in cells, cells
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row.values()
                   if not cell.lstrip("-").isdigit())


def table_rows(lines, names):
    """The table lines of the hosts (each starts with its visible name): exactly one each."""
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.visible import visible

    for name in names:
        assert sum(line.startswith(visible(name) + " ") for line in lines) == 1, (name, lines)
    assert not any(line.startswith("FAKEHOST") for line in lines), lines


def test_the_text_table_has_one_line_per_host(hostile_report):
    text = (hostile_report.reports / "provision-report.txt").read_text()
    no_control(text.replace("\n", " "), "provision-report.txt")
    lines = text.splitlines()
    table_rows(lines, hostile_report.names)
    assert len(lines) == 2 + len(hostile_report.names) + 1  # title, header, hosts, totals (no orphan)
    assert "\\x1b[2J\\x1b]0;x\\x07" in text  # the error, visibly


def test_the_printed_table_has_one_line_per_host(hostile_report):
    import json

    section = next(out for name, out in hostile_report.run.sections() if name.endswith("Print the fleet report"))
    assert section.startswith("\nok: [ok-01] => "), section
    lines = json.loads(section[len("\nok: [ok-01] => "):])["msg"]
    for line in lines:
        no_control(line, "a printed line")
    table_rows(lines, hostile_report.names)


def test_the_prom_labels_carry_visible_names(hostile_report):
    from prometheus_client.parser import text_string_to_metric_families

    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.visible import visible

    text = (hostile_report.reports / "fleet-mtls.prom").read_text()
    no_control(text.replace("\n", " "), "fleet-mtls.prom")
    assert all(line.startswith(("fleet_mtls_", "# ")) for line in text.splitlines())
    families = {f.name: f for f in text_string_to_metric_families(text)}
    hosts = [s.labels["host"] for s in families["fleet_mtls_action_info"].samples]
    assert sorted(hosts) == sorted(visible(name) for name in hostile_report.names)


def test_the_awx_artifact_carries_no_control_character(hostile_report):
    import json

    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.visible import visible

    artifact = hostile_report.run.custom_stats()["mtls_report"]
    no_control(json.dumps(artifact, ensure_ascii=False), "the artifact")
    assert sorted(row["host"] for row in artifact["hosts"]) == sorted(visible(n) for n in hostile_report.names)


# --------------------------------------------------------------------------- the report directory

# A symlink planted in the report directory, and what it points at (outside, under "victim/").
LINKS = {
    "ledger-lock": ("identity-ledger.json.lock", "created-by-root.lock"),
    "report-lock": ("provision-report.json.lock", "created-by-root.lock"),
    "history": ("history", "history-elsewhere"),
    "report-read-back": ("provision-report.json", "someone-elses-report.json"),
    "ledger": ("identity-ledger.json", "someone-elses-ledger.json"),
}


@pytest.mark.parametrize(("link", "target"), list(LINKS.values()), ids=list(LINKS))
def test_a_symlink_in_the_report_directory_is_refused_never_followed(tmp_path, link, target):
    import json

    from tests.fixtures.playbook_fleet import explain
    from tests.fixtures.report_fleet import FP, ReportFleet, healthy

    fleet = ReportFleet(tmp_path, {"ok-01": healthy("A1", FP["a"])})
    victim = tmp_path / "victim"
    victim.mkdir()
    if target.startswith("history"):
        (victim / target).mkdir()
    elif target.endswith(".json"):  # a report / a ledger of someone else's, to be neither read nor written
        (victim / target).write_text(json.dumps({"report": "x", "hosts": [{"host": "stolen-01"}]}))
    before = h.snapshot(victim)
    fleet.reports.mkdir()
    (fleet.reports / link).symlink_to(victim / target)
    run = fleet.play()
    assert run.rc != 0, explain(run)
    assert "refusing to follow %s: it is a symbolic link" % (fleet.reports / link) in run.output, explain(run)
    assert h.snapshot(victim) == before  # nothing created, read into a report, or written there
    assert (fleet.reports / link).is_symlink()
    assert "stolen-01" not in run.output


# --------------------------------------------------------------------------- backups


def backup_names(path):
    import os

    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.layout import backup_of

    return sorted(name for name in os.listdir(path) if backup_of(name) is not None)


def test_backups_beyond_backup_keep_pairs_are_removed_through_the_directory(device, svc, tmp_path):
    import os

    device.seed()
    old_stamps = ["20240101T000000Z", "20250101T000000Z", "20250101T000000Z-2", "20260101T000000Z"]
    for stamp in old_stamps:  # four older pairs, as earlier rotations left them
        for name in ("client.key", "client.crt"):
            (device.path / f"{name}.{stamp}.bak").write_bytes(b"retired " + name.encode())
            (device.path / f"{name}.{stamp}.bak").chmod(0o600)
    outside = tmp_path / "outside.key"
    outside.write_bytes(b"not a backup of this device")
    os.symlink(outside, device.path / "client.key.20200101T000000Z.bak")  # looks like the oldest backup
    (device.path / "client.key.notes.bak").write_bytes(b"the operator's")  # not a backup name
    result = device.run(rotate="always", backup=True, backup_keep=2)
    assert not result.failed and result.result["action"] == "rotated", result
    device.assert_registered()
    made = [os.path.basename(p) for p in result.result["backup_files"]]
    kept = sorted(made + ["client.crt.20260101T000000Z.bak", "client.key.20260101T000000Z.bak"])
    assert [n for n in backup_names(device.path) if not os.path.islink(device.path / n)] == kept
    assert sorted(os.path.basename(p) for p in result.result["backups_removed"]) == sorted(
        f"{name}.{stamp}.bak" for stamp in old_stamps[:3] for name in ("client.key", "client.crt"))
    assert os.path.islink(device.path / "client.key.20200101T000000Z.bak")  # neither followed nor removed
    assert outside.read_bytes() == b"not a backup of this device"
    assert (device.path / "client.key.notes.bak").read_bytes() == b"the operator's"
    # The default keeps 3 pairs: the next rotation adds one and removes none.
    again = device.run(rotate="always", backup=True)
    assert not again.failed and "backups_removed" not in again.result, again
    assert len([n for n in backup_names(device.path) if not os.path.islink(device.path / n)]) == 6


# --------------------------------------------------------------------------- a forgotten ID

FORGOTTEN = "0BADF00D"  # 8 upper-case hex, never reserved on the service: the registry does not know it


def test_a_lost_device_whose_ledger_id_the_registry_forgot_converges_in_one_run(device, svc, tmp_path):
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import report
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.ledger import FORGOTTEN as EVENT
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.ledger import Ledger

    ledger = Ledger(str(tmp_path / "identity-ledger.json"))
    ledger.record("lost-01", {"agent_id": FORGOTTEN, "fingerprint_sha256": "ab" * 32, "action": "created"})
    result = device.run(ledger_id=FORGOTTEN, host="lost-01")  # lost_identity=restore, the default
    assert not result.failed, result
    status = result.result["status"]
    new_id = status["agent_id"]
    assert (status["action"], status["replaces"]) == ("created", FORGOTTEN) and new_id != FORGOTTEN, status
    assert "no longer knows ID %s" % FORGOTTEN in status["reason"], status
    warnings = " ".join(str(w) for w in result.result.get("warnings", []))
    assert "enrolled under the new ID %s" % new_id in warnings and "lost_identity=fail" in warnings, result
    device.assert_registered()
    assert device.agent_id == new_id
    assert svc.request_count(ID_EP) == 1 and svc.request_count(UP_EP) == 2  # 404 once, then the new ID
    # The report writer records the row: the new ID replaces the forgotten one, which is no orphan.
    ledger.record("lost-01", report.typed_row(status, "lost-01"))
    history = ledger.lookup("lost-01")["history"]
    assert [(e["action"], e["agent_id"]) for e in history[-2:]] == [(EVENT, FORGOTTEN), ("created", new_id)]
    assert history[-1]["replaces"] == FORGOTTEN and ledger.orphans(["lost-01"]) == []
    again = device.run(ledger_id=new_id)
    assert not again.failed and again.result["action"] == "unchanged", again


def test_only_the_registrys_own_answer_lets_a_restore_take_a_new_id(device, svc):
    svc.inject(UP_EP, "status", status=404, message="Not Found")  # a 404, but not the registry's
    result = device.run(ledger_id=FORGOTTEN)
    assert result.failed and "without its own unknown-ID answer" in result.msg, result
    assert "lost_identity=new" in result.msg and "run again to request a fresh ID" not in result.msg, result
    assert svc.request_count(ID_EP) == 0
    assert not device.cert_path.exists() and not device.key_path.exists()
    # An operator's pre-assigned agent_id is never replaced, whatever the registry says.
    result = device.run(agent_id=FORGOTTEN)
    assert result.failed and "unknown ID %s" % FORGOTTEN in result.msg, result
    assert svc.request_count(ID_EP) == 0


# --------------------------------------------------------------------------- odd ID answers


@pytest.mark.parametrize(("value", "words"), [
    ('"0a1b2c3d"', "does not match id_pattern ^[0-9A-F]{8}$"),  # the service's own format, lower case
    ("12345678", "is a JSON int (12345678), not a string: the API must answer IDs as strings"),
], ids=["lower-case", "json-number"])
def test_an_id_answer_in_another_form_is_refused_before_any_key_or_upload(device, svc, value, words):
    svc.inject(ID_EP, "malformed", body='{"statusCode": 200, "data": {"id": %s}}' % value)
    result = device.run()
    assert result.failed and words in result.msg and "inventory" not in result.msg, result
    assert svc.request_count(UP_EP) == 0  # nothing minted, nothing uploaded
    assert not device.path.exists() or not any(device.path.iterdir())


# --------------------------------------------------------------------------- a refused creation

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


@pytest.mark.skipif(not __import__("os").path.exists(LIBFAKETIME), reason="libfaketime is not installed")
@pytest.mark.parametrize("api_ca", ["ca_path", "ca_content"])
def test_a_creation_refused_for_the_clock_leaves_no_directory(device, svc, api_ca):
    args = {"ca_path": None, "ca_content": svc.ca_path.read_text()} if api_ca == "ca_content" else {}
    result = device.run(env={"LD_PRELOAD": LIBFAKETIME, "FAKETIME": "+730d"}, **args)  # the device's clock only
    assert result.failed and "the device clock is" in result.msg and "ahead of" in result.msg, result
    assert svc.request_count(ID_EP) == svc.request_count(UP_EP) == 0
    assert not device.path.exists(), sorted(p.name for p in device.path.iterdir())
    assert device.home.is_dir()  # only what the run created goes


# --------------------------------------------------------------------------- a renamed host


def test_a_host_renamed_in_the_inventory_moves_its_id_with_a_warning(tmp_path):
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.ledger import Ledger
    from tests.fixtures.playbook_fleet import explain
    from tests.fixtures.report_fleet import FP, ReportFleet, healthy

    fleet = ReportFleet(tmp_path, {"edge-new-01": healthy("0A1B2C3D", FP["a"])})
    ledger = Ledger(str(fleet.reports / "identity-ledger.json"))
    ledger.record("edge-old-01", {"agent_id": "0A1B2C3D", "fingerprint_sha256": FP["a"], "action": "created"})
    run = fleet.play()
    assert run.rc == 0, explain(run)
    assert "agent ID 0A1B2C3D moved from host edge-old-01 to host edge-new-01" in " ".join(run.output.split())
    hosts = ledger.hosts()
    assert (hosts["edge-new-01"]["agent_id"], hosts["edge-old-01"]["agent_id"]) == ("0A1B2C3D", "")
    assert hosts["edge-old-01"]["history"][-1]["to"] == "edge-new-01"
    assert [c["host"] for c in ledger.claims("0A1B2C3D") if c["current"]] == ["edge-new-01"]
    assert ledger.orphans(["edge-new-01"]) == []


# --------------------------------------------------------------------------- another certificate registered


def test_a_replaced_certificate_is_refused_naming_the_rotation_that_heals_it(tmp_path, svc):
    from tests.fixtures.playbook_fleet import RoleFleet, explain

    fleet = RoleFleet(tmp_path, svc, {"rr-01": {}})
    assert fleet.play("provision.yml").rc == 0
    agent_id = fleet.agent_id("rr-01")
    other = h.self_signed(h.new_key(2048), agent_id)  # uploaded from elsewhere
    assert svc.upload(agent_id, other).status_code == 200
    run = fleet.play("provision.yml")
    assert run.rc != 0, explain(run)
    row = fleet.rows()["rr-01"]
    assert (row["phase"], row["verify_failure"]) == ("verify", "refused"), row
    assert "run with mtls_rotate=always to register a new pair under the same ID" in row["error"], row
    healed = fleet.play("provision.yml", "-e", "mtls_rotate=always")
    assert healed.rc == 0 and fleet.agent_id("rr-01") == agent_id, explain(healed)
    assert svc.gate_accepts(fleet.cert("rr-01"), fleet.key("rr-01"))


# --------------------------------------------------------------------------- an ID the ledger does not hold


OTHER_ID = "0C0FFEE0"  # the ID the controller's ledger holds for this host


@pytest.mark.parametrize("why", ["rotate-always", "due"])
def test_a_certificate_naming_another_id_than_the_ledgers_is_never_uploaded(device, svc, why):
    """Whoever writes ~/.mtls can put a certificate there naming another device's ID; a rotation
    (asked for, or due: the file's certificate says when) would then upload a new certificate for
    that ID and take it over. The ledger holds another ID for this host: refused, nothing
    changed, nothing sent; the operator's agent_id naming the device's ID lets it rotate."""
    agent = device.seed(days=365 if why == "rotate-always" else 10)  # 10: due (renew_before_days 30)
    before = device.state()
    options = {"rotate": "always"} if why == "rotate-always" else {}
    result = device.run(ledger_id=OTHER_ID, **options)
    assert result.failed, result
    assert "names agent %s, but the identity ledger holds %s for this host" % (agent, OTHER_ID) in result.msg, result
    assert "agent_id=%s" % agent in result.msg and "nothing was changed" in result.msg, result
    assert device.state() == before
    assert svc.request_count(UP_EP) == 0 and svc.request_count(ID_EP) == 0
    # A run that uploads nothing only notes it; the operator's agent_id is the device's word.
    if why == "rotate-always":
        seen = device.run(ledger_id=OTHER_ID)
        assert not seen.failed and seen.result["action"] == "unchanged", seen
        assert svc.request_count(UP_EP) == 0
    rotated = device.run(ledger_id=OTHER_ID, agent_id=agent, **options)
    assert not rotated.failed and rotated.result["action"] == "rotated", rotated
    assert device.agent_id == agent
    device.assert_registered()


@pytest.mark.parametrize("planted", ["staged-pair", "journal-only", "journal-and-key"])
def test_a_planted_interrupted_run_for_another_id_never_takes_it_over(device, svc, planted):
    """Whoever writes ~/.mtls can fake what an interrupted run leaves: a journal naming another
    device's ID (its reservation to reuse), with a staged pair of its own key for it, or with a
    key (re-keyed as that ID). The ledger holds this host's own ID: the staged pair is removed,
    the journal dropped as stale, and lost_identity (restore, the default) gives the device back
    its own ID. The other device keeps its registration."""
    own = device.seed()
    victim = svc.reserve_id()
    victim_key = h.new_key(2048)
    victim_cert = h.self_signed(victim_key, victim)
    assert svc.upload(victim, victim_cert).status_code == 200
    victim_fp = svc.registrations()[victim]
    device.cert_path.unlink()
    if planted != "journal-and-key":
        device.key_path.unlink()
    if planted == "staged-pair":
        mine = h.new_key(2048)
        for name, data in ((".client.key.new", h.key_pem(mine)), (".client.crt.new", h.self_signed(mine, victim))):
            (device.path / name).write_bytes(data)
            os.chmod(device.path / name, 0o600)
    journal = {"version": 1, "id": victim, "operation": "create", "registry": "uncertain",
               "since": "2026-12-06T00:00:00Z"}
    (device.path / ".mtls-pending.json").write_text(json.dumps(journal))
    os.chmod(device.path / ".mtls-pending.json", 0o600)
    svc.clear_faults()
    result = device.run(ledger_id=own)
    assert not result.failed, result
    assert result.result["agent_id"] == own and result.result["action"] in ("restored", "rotated"), result.result
    if planted == "staged-pair":
        warnings = " ".join(str(w) for w in result.result.get("warnings", []))
        assert "staged certificate names %s, not %s" % (victim, own) in warnings, warnings
    assert svc.registrations()[victim] == victim_fp, "the other device's ID was taken over"
    assert device.agent_id == own
    device.assert_registered()
    assert not (device.path / ".mtls-pending.json").exists()


def test_a_device_that_lost_only_its_certificate_is_rekeyed_under_the_ledgers_id(device, svc):
    """client.crt gone, client.key there, the ledger holds the host's ID: re-keyed under that ID
    (the reason says so, and so does the registry), never a second ID reserved."""
    own = device.seed()
    device.cert_path.unlink()
    result = device.run(ledger_id=own)
    assert not result.failed and result.result["action"] == "rotated", result
    assert result.result["reason"] == "certificate missing: re-keying %s" % own
    assert result.result["agent_id"] == own and device.agent_id == own
    assert svc.request_count(ID_EP) == 0 and svc.request_count(UP_EP) == 1
    device.assert_registered()
