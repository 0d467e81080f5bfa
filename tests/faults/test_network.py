"""Fault matrix, network and API: what the module does when the provisioning API misbehaves.

Every case runs the real module (its own Python process, as on a device) against the real
reference service with a fault injected, then checks four things: the module's result (a
clear, specific error or success), the device's files (previous identity byte-for-byte intact
or a complete registered pair, nothing staged left), the registry (no duplicate, no orphaned
registration) and that nothing printed holds key material (Device.run scans every output).
"""
from __future__ import annotations

import json
import secrets
import subprocess

import pytest

from tests.fixtures import module_runner as h

ID_EP = "/generate-orchestrator-id"
UPLOAD_EP = "/upload-orchestrator-certificate"
JSON_EP = "/agent/certificate"


def assert_no_identity(dev) -> None:
    """A failed creation wrote nothing: no key, no certificate, nothing staged, no journal."""
    if dev.path.exists():
        assert sorted(p.name for p in dev.path.iterdir()) == [], list(dev.path.iterdir())


def assert_failed(result, *words) -> None:
    assert result.failed, result
    msg = result.msg.lower()
    for word in words:
        assert word.lower() in msg, f"{word!r} not in {result.msg!r}"


# ----------------------------------------------------------------------------- connection

@pytest.mark.parametrize("phase", ["create", "rotate"])
def test_connection_refused(device, registry_delta, phase):
    """Closed port: definitive failure after the retries, endpoint named, nothing touched."""
    if phase == "rotate":
        device.seed()
    before = device.state()
    url = f"https://127.0.0.1:{h.closed_port()}"
    result = device.run(api_url=url, rotate="always" if phase == "rotate" else "auto", retries=1)
    endpoint = ID_EP if phase == "create" else UPLOAD_EP
    assert_failed(result, "cannot connect", f"127.0.0.1:{url.rsplit(':', 1)[1]}{endpoint}")
    if phase == "create":
        assert_no_identity(device)
        assert registry_delta() == ([], {})
    else:
        device.assert_intact(before)
        device.assert_registered()


def test_dns_failure(device, registry_delta):
    """A name that cannot resolve (*.invalid): clear error, nothing written."""
    result = device.run(api_url="https://fleet-api.invalid", retries=0)
    assert_failed(result, "cannot connect", "fleet-api.invalid")
    assert_no_identity(device)
    assert registry_delta() == ([], {})


def test_connect_timeout(device, registry_delta):
    """A loopback listener whose accept queue is full never answers the SYN: the connect
    times out within ``timeout`` (bounded run time, not a hang), reported as such."""
    hole = h.BlackholeListener()
    try:
        result = device.run(api_url=f"https://127.0.0.1:{hole.port}", timeout=1, retries=1)
    finally:
        hole.close()
    assert_failed(result, "timed out", ID_EP)
    # 2 attempts x 1 s + one backoff (<= 1 s) + start-up; without a connect timeout the
    # kernel's SYN retries alone last over two minutes
    assert result.elapsed < 20, result
    assert_no_identity(device)
    assert registry_delta() == ([], {})


def test_read_timeout_mid_body_on_id(device, svc, registry_delta):
    """Headers and half of the ID answer, then silence: the read times out (no hang), the
    half answer is not used, nothing is written; a re-run (fault gone) creates normally."""
    svc.inject(ID_EP, "stall", seconds=60)
    result = device.run(timeout=1, retries=1)
    assert_failed(result, ID_EP)
    assert result.elapsed < 30, result
    assert_no_identity(device)
    ids, regs = registry_delta()
    assert regs == {}
    assert device.run(timeout=5).result["action"] == "created"
    device.assert_registered()


def test_dropped_mid_response_on_id(device, svc, registry_delta):
    """Connection closed in the middle of the ID answer: error names the drop; no identity."""
    svc.inject(ID_EP, "drop")
    result = device.run(retries=1)
    if result.failed:
        assert_failed(result, "dropped", ID_EP)
        assert_no_identity(device)
        assert registry_delta()[1] == {}
        result = device.run()
    assert result.result["action"] == "created", result
    device.assert_registered()
    assert list(registry_delta()[1]) == [device.agent_id]


# ----------------------------------------------------------------------------- retries

def test_500_then_success(device, svc, registry_delta):
    svc.inject(ID_EP, "status", status=500)
    svc.inject(UPLOAD_EP, "status", status=502)
    result = device.run(retries=1)
    assert not result.failed and result.result["action"] == "created", result
    assert svc.request_count(ID_EP) == 2 and svc.request_count(UPLOAD_EP) == 2
    device.assert_registered()
    ids, regs = registry_delta()
    assert list(regs) == [device.agent_id]
    # the failed ID request reserved nothing (a 500 before the handler); one ID used
    assert ids == [device.agent_id]


def test_503_retry_after_honoured(device, svc):
    """503 with Retry-After: 3 — the next attempt waits 3 s (the backoff alone is <= 1 s)."""
    svc.inject(ID_EP, "status", status=503, retry_after="3")
    result = device.run(retries=1)
    assert not result.failed, result
    assert svc.request_count(ID_EP) == 2
    assert result.elapsed >= 3.0, result
    device.assert_registered()


def test_429_retried_with_retry_after(device, svc):
    svc.inject(ID_EP, "status", status=429, retry_after="1")
    svc.inject(UPLOAD_EP, "status", status=429, retry_after="1")
    result = device.run(retries=1)
    assert not result.failed, result
    assert svc.request_count(ID_EP) == 2 and svc.request_count(UPLOAD_EP) == 2
    assert result.elapsed >= 2.0, result
    device.assert_registered()


def test_5xx_exhausted_on_id(device, svc, registry_delta):
    """Every attempt 500: fails after retries+1 requests with the server's reason."""
    svc.inject(ID_EP, "status", status=500, count=0, message="database unavailable")
    result = device.run(retries=2)
    assert_failed(result, "HTTP 500", "database unavailable", ID_EP)
    assert svc.request_count(ID_EP) == 3
    assert_no_identity(device)
    assert registry_delta() == ([], {})


@pytest.mark.parametrize("status", [400, 403, 404])
def test_4xx_on_id_not_retried(device, svc, registry_delta, status):
    svc.inject(ID_EP, "status", status=status, count=0, message=f"refused by policy {status}")
    result = device.run(retries=3)
    assert_failed(result, f"HTTP {status}", f"refused by policy {status}", ID_EP)
    assert svc.request_count(ID_EP) == 1
    assert_no_identity(device)
    assert registry_delta() == ([], {})


def test_400_on_upload_rotation_not_retried(device, svc):
    """A real 400 on upload during rotation: one request, reason shown, previous identity kept."""
    device.provision()
    before, fp = device.state(), device.fingerprint
    svc.inject(UPLOAD_EP, "status", status=400, message="certificate rejected: CN not allowed")
    result = device.run(rotate="always", retries=3)
    assert_failed(result, "HTTP 400", "CN not allowed", UPLOAD_EP, "intact")
    assert svc.request_count(UPLOAD_EP) == 1
    device.assert_intact(before)
    assert device.fingerprint == fp
    device.assert_registered()


def test_403_wrong_token_not_retried(device, svc):
    """JSON upload with a wrong bearer token: the service's real 403 (the real cloud's
    ``{"detail": "Forbidden"}``), one request, its reason shown, the token never printed."""
    device.seed()
    before = device.state()
    wrong = "Bearer " + secrets.token_urlsafe(24)
    result = device.run(rotate="always", upload_format="json", upload_endpoint=JSON_EP,
                        id_field="agent_id", headers={"Authorization": wrong}, retries=3)
    assert_failed(result, "HTTP 403: Forbidden", JSON_EP)
    assert svc.request_count(JSON_EP) == 1
    h.assert_no_secrets(result.output, tokens=[wrong, wrong.split()[1], svc.token])
    device.assert_intact(before)
    device.assert_registered()


def test_404_unknown_preassigned_id_not_retried(device, svc, registry_delta):
    """agent_id the registry never reserved: the real 404, one upload, nothing written."""
    unknown = secrets.token_hex(4).upper()
    result = device.run(agent_id=unknown, retries=3)
    assert_failed(result, "HTTP 404", "unknown ID", unknown)
    assert svc.request_count(UPLOAD_EP) == 1 and svc.request_count(ID_EP) == 0
    assert_no_identity(device)
    assert registry_delta() == ([], {})


def test_reason_with_secrets_is_sanitized(device, svc):
    """A server reason echoing the bearer token and a private key block is shown sanitized."""
    device.seed()
    token = "Bearer " + secrets.token_urlsafe(24)
    leaked_key = h.key_pem(h.new_key(2048)).decode()
    svc.inject(JSON_EP, "status", status=400,
               message=f"bad request from {token.split()[1]} with\n{leaked_key}")
    result = device.run(rotate="always", upload_format="json", upload_endpoint=JSON_EP,
                        id_field="agent_id", headers={"Authorization": token}, scan=False)
    assert_failed(result, "HTTP 400", "bad request from")
    h.assert_no_secrets(result.output, keys=[leaked_key.encode(), *device.keys_seen],
                        tokens=[token.split()[1], svc.token])
    device.assert_registered()


# ----------------------------------------------------------------------------- bad answers

@pytest.mark.parametrize(("kind", "params", "words"), [
    ("malformed", {}, ["not JSON"]),
    ("malformed", {"body": "[1, 2, 3]"}, ["not a JSON object"]),
    ("malformed", {"body": '{"statusCode": 200, "data": "07048933"}'}, ["no data object"]),
    ("no_id", {}, ["no id"]),
], ids=["malformed-json", "json-array", "data-not-object", "no-data-id"])
def test_unusable_id_answer(device, svc, registry_delta, kind, params, words):
    svc.inject(ID_EP, kind, **params)
    result = device.run(retries=2)
    assert_failed(result, ID_EP, *words)
    assert svc.request_count(ID_EP) == 1  # a 200 that cannot be understood is not retried
    assert_no_identity(device)
    assert registry_delta()[1] == {}


@pytest.mark.parametrize("preset", ["traversal", "dn", "long", "newline", "empty", "non_ascii"])
def test_hostile_id(device, svc, registry_delta, tmp_path, preset):
    """An ID that would be a path, a DN injection, overlong, multi-line, empty or non-ASCII
    is refused before it is used anywhere: no file written (in or outside the directory), no
    upload, and the 10 kB value is not echoed in full."""
    before_tree = device.tree()
    svc.inject(ID_EP, "hostile_id", preset=preset)
    result = device.run()
    assert_failed(result, "does not match id_pattern", ID_EP)
    assert len(result.msg) < 600, len(result.msg)
    assert svc.request_count(UPLOAD_EP) == 0
    assert_no_identity(device)
    changes = h.diff_snapshots(before_tree, device.tree())
    assert set(changes) <= {"home", "home/.mtls"}, changes  # at most the empty 0700 dir
    assert not (tmp_path / "etc").exists()
    assert registry_delta()[1] == {}


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "chunked"])
def test_oversized_answer_refused(device, svc, registry_delta, with_length):
    """A 64 MiB answer is refused after at most 1 MiB, without reading it into memory."""
    svc.inject(ID_EP, "oversized", size=64 * 1024 * 1024, length=with_length)
    result = device.run(retries=2, measure=True)
    assert_failed(result, "larger than 1048576 bytes", ID_EP)
    assert svc.request_count(ID_EP) == 1
    # the module's whole process stays far below the 64 MiB it would hold had it read it all
    assert result.rusage["maxrss_kib"] < 110 * 1024, result.rusage
    assert_no_identity(device)
    assert registry_delta()[1] == {}


# ----------------------------------------------------------------------------- ambiguous uploads

def test_accept_then_garble_on_create_converges(device, svc, registry_delta):
    """The upload is stored but the answer is garbage: the module cannot know, keeps a
    journal with the ID, writes no identity; the re-run reuses that ID (no second
    registration, no new ID) and converges."""
    svc.inject(UPLOAD_EP, "accept_then_garble")
    result = device.run()
    assert_failed(result, "not JSON", UPLOAD_EP)
    assert result.result.get("registry_uncertain") is True, result
    assert not device.key_path.exists() and not device.cert_path.exists()
    assert h.leftovers(device.path, allow_journal=True) == []
    assert h.journal_files(device.path) == [".mtls-pending.json"]
    ids, regs = registry_delta()
    assert len(ids) == 1 and set(regs) <= set(ids)

    again = device.run()
    assert not again.failed and again.result["action"] == "created", again
    assert device.agent_id == ids[0]
    assert svc.request_count(ID_EP) == 1  # the journaled ID was reused
    device.assert_registered()
    assert h.journal_files(device.path) == []
    assert registry_delta() == (ids, {ids[0]: device.fingerprint})


@pytest.mark.parametrize(("kind", "params"), [
    ("accept_then_garble", {}),
    ("drop", {}),
    ("stall", {"seconds": 20}),
    ("status", {"status": 500, "count": 2}),
], ids=["garbled-2xx", "dropped", "read-timeout", "5xx-after-retries"])
def test_ambiguous_upload_on_rotation_rolls_back(device, svc, kind, params):
    """The registry may hold the new certificate (it did store it, for the first three):
    the module uploads the previous one again, so registry == device, previous identity kept."""
    device.seed()
    before, old_fp, agent = device.state(), device.fingerprint, device.agent_id
    svc.inject(UPLOAD_EP, kind, **params)
    result = device.run(rotate="always", timeout=2, retries=1)
    assert_failed(result, "rollback succeeded", UPLOAD_EP)
    device.assert_intact(before)
    assert svc.registrations()[agent] == old_fp
    device.assert_registered()
    assert h.journal_files(device.path) == []
    if kind != "status":
        assert len(svc.history(agent)) >= 1  # the new certificate really was stored meanwhile


def test_ambiguous_upload_and_failed_rollback_converge(device, svc):
    """Garbled 2xx (new cert stored), then the rollback upload fails too: the registry holds
    a certificate the device does not have. The journal says so; the re-run re-uploads the
    device's certificate (no new key, no new ID) and device and registry agree again."""
    device.provision()
    before, old_fp, agent = device.state(), device.fingerprint, device.agent_id
    svc.inject(UPLOAD_EP, "accept_then_garble")
    svc.inject(UPLOAD_EP, "status", status=503, count=2)
    result = device.run(rotate="always", retries=1)
    assert_failed(result, "failed too", UPLOAD_EP)
    assert result.result.get("registry_uncertain") is True
    device.assert_intact(before, journal_ok=True)
    assert h.journal_files(device.path) == [".mtls-pending.json"]
    assert svc.registrations()[agent] != old_fp  # the garbled upload landed
    svc.clear_faults()

    again = device.run()
    assert not again.failed and again.result["action"] == "repaired", again
    assert device.fingerprint == old_fp and svc.registrations()[agent] == old_fp
    assert svc.request_count(ID_EP) == 0
    device.assert_registered()
    assert device.run().result["action"] == "unchanged"


def test_5xx_after_retries_on_create_journal_then_converge(device, svc, registry_delta):
    svc.inject(UPLOAD_EP, "status", status=500, count=2)
    result = device.run(retries=1)
    assert_failed(result, "HTTP 500", UPLOAD_EP)
    assert h.journal_files(device.path) == [".mtls-pending.json"]
    assert not device.cert_path.exists()
    again = device.run()
    assert again.result["action"] == "created", again
    device.assert_registered()
    ids, regs = registry_delta()
    assert ids == [device.agent_id] and list(regs) == [device.agent_id]


# ----------------------------------------------------------------------------- reservation expiry

@pytest.fixture(scope="module")
def short_ttl_service(tmp_path_factory):
    from tests.fixtures.servicectl import ProvisioningService

    with ProvisioningService(tmp_path_factory.mktemp("ttl-service"), reservation_ttl=3) as svc:
        yield svc


def test_reservation_expired_before_upload(make_device, short_ttl_service):
    """The ID reservation (TTL 3 s) expires while the upload hangs 4 s on the server (the
    device sent it in time): the real 410 is reported with the advice to run again; nothing is
    written, no journal; the re-run requests a fresh ID and the expired one stays unregistered."""
    svc = short_ttl_service
    svc.restart(reservation_ttl=3)
    svc.clear_faults()
    dev = make_device(svc)
    ids_before = set(svc.reserved_ids())
    svc.inject(UPLOAD_EP, "hang", seconds=4)
    result = dev.run(timeout=10)
    assert_failed(result, "HTTP 410", "expired", "run again")
    assert_no_identity(dev)
    expired = [i for i in svc.reserved_ids() if i not in ids_before]
    assert len(expired) == 1
    assert svc.request_count(UPLOAD_EP) == 1

    # a usual TTL for the re-run, so a slow machine cannot expire the fresh ID as well
    svc.restart(reservation_ttl=600)
    again = dev.run(timeout=10)
    assert again.result["action"] == "created", again
    assert dev.agent_id != expired[0]
    assert expired[0] not in svc.registrations()
    dev.assert_registered()
    assert [i for i in svc.reserved_ids() if i not in ids_before] == [expired[0], dev.agent_id]


# A slow device: the module's process stalls between the ID reservation and staging the
# certificate it uploads (a device needing longer for its key than the API's reservation lasts).
STALL_BEFORE_THE_CERTIFICATE = "op=open,match=.client.crt.new,nth=1,times=%d,seconds=3.5"


def _run_stalling(make_device, svc, stalls):
    """A new device against reservations lasting 3 s, stalling 3.5 s ``stalls`` times: (device,
    the IDs reserved before, the run's result)."""
    svc.restart(reservation_ttl=3)
    svc.clear_faults()
    dev = make_device(svc)
    ids_before = set(svc.reserved_ids())
    return dev, ids_before, dev.run(hooks={"FLEET_FAULTS_PAUSE": STALL_BEFORE_THE_CERTIFICATE % stalls})


def test_a_reservation_lapsed_before_the_upload_is_replaced_once(make_device, short_ttl_service):
    """The reservation (TTL 3 s) lapses, by the module's own monotonic clock, while the device
    stalls 3.5 s: it reserves once more and uploads against the fresh ID, never against the
    lapsed one (no 410 on the way); the lapsed ID stays unregistered."""
    svc = short_ttl_service
    dev, ids_before, result = _run_stalling(make_device, svc, stalls=1)
    assert not result.failed and result.result["action"] == "created", result
    lapsed, fresh = [i for i in svc.reserved_ids() if i not in ids_before]
    assert dev.agent_id == fresh and lapsed not in svc.registrations()
    assert svc.request_count(ID_EP) == 2 and svc.request_count(UPLOAD_EP) == 1
    assert "the reservation of ID %s" % lapsed in str(result.result.get("warnings")), result
    dev.assert_registered()


def test_a_second_lapsed_reservation_uploads_nothing(make_device, short_ttl_service):
    """Both reservations lapse while the device stalls: the run fails before any upload, with
    nothing written; neither ID is registered."""
    svc = short_ttl_service
    dev, ids_before, result = _run_stalling(make_device, svc, stalls=2)
    assert_failed(result, "both lapsed", "nothing was uploaded")
    assert_no_identity(dev)
    reserved = [i for i in svc.reserved_ids() if i not in ids_before]
    assert len(reserved) == 2 and not set(reserved) & set(svc.registrations())
    assert svc.request_count(UPLOAD_EP) == 0


def test_upload_timeout_with_late_server_processing_converges(device, svc):
    """Both upload attempts time out while the server holds them (hang 3 s > timeout 1 s)
    and then stores the new certificate late, after the module's rollback: the journal kept
    by the module makes the next run upload the device's certificate again."""
    device.seed()
    before, old_fp, agent = device.state(), device.fingerprint, device.agent_id
    svc.inject(UPLOAD_EP, "hang", seconds=3, count=2)
    result = device.run(rotate="always", timeout=1, retries=1)
    assert_failed(result, "no answer within", UPLOAD_EP)
    assert result.result.get("registry_uncertain") is True, result
    device.assert_intact(before, journal_ok=True)
    assert h.journal_files(device.path) == [".mtls-pending.json"]
    new_fp = json.loads((device.path / ".mtls-pending.json").read_text())["fingerprint_sha256"]
    stored = f"registered certificate {new_fp[:16]} for {agent}"
    # both held attempts are stored late (the second one may land well after the first)
    h.wait_for(lambda: svc.log_text().count(stored) >= 2, timeout=20, what="both late uploads to land")
    assert svc.registrations()[agent] != old_fp  # the late upload landed after the rollback
    again = device.run()
    assert again.result["action"] == "repaired", again
    assert device.fingerprint == old_fp
    device.assert_registered()


def test_trickling_answer_is_bounded_by_the_timeout(device, svc, registry_delta):
    """A server that sends its (valid) answer one byte every 0.5 s never lets a single read
    time out: the request must still end within a bound derived from ``timeout`` (a total
    deadline per attempt), not after len(body) x 0.5 s — a slow or hostile server must not
    hold a device's run (and a fleet's serial batch) for minutes."""
    body = b'{"statusCode": 200, "data": {"id": "0A1B2C3D", "expiresIn": 600, "pad": "' + b"x" * 60 + b'"}}'
    server = h.TrickleServer(svc.state_dir, body, interval=0.5)  # ~60 s for the whole answer
    try:
        try:
            result = device.run(api_url=server.url, timeout=2, retries=0, run_timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("the module was still reading a trickling answer after 20 s (timeout=2, retries=0)")
    finally:
        server.close()
    assert result.failed, result
    assert result.elapsed < 15, result
    assert_no_identity(device)


ENROLL_EP = "/orchestrators/enroll"


def test_csr_enrollment_garbled_answer_then_converges(device, svc, registry_delta):
    """enrollment=csr: the service signs and records a certificate but its answer is garbage.
    Nothing is written but the journal; the re-run enrolls again under the same ID (no new
    ID), and the gate accepts the device's certificate."""
    svc.inject(ENROLL_EP, "accept_then_garble")
    result = device.run(enrollment="csr")
    assert_failed(result, "not JSON", ENROLL_EP)
    assert not device.key_path.exists() and not device.cert_path.exists()
    assert h.journal_files(device.path) == [".mtls-pending.json"]
    ids, _ = registry_delta()
    assert len(ids) == 1 and len(svc.enrollments(ids[0])) == 1

    again = device.run(enrollment="csr")
    assert not again.failed and again.result["action"] == "created", again
    assert device.agent_id == ids[0] and svc.request_count(ID_EP) == 1
    assert svc.whoami(device.cert_path, device.key_path) == (200, {"id": ids[0]})
    assert h.journal_files(device.path) == [] and h.leftovers(device.path) == []
    assert device.run(enrollment="csr").result["action"] == "unchanged"
