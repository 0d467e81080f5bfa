"""The long-lived stand-in agent (``tests/fixtures/agent_daemon.py``) as a process: what it
presents and when, what it sends, how it stops, which Pythons run it. (What the cloud makes of
it: ``test_heartbeat.py``.)"""

from __future__ import annotations

import datetime
import os
import pathlib
import sysconfig

import pytest

from tests.fixtures.servicectl import StandInAgent, write_identity

FIELDS = {
    "agent_id", "cpu_usage", "memory_usage", "memory_total", "disk_usage", "disk_total", "uptime",
    "status", "timestamp",
}  # fmt: skip
DEBIAN_PYTHON = "/usr/bin/python3"


def home_with(tmp_path: pathlib.Path, ident, name: str = "agent-home") -> pathlib.Path:
    home = tmp_path / name
    write_identity(home / ".mtls", ident.cert, ident.key)
    return home


def test_its_heartbeat_carries_the_stock_fields_and_units(svc, registered, tmp_path, start_agent):
    ident = registered()
    agent = start_agent(svc, home_with(tmp_path, ident), interval=0.3)
    beats = [agent.wait_for("heartbeat", match=lambda event, n=n: event["n"] == n) for n in (1, 2, 3)]
    sent = beats[-1]["sent"]
    assert set(sent) == FIELDS
    assert sent["agent_id"] == ident.agent_id and sent["status"] == "active"
    assert isinstance(sent["uptime"], int) and 0 <= sent["uptime"] <= beats[-1]["uptime"]
    assert 0.0 <= sent["cpu_usage"] <= 100.0
    meminfo = dict(line.split(":", 1) for line in pathlib.Path("/proc/meminfo").read_text().splitlines())
    assert sent["memory_total"] == round(int(meminfo["MemTotal"].split()[0]) * 1024 / 1024**3, 1)  # GB
    assert 0.0 <= sent["memory_usage"] <= sent["memory_total"]
    assert 0.0 < sent["disk_total"] and 0.0 <= sent["disk_usage"] <= sent["disk_total"]
    assert datetime.datetime.fromisoformat(sent["timestamp"]).tzinfo is None  # local ISO time
    assert len({beat["sent"]["timestamp"] for beat in beats}) == 3  # each one measured afresh


def test_a_rotated_pair_is_presented_only_after_a_restart(service, make_identity, tmp_path, start_agent):
    """Its context is cached: a reconnect (here after the service restarted) still presents the
    pair it started with, which the registry now refuses; a restart reads the new files."""
    old = make_identity(service.reserve_id())
    assert service.upload(old.agent_id, old.pem).status_code == 200
    home = home_with(tmp_path, old)
    agent = start_agent(service, home)
    agent.wait_for("connected")
    new = make_identity(old.agent_id)
    home_with(tmp_path, new)
    assert service.upload(new.agent_id, new.pem).status_code == 200
    service.restart()  # the connection drops: the agent reconnects on its own
    agent.wait_for("refused", match=lambda event: event["message"] == "Connection rejected by server")
    assert len(agent.events.read("connected", agent.pid)) == 1
    agent.restart()
    agent.wait_for("connected")
    service.wait_for_heartbeat(new.agent_id, lambda status, body: status == 200 and body["status"] == "active")


def test_without_its_files_it_retries_and_keeps_the_id_it_read_at_start(svc, registered, tmp_path, start_agent):
    """Like the stock agent: the ID is read once ("UNKNOWN" without client.crt); the context is
    built when the files are there, then cached. The cloud keys the entry by the certificate."""
    home = tmp_path / "agent-home"
    agent = start_agent(svc, home)
    assert agent.wait_for("started")["agent_id"] == "UNKNOWN"
    first = agent.wait_for("context_error")
    assert first["cause"] == "FileNotFoundError"
    delay = agent.wait_for("reconnecting")["delay"]
    assert delay == 0.2  # never accepted yet: the fixed initial-setup delay, no backoff
    agent.wait_for("context_error", after=first["time"])  # it tries again

    ident = registered()
    home_with(tmp_path, ident)
    agent.wait_for("connected")
    assert agent.wait_for("heartbeat")["sent"]["agent_id"] == "UNKNOWN"
    _, body = svc.wait_for_heartbeat(ident.agent_id, lambda status, _: status == 200)
    assert body["agent_id"] == ident.agent_id


def test_without_ssl_cert_file_it_does_not_trust_a_private_ca(svc, registered, tmp_path, start_agent):
    ident = registered()
    agent = start_agent(svc, home_with(tmp_path, ident), env={})
    failed = agent.wait_for("connect_failed")
    assert "CERTIFICATE_VERIFY_FAILED" in failed["detail"]
    assert agent.wait_for("reconnecting")["delay"] == 0.2
    assert svc.heartbeat(ident.agent_id)[0] == 404


def test_sigterm_disconnects_cleanly_exits_0_and_removes_its_pid_file(svc, registered, tmp_path, start_agent):
    ident = registered()
    pid_file = tmp_path / "agent.pid"
    agent = start_agent(svc, home_with(tmp_path, ident), pid_file=pid_file)
    assert pid_file.read_text() == f"{agent.pid}\n"
    connected = agent.wait_for("connected")
    agent.wait_for("heartbeat")
    assert agent.stop() == 0
    assert agent.events.read("disconnected", agent.pid)[-1]["by"] == "stop"
    assert agent.events.read(pid=agent.pid)[-1]["event"] == "stopped"
    assert not pid_file.exists()
    svc.wait_for_log(f"session {connected['sid']} of {ident.agent_id} closed: now inactive")
    log = agent.log_path.read_bytes()
    assert b"PRIVATE KEY" not in log and ident.key_path.read_bytes().splitlines()[1] not in log


@pytest.mark.skipif(not os.access(DEBIAN_PYTHON, os.X_OK), reason="no /usr/bin/python3")
def test_runs_with_the_distributions_python_given_the_venvs_packages(svc, registered, tmp_path, start_agent):
    """As in a container: bookworm's python3 with the venv's site-packages on PYTHONPATH."""
    ident = registered()
    packages = sysconfig.get_paths()["purelib"]
    env = {"SSL_CERT_FILE": str(svc.ca_path), "PYTHONPATH": packages}
    agent = start_agent(svc, home_with(tmp_path, ident), env=env, python=DEBIAN_PYTHON)
    agent.wait_for("heartbeat")
    assert os.readlink(f"/proc/{agent.pid}/exe").startswith("/usr/bin/python3")
    svc.wait_for_heartbeat(ident.agent_id, lambda status, body: status == 200 and body["status"] == "active")


def test_the_url_may_come_from_the_environment(svc, registered, tmp_path):
    ident = registered()
    env = {"SSL_CERT_FILE": str(svc.ca_path), "AGENT_SERVER_URL": svc.gate_url.removeprefix("https://")}
    with StandInAgent(None, home_with(tmp_path, ident), env=env).start() as agent:
        assert agent.wait_for("started")["url"] == svc.gate_url  # HOST:PORT means https://HOST:PORT
        agent.wait_for("connected")
