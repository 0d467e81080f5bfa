"""The cloud's view of running agents: ``POST /agent/heartbeat`` on both listeners, fed only by
Socket.IO sessions the gate validated, with the stand-in agent (``fixtures/agent_daemon.py``)
running as the stock agent runs: the real cloud's observed behaviour (REFERENCE.md, "What the
cloud knows about a running agent").

Waits are bounded polls on the agent's event log and on the route; nothing sleeps a fixed time.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import time

import pytest

from tests.fixtures.servicectl import SOCKETIO_REFUSAL, ServiceError, key_pem, write_identity

LISTENERS = ("api", "gate")
# The cloud's answer, in its order (the stock agent's heartbeat fields).
FIELDS = [
    "agent_id", "cpu_usage", "memory_usage", "memory_total", "disk_usage", "disk_total", "uptime",
    "status", "timestamp",
]  # fmt: skip


def home_with(tmp_path: pathlib.Path, ident, name: str = "agent-home") -> pathlib.Path:
    """A HOME whose ~/.mtls holds ``ident``'s pair (rewritten in place when called again)."""
    home = tmp_path / name
    write_identity(home / ".mtls", ident.cert, ident.key)
    return home


def register(service, make_identity):
    ident = make_identity(service.reserve_id())
    assert service.upload(ident.agent_id, ident.pem).status_code == 200
    return ident


def not_found(agent_id: str) -> tuple[int, dict[str, str]]:
    return 404, {"detail": f"No heartbeat data found for agent {agent_id}"}


def payload(agent_id: str, **changes) -> dict:
    sent = {
        "agent_id": agent_id, "cpu_usage": 1.5, "memory_usage": 0.7, "memory_total": 3.8,
        "disk_usage": 12.5, "disk_total": 58.0, "uptime": 7, "status": "active",
        "timestamp": "2026-12-05T10:00:00.000001",
    }  # fmt: skip
    return {**sent, **changes}


def stored_beat(svc, agent, agent_id: str, after: float, timeout: float = 10.0) -> tuple[dict, dict]:
    """Wait until the cloud's entry for ``agent_id`` is a heartbeat the agent's current process
    sent after epoch ``after``; returns (the cloud's entry, the agent's ``heartbeat`` event)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = svc.heartbeat(agent_id)
        if status == 200:
            for event in agent.events.read("heartbeat", agent.pid):
                if event["time"] > after and event["sent"]["timestamp"] == body["timestamp"]:
                    return body, event
        if time.monotonic() > deadline:
            raise ServiceError(f"no heartbeat of pid {agent.pid} after {after} stored: {status} {body}")
        time.sleep(0.02)


def active(status, body) -> bool:
    return status == 200 and body["status"] == "active"


def inactive(status, body) -> bool:
    return status == 200 and body["status"] == "inactive"


# -- the route -----------------------------------------------------------------------------
def test_the_route_answers_the_clouds_shapes_on_both_listeners_from_one_store(svc, registered, tmp_path, start_agent):
    ident = registered()
    for listener in LISTENERS:
        for token in ("", "wrong-token"):  # the middleware's answer, whatever the ID
            assert svc.heartbeat(ident.agent_id, token=token, listener=listener) == (403, {"detail": "Forbidden"})
        assert svc.heartbeat(ident.agent_id, listener=listener) == not_found(ident.agent_id)

    agent = start_agent(svc, home_with(tmp_path, ident))
    agent.wait_for("heartbeat")
    status, body = svc.wait_for_heartbeat(ident.agent_id, active)
    assert list(body) == FIELDS
    assert body["agent_id"] == ident.agent_id
    for name in ("cpu_usage", "memory_usage", "memory_total", "disk_usage", "disk_total"):
        assert isinstance(body[name], float), (name, body)
    assert isinstance(body["uptime"], int) and body["uptime"] >= 0
    assert datetime.datetime.fromisoformat(body["timestamp"]).tzinfo is None  # the agent's local time
    for token in ("", "wrong-token"):
        assert svc.heartbeat(ident.agent_id, token=token, listener="gate") == (403, {"detail": "Forbidden"})

    agent.stop()  # a frozen entry: both listeners must show the very same one
    _, api_view = svc.wait_for_heartbeat(ident.agent_id, inactive)
    assert svc.heartbeat(ident.agent_id, listener="gate") == (200, api_view)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"{agent_id", "json_invalid"),
        (b'{"agent_id": "\xff"}', "json_invalid"),
        (b"", "missing"),
        (b'{"id": "0A1B2C3D"}', "missing"),
        (b'["0A1B2C3D"]', "model_attributes_type"),
        (b'{"agent_id": 1234}', "string_type"),
        (b'{"agent_id": null}', "string_type"),
    ],
    ids=["not-json", "not-utf8", "empty", "no-agent_id", "array", "number", "null"],
)
@pytest.mark.parametrize("listener", LISTENERS)
def test_a_malformed_body_gets_fastapis_422(svc, listener, body, kind):
    base = {"api": svc.api_url, "gate": svc.gate_url}[listener]
    with svc.session() as session:
        response = session.post(
            f"{base}/agent/heartbeat", data=body, timeout=10,
            headers={**svc.auth_headers(), "Content-Type": "application/json"},
        )  # fmt: skip
    assert response.status_code == 422, response.text
    answer = response.json()
    assert list(answer) == ["detail"] and isinstance(answer["detail"], list), answer
    assert [error["type"] for error in answer["detail"]] == [kind]
    assert {"loc", "msg", "input"} <= set(answer["detail"][0])


def test_a_private_key_in_the_body_is_refused_unparsed(svc, registered):
    ident = registered()
    body = json.dumps({"agent_id": ident.agent_id, "key": key_pem(ident.key).decode()}).encode()
    with svc.session() as session:
        response = session.post(f"{svc.api_url}/agent/heartbeat", data=body, headers=svc.auth_headers(), timeout=10)
    assert response.status_code == 400 and "private key" in response.json()["detail"], response.text
    assert b"PRIVATE KEY" not in svc.log_path.read_bytes()


# -- what feeds the store --------------------------------------------------------------------
def test_a_session_without_a_certificate_feeds_nothing(svc, registered):
    """The gate accepts it (development mode) but maps it to no agent: a heartbeat claiming a
    registered ID is ignored."""
    ident = registered()
    with svc.socketio_session() as session:
        answer = session.connect()
        assert answer.startswith("40"), answer
        session.emit("heartbeat", payload(ident.agent_id))
        svc.wait_for_log(f"heartbeat session {json.loads(answer[2:])['sid']}: ignored")
    assert svc.heartbeat(ident.agent_id) == not_found(ident.agent_id)


def test_a_refused_connect_feeds_nothing(svc, registered, make_identity, tmp_path, start_agent):
    """A pair the registry does not hold for its CN: CONNECT is refused, a heartbeat sent anyway
    is dropped, and the stand-in agent holding it is refused at every attempt."""
    ident = registered()
    impostor = make_identity(ident.agent_id)  # the right CN, never uploaded
    with svc.socketio_session(impostor.crt_path, impostor.key_path) as session:
        assert session.connect() == SOCKETIO_REFUSAL
        session.emit("heartbeat", payload(ident.agent_id))  # dropped before the POST is answered
    agent = start_agent(svc, home_with(tmp_path, impostor))
    first = agent.wait_for("refused")
    assert first["message"] == "Connection rejected by server"
    agent.wait_for("refused", after=first["time"])  # it retries, and is refused again
    assert svc.heartbeat(ident.agent_id) == not_found(ident.agent_id)
    assert not agent.events.read("connected")


def test_the_mapped_id_is_the_key_never_the_payloads(svc, registered):
    mine, other = registered(), registered()
    sent = payload(other.agent_id, status="busy")
    with svc.socketio_session(mine.crt_path, mine.key_path) as session:
        assert session.connect().startswith("40")
        session.emit("heartbeat", sent)
        _, body = svc.wait_for_heartbeat(mine.agent_id, lambda status, _: status == 200)
    # what the agent sent, under the session's ID, active while connected
    assert body == {**sent, "agent_id": mine.agent_id, "status": "active"}
    assert svc.heartbeat(other.agent_id) == not_found(other.agent_id)
    svc.wait_for_log(f"the payload's agent_id '{other.agent_id}' is not the session's: ignored")


def test_a_payload_that_is_not_an_object_stores_nothing(svc, registered):
    ident = registered()
    with svc.socketio_session(ident.crt_path, ident.key_path) as session:
        answer = session.connect()
        session.emit("heartbeat", ["not", "an", "object"])
        svc.wait_for_log(f"heartbeat session {json.loads(answer[2:])['sid']}: ignored: the payload is not")
    assert svc.heartbeat(ident.agent_id) == not_found(ident.agent_id)


# -- what the running agent looks like ----------------------------------------------------------
def test_disconnect_turns_the_entry_inactive_keeping_what_the_agent_sent(svc, registered, tmp_path, start_agent):
    ident = registered()
    agent = start_agent(svc, home_with(tmp_path, ident))
    agent.wait_for("heartbeat", match=lambda event: event["n"] >= 2)
    assert svc.wait_for_heartbeat(ident.agent_id, active)
    agent.stop()
    _, body = svc.wait_for_heartbeat(ident.agent_id, inactive)
    sent = [event["sent"] for event in agent.events.read("heartbeat", agent.pid)]
    assert {**body, "status": "active"} in sent  # one of the agent's own heartbeats, as sent


def test_an_agent_killed_turns_inactive(svc, registered, tmp_path, start_agent):
    """SIGKILL: no goodbye, the kernel closes the connection; the cloud notices all the same."""
    ident = registered()
    agent = start_agent(svc, home_with(tmp_path, ident))
    agent.wait_for("heartbeat")
    svc.wait_for_heartbeat(ident.agent_id, active)
    agent.kill()
    svc.wait_for_heartbeat(ident.agent_id, inactive, what="inactive after SIGKILL")


def test_uptime_is_the_agent_processs_own_and_grows(svc, registered, tmp_path, start_agent):
    ident = registered()
    spawned = time.monotonic()
    agent = start_agent(svc, home_with(tmp_path, ident))
    first, _ = stored_beat(svc, agent, ident.agent_id, after=0)
    assert first["uptime"] <= time.monotonic() - spawned  # not the system's: no older than the process
    agent.wait_for("heartbeat", match=lambda event: event["sent"]["uptime"] > first["uptime"])
    _, later = svc.wait_for_heartbeat(ident.agent_id, lambda status, body: body["uptime"] > first["uptime"])
    assert later["status"] == "active"

    restarted_wall, restarted = time.time(), time.monotonic()
    agent.restart()
    fresh, _ = stored_beat(svc, agent, ident.agent_id, after=restarted_wall)
    assert fresh["status"] == "active"
    assert fresh["uptime"] <= time.monotonic() - restarted  # the new process's: a small uptime


def test_rotation_as_the_real_cloud_shows_it(svc, registered, make_identity, tmp_path, start_agent):
    """REFERENCE.md, observed on the real service: after a re-upload without restart the old
    session stays active with an uptime older than the upload; a restart with the old files is
    refused at connect and the entry turns inactive; a restart with the new pair is active with
    a small uptime."""
    old = registered()
    home = home_with(tmp_path, old)
    agent = start_agent(svc, home)
    agent.wait_for("heartbeat", match=lambda event: event["sent"]["uptime"] >= 2)

    new = make_identity(old.agent_id)
    home_with(tmp_path, new)  # the swap: the new pair on disk, the running agent's context cached
    uploaded = time.time()
    assert svc.upload(new.agent_id, new.pem).status_code == 200
    assert not svc.socketio_accepts(old.crt_path, old.key_path)  # refused from now on...
    body, beat = stored_beat(svc, agent, old.agent_id, after=uploaded)
    assert body["status"] == "active"  # ...but the established session goes on, on the old identity
    assert body["uptime"] > beat["time"] - uploaded  # its process is older than the upload
    assert not agent.events.read("connected", agent.pid)[1:]  # one connection: never re-read its files

    home_with(tmp_path, old)  # a restart with the old files
    agent.restart()
    refused = agent.wait_for("refused")
    _, body = svc.wait_for_heartbeat(old.agent_id, inactive)
    agent.wait_for("refused", after=refused["time"])
    assert svc.heartbeat(old.agent_id) == (200, body)  # and it stays so: nothing new was heard

    home_with(tmp_path, new)  # a restart with the new pair
    restarted_wall, restarted = time.time(), time.monotonic()
    agent.restart()
    body, _ = stored_beat(svc, agent, new.agent_id, after=restarted_wall)
    assert body["status"] == "active"
    assert body["uptime"] <= time.monotonic() - restarted


# -- the service's restart ---------------------------------------------------------------------
def test_a_service_restart_forgets_every_entry(service, make_identity, tmp_path, start_agent):
    ident = register(service, make_identity)
    agent = start_agent(service, home_with(tmp_path, ident))
    agent.wait_for("heartbeat")
    service.wait_for_heartbeat(ident.agent_id, active)
    agent.stop()
    service.wait_for_heartbeat(ident.agent_id, inactive)
    service.restart()
    assert service.heartbeat(ident.agent_id) == not_found(ident.agent_id)
    assert ident.agent_id in service.registrations()  # the registry is kept; only the heartbeats are gone


def test_the_agent_reconnects_with_bounded_backoff_after_the_service_restarts(
    service, make_identity, tmp_path, start_agent
):
    ident = register(service, make_identity)
    agent = start_agent(service, home_with(tmp_path, ident), backoff_base=0.2, backoff_max=0.8)
    connected = agent.wait_for("connected")
    agent.wait_for("heartbeat")
    service.stop()
    dropped = agent.wait_for("disconnected", match=lambda event: event["by"] == "server")
    last = agent.wait_for("reconnecting", match=lambda event: event["attempt"] >= 6)  # 5 retries after the drop
    delays = [e["delay"] for e in agent.events.read("reconnecting", agent.pid) if e["time"] > dropped["time"]]
    assert len(delays) >= 5 and delays[-1] == last["delay"]
    for attempt, delay in enumerate(delays[:5]):  # 0.2 s doubling, capped at 0.8, +-30 % jitter
        nominal = min(0.2 * 2**attempt, 0.8)
        assert max(0.2, 0.7 * nominal) <= delay <= 1.3 * nominal, delays
    assert agent.events.read("connect_failed", agent.pid)  # each retry really tried

    service.start()  # the same ports
    back = agent.wait_for("connected", after=dropped["time"])
    body, _ = stored_beat(service, agent, ident.agent_id, after=back["time"])
    assert body["status"] == "active"
    assert body["uptime"] >= int(back["uptime"]) > connected["uptime"]  # the same process, still counting
