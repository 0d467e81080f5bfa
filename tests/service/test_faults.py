"""Fault injection: every kind fires as described, and is counted."""

from __future__ import annotations

import json
import secrets
import time

import pytest
import requests

from tests.fixtures.gate_client import GateClientError
from tests.fixtures.provisioning_service.faults import (
    HOSTILE_PRESETS,
    FaultBook,
    FaultSpecError,
    normalize,
    parse_cli,
)

GEN = "/generate-orchestrator-id"
UPLOAD = "/upload-orchestrator-certificate"


def get_id(service, timeout: float = 10) -> requests.Response:
    return service.session().get(f"{service.api_url}{GEN}", timeout=timeout)


def test_request_counts_show_what_reached_the_server(svc):
    assert svc.request_count(GEN) == 0
    for _ in range(3):
        get_id(svc)
    assert svc.request_count(GEN) == 3
    assert svc.request_count(UPLOAD) == 0
    svc.clear_faults()
    assert svc.request_count(GEN) == 0


@pytest.mark.parametrize("code", [500, 503, 429])
def test_status_fault_fires_count_times_then_stops(svc, code):
    reserved = len(svc.reserved_ids())
    svc.inject(GEN, "status", count=2, status=code, retry_after=3)
    for _ in range(2):
        response = get_id(svc)
        assert response.status_code == code
        assert response.headers["Retry-After"] == "3"
        assert response.json()["statusCode"] == code
    assert get_id(svc).status_code == 200
    assert svc.fired(GEN, "status") == 2
    assert svc.faults()["pending"] == []
    assert len(svc.reserved_ids()) == reserved + 1  # failed requests reserved nothing


def test_hang_delays_the_answer(svc):
    svc.inject(GEN, "hang", seconds=1.5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        get_id(svc, timeout=0.5)
    assert svc.fired(GEN, "hang") == 1
    svc.inject(GEN, "hang", seconds=1)
    started = time.monotonic()
    assert get_id(svc).status_code == 200
    assert time.monotonic() - started >= 1


def test_stall_times_out_mid_body(svc):
    svc.inject(GEN, "stall", seconds=3, partial=10)
    session = svc.session()
    started = time.monotonic()
    response = session.get(f"{svc.api_url}{GEN}", timeout=1, stream=True)
    assert response.status_code == 200  # headers arrived
    assert int(response.headers["Content-Length"]) > 10
    with pytest.raises(requests.exceptions.ConnectionError):  # read timeout inside the body
        response.content  # noqa: B018
    assert time.monotonic() - started < 2.5
    assert svc.fired(GEN, "stall") == 1


def test_drop_closes_the_connection_mid_body_after_doing_the_work(svc, make_identity):
    ident = make_identity(svc.reserve_id())
    svc.inject(UPLOAD, "drop", partial=5)
    with pytest.raises(requests.exceptions.RequestException) as info:
        svc.upload(ident.agent_id, ident.pem)
    assert isinstance(info.value, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError))
    assert svc.fired(UPLOAD, "drop") == 1
    assert svc.registrations()[ident.agent_id] == ident.fingerprint  # it was stored
    assert svc.upload(ident.agent_id, ident.pem).status_code == 200


def test_malformed_answers_200_with_invalid_json(svc):
    reserved = len(svc.reserved_ids())
    svc.inject(GEN, "malformed")
    response = get_id(svc)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.text)
    assert svc.fired(GEN, "malformed") == 1
    assert len(svc.reserved_ids()) == reserved


@pytest.mark.parametrize("preset", sorted(HOSTILE_PRESETS))
def test_hostile_id_presets(svc, preset):
    svc.inject(GEN, "hostile_id", preset=preset)
    response = get_id(svc)
    assert response.status_code == 200
    body = response.json()
    assert body["statusCode"] == 200
    assert body["data"]["id"] == HOSTILE_PRESETS[preset]
    assert body["data"]["expiresIn"] > 0
    assert svc.fired(GEN, "hostile_id") == 1
    assert HOSTILE_PRESETS[preset] not in svc.reserved_ids()


def test_hostile_id_values(svc):
    assert len(HOSTILE_PRESETS["long"]) >= 10_000
    assert HOSTILE_PRESETS["traversal"] == "../../etc/passwd"
    assert "/CN=" in HOSTILE_PRESETS["dn"]
    assert HOSTILE_PRESETS["newline"].endswith("\n")
    assert not HOSTILE_PRESETS["non_ascii"].isascii()
    svc.inject(GEN, "hostile_id", value="1234E567")
    assert get_id(svc).json()["data"]["id"] == "1234E567"


def test_no_id(svc):
    svc.inject(GEN, "no_id")
    body = get_id(svc).json()
    assert body["statusCode"] == 200
    assert "id" not in body["data"]
    assert svc.fired(GEN, "no_id") == 1


@pytest.mark.parametrize("length", [True, False])
def test_oversized(svc, length):
    svc.inject(GEN, "oversized", length=length)
    response = get_id(svc)
    assert response.status_code == 200
    assert len(response.content) > 1024 * 1024
    if length:
        assert int(response.headers["Content-Length"]) == len(response.content)
    else:
        assert "Content-Length" not in response.headers
        assert response.headers["Transfer-Encoding"] == "chunked"
    assert svc.fired(GEN, "oversized") == 1


def test_accept_then_garble_stores_the_upload(svc, make_identity):
    ident = make_identity(svc.reserve_id())
    svc.inject(UPLOAD, "accept_then_garble")
    response = svc.upload(ident.agent_id, ident.pem)
    with pytest.raises(ValueError):
        response.json()
    assert svc.registrations()[ident.agent_id] == ident.fingerprint
    assert svc.fired(UPLOAD, "accept_then_garble") == 1


def test_reservation_faults_answer_in_the_shape_of_orchestrators_id(svc):
    """The installer's current route has no statusCode envelope: neither have its faults."""
    route = f"{svc.api_url}/orchestrators/id"
    svc.inject("/orchestrators/id", "hostile_id", preset="traversal")
    body = svc.session().get(route, timeout=10).json()
    assert list(body) == ["data"] and body["data"]["id"] == "../../etc/passwd"
    svc.inject("/orchestrators/id", "no_id")
    assert list(svc.session().get(route, timeout=10).json()["data"]) == ["expiresAt", "expiresIn"]
    value = secrets.token_hex(4).upper()
    svc.inject("/orchestrators/id", "fixed_id", value=value)
    assert svc.session().get(route, timeout=10).json()["data"]["id"] == value
    assert svc.reserved_ids()[-1] == value
    assert svc.fired("/orchestrators/id") == 3


def test_heartbeat_route_takes_faults(svc):
    svc.inject("/agent/heartbeat", "status", status=503)
    assert svc.heartbeat("0A1B2C3D")[0] == 503
    assert svc.heartbeat("0A1B2C3D", listener="gate")[0] == 404  # one fault, one request
    assert svc.request_count("/agent/heartbeat") == 2  # both listeners count


def test_fixed_id_reserves_that_value(service, make_identity):
    service.inject(GEN, "fixed_id", value="1234E567")
    assert get_id(service).json()["data"]["id"] == "1234E567"
    assert service.reserved_ids() == ["1234E567"]
    ident = make_identity("1234E567")
    assert service.upload("1234E567", ident.pem).status_code == 200


def test_rate_fails_about_that_share_until_cleared(svc):
    reserved = len(svc.reserved_ids())
    svc.inject(GEN, "status", count=None, status=503, rate=0.5)
    codes = [get_id(svc).status_code for _ in range(40)]
    assert set(codes) == {200, 503}  # P(all the same) = 2^-39
    assert svc.fired(GEN, "status") == codes.count(503)
    assert len(svc.reserved_ids()) == reserved + codes.count(200)
    svc.clear_faults()
    assert all(get_id(svc).status_code == 200 for _ in range(5))


def test_wildcard_applies_to_every_endpoint_but_healthz(svc, make_identity):
    svc.inject("*", "status", count=2, status=502)
    session = svc.session()
    assert session.get(f"{svc.api_url}/healthz", timeout=10).status_code == 200
    assert get_id(svc).status_code == 502
    ident = make_identity("0A1B2C3D")
    assert svc.upload(ident.agent_id, ident.pem).status_code == 502
    assert get_id(svc).status_code == 200
    assert svc.faults()["fired"] == {GEN: {"status": 1}, UPLOAD: {"status": 1}}


def test_faults_on_the_gate(svc, registered):
    """Through nginx: faults fire on the gate's endpoints and every request is counted."""
    ident = registered()
    svc.inject("/whoami", "status", status=503)
    assert svc.whoami(ident.crt_path, ident.key_path)[0] == 503
    assert svc.whoami(ident.crt_path, ident.key_path) == (200, {"id": ident.agent_id})
    assert svc.request_count("/whoami") == 2
    svc.inject("/ws", "status", status=503)
    assert svc.ws_upgrade(ident.crt_path, ident.key_path).status == 503
    assert svc.ws_accepts(ident.crt_path, ident.key_path)
    assert svc.request_count("/ws") == 2
    svc.inject("/socket.io/", "malformed", body="not engine.io")
    with pytest.raises(GateClientError, match="no Engine.IO OPEN packet"):
        svc.socketio_connect(ident.crt_path, ident.key_path, "polling")
    assert svc.socketio_accepts(ident.crt_path, ident.key_path, "polling")
    assert svc.request_count("/socket.io/") == 4  # the faulted open, then open, CONNECT, its answer


def test_upgrade_endpoints_take_only_faults_that_replace_the_answer(svc, registered):
    """A drop or a stall has no meaning inside a WebSocket exchange: refused for /ws, and a
    wildcard one leaves the upgrade endpoints alone while it hits the others."""
    for kind in ("drop", "stall", "accept_then_garble", "oversized"):
        with pytest.raises(FaultSpecError, match="takes only"):
            normalize({"endpoint": "/ws", "kind": kind})
    ident = registered()
    svc.inject("*", "drop", count=0)
    assert svc.ws_accepts(ident.crt_path, ident.key_path)
    assert svc.socketio_accepts(ident.crt_path, ident.key_path, "websocket")
    with pytest.raises(requests.exceptions.RequestException):  # the answer cut short (via nginx)
        svc.whoami(ident.crt_path, ident.key_path)


def test_cli_faults(service_factory):
    svc = service_factory(faults=[f"{GEN}=status:503:x2:retry_after=1", f"{GEN}=no_id"])
    assert [get_id(svc).status_code for _ in range(2)] == [503, 503]
    assert "id" not in get_id(svc).json()["data"]
    assert "id" in get_id(svc).json()["data"]
    assert svc.faults()["fired"] == {GEN: {"status": 2, "no_id": 1}}


def test_fault_control_is_protected_and_validated(svc):
    url = f"{svc.api_url}/_faults"
    session = svc.session()
    spec = {"endpoint": GEN, "kind": "status"}
    assert session.post(url, json=spec, timeout=10).status_code == 403
    wrong = {"Authorization": "Bearer wrong"}
    assert session.post(url, json=spec, headers=wrong, timeout=10).status_code == 403
    assert session.delete(url, headers=wrong, timeout=10).status_code == 403
    auth = svc.auth_headers()
    for bad in (
        {"endpoint": "/nope", "kind": "status"},
        {"endpoint": GEN, "kind": "explode"},
        {"endpoint": GEN, "kind": "status", "status": 42},
        {"endpoint": GEN, "kind": "status", "rate": 2},
        {"endpoint": GEN, "kind": "hang", "colour": "red"},
        {"endpoint": UPLOAD, "kind": "fixed_id", "value": "0A1B2C3D"},
    ):
        response = session.post(url, json=bad, headers=auth, timeout=10)
        assert response.status_code == 400, bad
    assert svc.faults()["pending"] == []
    assert get_id(svc).status_code == 200


# -- the spec parser and the fault book, without a server ------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{GEN}=status:503:x2", {"kind": "status", "status": 503, "count": 2}),
        (f"{GEN}=status:503:retry_after=5", {"status": 503, "retry_after": "5", "count": 1}),
        ("*=hang:10", {"endpoint": "*", "kind": "hang", "seconds": 10.0}),
        (f"{GEN}=status:503:rate=0.2", {"rate": 0.2, "count": None}),
        (f"{GEN}=hostile_id:dn", {"preset": "dn"}),
        (f"{GEN}=hostile_id:ABC", {"value": "ABC"}),
        (f"{UPLOAD}=drop:partial=7:x*", {"partial": 7, "count": None}),
        (f"{GEN}=oversized:length=false", {"length": False, "size": 2 * 1024 * 1024}),
        (f"{GEN}=fixed_id:1234E567", {"value": "1234E567"}),
        ('{"endpoint": "/whoami", "kind": "malformed", "count": 3}', {"count": 3}),
    ],
)
def test_parse_cli(text, expected):
    spec = parse_cli(text)
    for key, value in expected.items():
        assert spec[key] == value, key


@pytest.mark.parametrize("text", ["status", f"{GEN}=", f"{GEN}=status:abc:def", "/x=status", f"{GEN}=status:x-1"])
def test_parse_cli_refuses(text):
    with pytest.raises(FaultSpecError):
        parse_cli(text)


def test_fault_book_order_and_counting():
    book = FaultBook()
    book.add({"endpoint": "*", "kind": "no_id"})
    book.add({"endpoint": GEN, "kind": "malformed", "count": 2})
    taken = [book.take(GEN) for _ in range(4)]
    assert [(f or {}).get("kind") for f in taken] == ["malformed", "malformed", "no_id", None]
    assert book.take("/healthz") is None
    assert book.snapshot()["fired"] == {GEN: {"malformed": 2, "no_id": 1}}
