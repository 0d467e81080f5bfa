"""The identity transaction end to end against the real reference service: create, re-run,
rotate, check mode, failures before acceptance, rollback, journal, recovery after kill -9,
concurrency, CSR and JSON/bearer formats."""

from __future__ import annotations

import json
import os
import stat
import threading
import time

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certs
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.api import ProvisioningClient
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import TransactionError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.fsutil import IdentityDir
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import (
    JOURNAL,
    ensure_identity,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.keys import (
    key_matches_certificate,
    load_private_key,
    private_key_pem,
)
from tests.fixtures.identities import NoNetwork, build_cert, client_for, snapshot
from tests.fixtures.product import settings as make_settings

ID_EP = "/generate-orchestrator-id"
UP_EP = "/upload-orchestrator-certificate"


def run(svc, path, check_mode=False, client_kw=None, **kw):
    kw.setdefault("key_size", 2048)
    settings = make_settings(path, **kw)
    factory = NoNetwork() if svc is None else (lambda: client_for(svc, **(client_kw or {})))
    result, warnings = ensure_identity(settings, factory, check_mode=check_mode)
    result["warnings"] = warnings
    return result


def device_fp(path):
    return certs.fingerprint_sha256(certs.load_certificate((path / "client.crt").read_bytes()))


def assert_consistent(svc, path, agent_id=None):
    """Key matches cert, registry holds exactly client.crt, the gate accepts the device."""
    key = load_private_key((path / "client.key").read_bytes(), validate=True)
    cert = certs.load_certificate((path / "client.crt").read_bytes())
    assert key_matches_certificate(key, cert)
    cn = certs.common_name(cert)
    if agent_id:
        assert cn == agent_id
    assert svc.registered_pem(cn) == (path / "client.crt").read_text()
    assert svc.whoami(path / "client.crt", path / "client.key") == (200, {"id": cn})
    assert stat.S_IMODE(os.stat(path / "client.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path / "client.crt").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    assert sorted(p.name for p in path.iterdir() if p.name.startswith(".")) == []
    return cn


def gate_refuses(svc, cert_path, key_path):
    """The gate's check answers 403 (TLS accepts any certificate, as the real cloud's nginx)."""
    return not svc.gate_accepts(cert_path, key_path)


# ------------------------------------------------------------------------------------------
def test_create_rerun_rotate(svc, ident_dir, tmp_path):
    ids_before = len(svc.reserved_ids())
    created = run(svc, ident_dir)
    assert created["changed"] and created["action"] == "created"
    agent_id = assert_consistent(svc, ident_dir)
    assert created["agent_id"] == agent_id
    assert created["fingerprint_sha256"] == device_fp(ident_dir) == svc.registrations()[agent_id]
    assert len(svc.reserved_ids()) == ids_before + 1
    assert created["diff"]["before"] == {}
    assert created["diff"]["after"]["agent_id"] == agent_id

    svc.clear_faults()  # resets the request counters
    again = run(None, ident_dir)  # NoNetwork: any client use fails the test
    assert not again["changed"] and again["action"] == "unchanged"
    assert again["fingerprint_sha256"] == created["fingerprint_sha256"]
    assert again["diff"]["before"] == again["diff"]["after"]
    assert sum(svc.faults()["requests"].values()) == 0

    old = tmp_path / "old"
    old.mkdir()
    for name in ("client.crt", "client.key"):
        (old / name).write_bytes((ident_dir / name).read_bytes())
    rotated = run(svc, ident_dir, rotate="always")
    assert rotated["action"] == "rotated" and rotated["reason"] == "rotate=always"
    assert rotated["agent_id"] == agent_id
    assert rotated["fingerprint_sha256"] != created["fingerprint_sha256"]
    assert rotated["diff"]["before"]["fingerprint_sha256"] == created["fingerprint_sha256"]
    assert_consistent(svc, ident_dir, agent_id)
    assert svc.history(agent_id)[-1] == created["fingerprint_sha256"]
    assert gate_refuses(svc, old / "client.crt", old / "client.key")
    assert svc.request_count(ID_EP) == 0  # the ID was kept


def test_check_mode_touches_nothing(svc, ident_dir):
    fresh = run(svc, ident_dir, check_mode=True)
    assert fresh["changed"] and fresh["action"] == "created"
    assert fresh["agent_id"] is None
    assert fresh["diff"]["after"]["agent_id"] == "(requested from the API)"
    assert not ident_dir.exists()

    run(svc, ident_dir)
    before = snapshot(ident_dir)
    svc.clear_faults()
    for kw in ({"rotate": "always"}, {"key_size": 3072}, {"enrollment": "csr"}, {}):
        result = run(svc, ident_dir, check_mode=True, **kw)
        assert result["action"] == ("unchanged" if not kw else "rotated")
        assert result["changed"] is bool(kw)
        assert result["fingerprint_sha256"] == device_fp(ident_dir)
    assert snapshot(ident_dir) == before
    os.chmod(ident_dir / "client.key", 0o640)
    before = snapshot(ident_dir)
    result = run(svc, ident_dir, check_mode=True)
    assert result["action"] == "repaired" and "client.key mode 0640" in result["reason"]
    assert snapshot(ident_dir) == before
    assert sum(svc.faults()["requests"].values()) == 0


def test_wrong_modes_are_repaired_without_network_or_new_key(svc, ident_dir):
    run(svc, ident_dir)
    key_bytes = (ident_dir / "client.key").read_bytes()
    os.chmod(ident_dir / "client.key", 0o644)
    os.chmod(ident_dir, 0o755)
    result = run(None, ident_dir)
    assert result["action"] == "repaired" and result["changed"]
    assert "client.key mode 0644" in result["reason"] and "directory mode 0755" in result["reason"]
    assert (ident_dir / "client.key").read_bytes() == key_bytes
    assert_consistent(svc, ident_dir)


@pytest.mark.parametrize("status", [400, 403, 413])
def test_definitive_refusal_leaves_the_previous_identity_intact(svc, ident_dir, status):
    run(svc, ident_dir)
    before = snapshot(ident_dir)
    registered = dict(svc.registrations())
    svc.inject(UP_EP, "status", status=status, message="refused by test")
    with pytest.raises(TransactionError, match="HTTP %d: refused by test; nothing was changed: "
                                               "the previous identity is intact" % status):
        run(svc, ident_dir, rotate="always")
    after = snapshot(ident_dir)
    assert {k: v[:2] for k, v in after.items() if k != "."} == {k: v[:2] for k, v in before.items() if k != "."}
    assert svc.registrations() == registered
    assert_consistent(svc, ident_dir)


def test_ambiguous_upload_is_rolled_back(svc, ident_dir):
    run(svc, ident_dir)
    agent_id = assert_consistent(svc, ident_dir)
    old_fp = device_fp(ident_dir)
    svc.inject(UP_EP, "accept_then_garble")
    with pytest.raises(TransactionError, match="rollback succeeded") as info:
        run(svc, ident_dir, rotate="always")
    assert not info.value.registry_uncertain
    assert svc.history(agent_id)[-1] != old_fp  # the new certificate did land...
    assert svc.registrations()[agent_id] == old_fp  # ...and the rollback replaced it
    assert_consistent(svc, ident_dir, agent_id)


def test_late_processing_after_a_timeout_is_caught_by_the_journal(svc, ident_dir):
    """Upload times out; the rollback lands first, then the server stores the hung new
    certificate: the journal makes the next run upload the current certificate again."""
    run(svc, ident_dir)
    agent_id = assert_consistent(svc, ident_dir)
    old_fp = device_fp(ident_dir)
    svc.inject(UP_EP, "hang", seconds=1.5)
    with pytest.raises(TransactionError, match="may still store the new one late") as info:
        run(svc, ident_dir, rotate="always", client_kw={"retries": 0, "timeout": 0.5})
    assert info.value.registry_uncertain
    assert (ident_dir / JOURNAL).exists() and device_fp(ident_dir) == old_fp
    deadline = time.monotonic() + 10
    while svc.registrations()[agent_id] == old_fp and time.monotonic() < deadline:
        time.sleep(0.1)
    assert svc.registrations()[agent_id] != old_fp  # the late upload won the race
    fixed = run(svc, ident_dir)
    assert fixed["action"] == "repaired" and fixed["fingerprint_sha256"] == old_fp
    assert_consistent(svc, ident_dir, agent_id)


def test_failed_rollback_leaves_a_journal_and_the_next_run_converges(svc, ident_dir):
    run(svc, ident_dir)
    agent_id = assert_consistent(svc, ident_dir)
    key_bytes = (ident_dir / "client.key").read_bytes()
    svc.inject(UP_EP, "accept_then_garble")
    svc.inject(UP_EP, "status", status=503)  # the rollback's single attempt
    with pytest.raises(TransactionError, match="uploading the previous one again failed") as info:
        run(svc, ident_dir, rotate="always", client_kw={"retries": 0})
    assert info.value.registry_uncertain
    journal = json.loads((ident_dir / JOURNAL).read_text())
    assert journal["id"] == agent_id and journal["registry"] == "uncertain"
    assert (ident_dir / "client.key").read_bytes() == key_bytes
    assert svc.registrations()[agent_id] != device_fp(ident_dir)  # registry and device disagree
    assert gate_refuses(svc, ident_dir / "client.crt", ident_dir / "client.key")

    check = run(svc, ident_dir, check_mode=True)
    assert check["action"] == "repaired" and (ident_dir / JOURNAL).exists()
    fixed = run(svc, ident_dir)
    assert fixed["action"] == "repaired" and "uploading it again" in fixed["reason"]
    assert (ident_dir / "client.key").read_bytes() == key_bytes
    assert_consistent(svc, ident_dir, agent_id)
    assert run(None, ident_dir)["action"] == "unchanged"


def test_ambiguous_creation_reuses_the_journaled_id(svc, ident_dir):
    svc.inject(UP_EP, "accept_then_garble")
    with pytest.raises(TransactionError, match="reuses it instead of requesting a new one"):
        run(svc, ident_dir)
    journal = json.loads((ident_dir / JOURNAL).read_text())
    assert not (ident_dir / "client.key").exists() and not (ident_dir / "client.crt").exists()
    svc.clear_faults()
    result = run(svc, ident_dir)
    assert result["action"] == "created" and result["agent_id"] == journal["id"]
    assert "reusing ID %s" % journal["id"] in result["reason"]
    assert svc.request_count(ID_EP) == 0  # no orphan registration
    assert_consistent(svc, ident_dir, journal["id"])


@pytest.mark.parametrize("status", [404, 410])
def test_creation_refused_for_the_id_says_run_again(svc, ident_dir, status):
    svc.inject(UP_EP, "status", status=status)
    with pytest.raises(TransactionError, match="run again to request a fresh ID"):
        run(svc, ident_dir)
    assert sorted(os.listdir(ident_dir)) == []
    svc.clear_faults()
    assert run(svc, ident_dir)["action"] == "created"
    assert svc.request_count(ID_EP) == 1


def test_expired_reservation_during_creation(service_factory, ident_dir):
    svc = service_factory(reservation_ttl=3)
    svc.inject(UP_EP, "hang", seconds=4)
    with pytest.raises(TransactionError, match="410.*run again to request a fresh ID"):
        run(svc, ident_dir)
    assert not (ident_dir / JOURNAL).exists()


def test_api_failure_before_anything_is_written(svc, ident_dir):
    svc.inject(ID_EP, "status", count=0, status=503)
    with pytest.raises(Exception, match="HTTP 503"):
        run(svc, ident_dir, client_kw={"retries": 1})
    assert os.listdir(ident_dir) == []


# ------------------------------------------------------------------------------------------
# Recovery of interrupted transactions
# ------------------------------------------------------------------------------------------
def _stage(path, key, cert, key_name=".client.key.new", cert_name=".client.crt.new"):
    if key is not None:
        fd = os.open(path / key_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_key_pem(key))
    if cert is not None:
        (path / cert_name).write_bytes(certs.certificate_pem(cert))


def test_recovery_completes_a_staged_pair(svc, ident_dir, keys):
    run(svc, ident_dir)
    agent_id = assert_consistent(svc, ident_dir)
    new_key = keys.get(5)
    new_cert = build_cert(new_key, agent_id)
    _stage(ident_dir, new_key, new_cert)
    result = run(svc, ident_dir)
    assert result["action"] == "rotated" and "interrupted" in result["reason"]
    assert result["fingerprint_sha256"] == certs.fingerprint_sha256(new_cert)
    assert_consistent(svc, ident_dir, agent_id)


def test_recovery_after_the_key_was_renamed(svc, ident_dir, keys):
    run(svc, ident_dir)
    agent_id = assert_consistent(svc, ident_dir)
    new_key = keys.get(5)
    new_cert = build_cert(new_key, agent_id)
    (ident_dir / "client.key").unlink()
    _stage(ident_dir, new_key, None, key_name="client.key")
    _stage(ident_dir, None, new_cert)
    result = run(svc, ident_dir)
    assert result["action"] == "rotated"
    assert device_fp(ident_dir) == certs.fingerprint_sha256(new_cert)
    assert_consistent(svc, ident_dir, agent_id)


def test_recovery_of_an_interrupted_creation(svc, ident_dir, keys):
    agent_id = client_for(svc).request_id()
    ident_dir.mkdir(mode=0o700)
    _stage(ident_dir, keys.get(5), build_cert(keys.get(5), agent_id))
    result = run(svc, ident_dir)
    assert result["action"] == "created" and result["agent_id"] == agent_id
    assert_consistent(svc, ident_dir, agent_id)


@pytest.mark.parametrize("staged", ["key-only", "foreign-id", "mismatched-pair", "garbage", "cert-only-foreign-key"])
def test_incomplete_or_foreign_staging_is_removed(svc, ident_dir, keys, staged):
    run(svc, ident_dir)
    agent_id = assert_consistent(svc, ident_dir)
    before = snapshot(ident_dir)
    if staged == "key-only":
        _stage(ident_dir, keys.get(5), None)
    elif staged == "foreign-id":
        _stage(ident_dir, keys.get(5), build_cert(keys.get(5), "FFFF0001"))
    elif staged == "mismatched-pair":
        _stage(ident_dir, keys.get(5), build_cert(keys.get(6), agent_id))
    elif staged == "garbage":
        (ident_dir / ".client.crt.new").write_bytes(b"garbage")
    else:
        _stage(ident_dir, None, build_cert(keys.get(6), agent_id))
    svc.clear_faults()
    result = run(svc, ident_dir)
    assert result["action"] == "unchanged"
    assert any("removed staged files" in w for w in result["warnings"])
    assert snapshot(ident_dir)["client.key"] == before["client.key"]
    assert snapshot(ident_dir)["client.crt"] == before["client.crt"]
    assert sum(svc.faults()["requests"].values()) == 0
    assert_consistent(svc, ident_dir, agent_id)


def test_stale_journal_of_another_id_is_dropped(svc, ident_dir):
    run(svc, ident_dir)
    (ident_dir / JOURNAL).write_text(json.dumps({"id": "FFFF0001"}))
    svc.clear_faults()
    result = run(svc, ident_dir)
    assert result["action"] == "unchanged" and not (ident_dir / JOURNAL).exists()
    assert sum(svc.faults()["requests"].values()) == 0


def test_leftover_journal_temp_file_is_removed(svc, ident_dir):
    run(svc, ident_dir)
    (ident_dir / ".mtls-pending.json.new").write_text("{")
    result = run(svc, ident_dir)
    assert result["action"] == "unchanged"
    assert_consistent(svc, ident_dir)


def test_check_mode_does_not_recover(svc, ident_dir, keys):
    run(svc, ident_dir)
    agent_id = assert_consistent(svc, ident_dir)
    _stage(ident_dir, keys.get(5), build_cert(keys.get(5), agent_id))
    before = snapshot(ident_dir)
    result = run(svc, ident_dir, check_mode=True)
    assert "interrupted transaction is pending" in result["reason"]
    assert snapshot(ident_dir) == before


# The events of a rotation, in order; a crash (os._exit, like kill -9: no cleanup) after each.
CRASH_POINTS = [
    "create:.client.key.new", "create:.client.crt.new", "rename:.mtls-pending.json",
    "upload-sent", "rename:client.key", "rename:client.crt", "unlink:.mtls-pending.json",
]


@pytest.mark.parametrize("point", ["before-upload", *CRASH_POINTS])
def test_kill_at_any_step_then_rerun_converges(svc, ident_dir, point):
    run(svc, ident_dir)
    agent_id = assert_consistent(svc, ident_dir)
    old_fp = device_fp(ident_dir)

    pid = os.fork()
    if pid == 0:  # child: rotate, dying at the chosen point
        try:
            def crash_after(label, func):
                def wrapper(*args, **kwargs):
                    if label == "before-upload":
                        os._exit(9)
                    func(*args, **kwargs)
                    os._exit(9)
                return wrapper

            def hook(kind, real):
                def wrapper(self, name, *args, **kwargs):
                    if point == "%s:%s" % (kind, args[0] if kind == "rename" else name):
                        real(self, name, *args, **kwargs)
                        os._exit(9)
                    return real(self, name, *args, **kwargs)
                return wrapper

            IdentityDir.create = hook("create", IdentityDir.create)
            IdentityDir.rename = hook("rename", IdentityDir.rename)
            IdentityDir.unlink = hook("unlink", IdentityDir.unlink)
            if point in ("before-upload", "upload-sent"):
                ProvisioningClient.upload_certificate = crash_after(point, ProvisioningClient.upload_certificate)
            run(svc, ident_dir, rotate="always")
        finally:
            os._exit(3)  # reached only if the crash point was never hit
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 9, "crash point %s not reached" % point

    result = run(svc, ident_dir)
    assert result["action"] in ("rotated", "repaired", "unchanged")
    assert_consistent(svc, ident_dir, agent_id)
    if point in ("before-upload", "create:.client.key.new"):
        assert device_fp(ident_dir) == old_fp or result["action"] == "rotated"


# ------------------------------------------------------------------------------------------
def test_concurrent_runs_create_one_identity(svc, ident_dir):
    ids_before = len(svc.reserved_ids())
    results, errors = [], []

    def one():
        try:
            results.append(run(svc, ident_dir))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(r["action"] for r in results) == ["created", "unchanged"]
    assert len({r["agent_id"] for r in results}) == 1
    assert len(svc.reserved_ids()) == ids_before + 1
    assert_consistent(svc, ident_dir)


def test_csr_enrollment(svc, ident_dir):
    result = run(svc, ident_dir, enrollment="csr")
    assert result["action"] == "created"
    agent_id = result["agent_id"]
    cert = certs.load_certificate((ident_dir / "client.crt").read_bytes())
    assert not certs.is_self_signed(cert)
    assert svc.enrollments(agent_id)
    assert svc.whoami(ident_dir / "client.crt", ident_dir / "client.key") == (200, {"id": agent_id})
    assert run(None, ident_dir, enrollment="csr")["action"] == "unchanged"
    back = run(svc, ident_dir)  # back to self-signed: rotates, keeps the ID
    assert back["action"] == "rotated" and back["agent_id"] == agent_id
    assert_consistent(svc, ident_dir, agent_id)


def test_json_bearer_upload(svc, ident_dir):
    client_kw = {"upload_format": "json", "upload_endpoint": "/agent/certificate",
                 "id_field": "agent_id", "headers": {"Authorization": "Bearer " + svc.token}}
    result = run(svc, ident_dir, client_kw=client_kw)
    assert result["action"] == "created"
    assert svc.request_count("/agent/certificate") == 1 and svc.request_count(UP_EP) == 0
    assert_consistent(svc, ident_dir, result["agent_id"])


def test_preassigned_agent_id(svc, ident_dir):
    agent_id = client_for(svc).request_id()
    svc.clear_faults()
    result = run(svc, ident_dir, agent_id=agent_id)
    assert result["action"] == "created" and result["agent_id"] == agent_id
    assert svc.request_count(ID_EP) == 0
    assert_consistent(svc, ident_dir, agent_id)


def test_backup_keeps_previous_pair(svc, ident_dir):
    run(svc, ident_dir)
    old_key = (ident_dir / "client.key").read_bytes()
    old_crt = (ident_dir / "client.crt").read_bytes()
    result = run(svc, ident_dir, rotate="always", backup=True)
    backups = sorted(result["backup_files"])
    assert len(backups) == 2
    crt_bak, key_bak = (p for p in backups)
    assert open(key_bak, "rb").read() == old_key and open(crt_bak, "rb").read() == old_crt
    assert stat.S_IMODE(os.stat(key_bak).st_mode) == 0o600


def test_no_key_material_in_results_or_errors(svc, ident_dir):
    result = run(svc, ident_dir, rotate="always")
    key_pem = (ident_dir / "client.key").read_text()
    body = "".join(key_pem.splitlines()[1:-1])
    text = json.dumps(result)
    assert "PRIVATE" not in text
    for i in range(0, len(body) - 16, 16):
        assert body[i:i + 16] not in text
    svc.inject(UP_EP, "status", status=400)
    with pytest.raises(TransactionError) as info:
        run(svc, ident_dir, rotate="always")
    assert "PRIVATE" not in str(info.value)


