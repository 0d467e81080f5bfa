"""The stock-agent stand-in (tests/fixtures/stock_agent.py) against the gate: its HOME decides
its files, its environment its trust, the gate's Socket.IO check whether it gets in."""

from __future__ import annotations

import pytest

from tests.fixtures.servicectl import write_identity


@pytest.fixture
def agent_home(tmp_path, registered):
    """A home whose ~/.mtls holds a registered pair; returns (home, identity)."""
    ident = registered()
    home = tmp_path / "agent-home"
    write_identity(home / ".mtls", ident.cert, ident.key)
    return home, ident


def test_connects_with_the_current_pair_and_the_service_ca(svc, agent_home):
    home, _ = agent_home
    result = svc.run_stock_agent(home, {"SSL_CERT_FILE": str(svc.ca_path)})
    assert result["connected"] is True and result["returncode"] == 0, result
    assert isinstance(result["sid"], str) and result["sid"]


def test_without_ssl_cert_file_the_server_is_not_trusted(svc, agent_home):
    """The service CA is not in OpenSSL's default store: the stock agent's own failure."""
    home, _ = agent_home
    result = svc.run_stock_agent(home)
    assert result["connected"] is False and result["returncode"] == 1, result
    assert "CERTIFICATE_VERIFY_FAILED" in result["detail"]
    assert svc.handshake_failures("gate") == 1


def test_a_rotated_out_pair_is_refused(svc, agent_home, make_identity):
    home, old = agent_home
    new = make_identity(old.agent_id)
    assert svc.upload(new.agent_id, new.pem).status_code == 200
    result = svc.run_stock_agent(home, {"SSL_CERT_FILE": str(svc.ca_path)})
    assert result["connected"] is False and result["returncode"] == 1, result
    assert "Connection rejected by server" in result["detail"]
    write_identity(home / ".mtls", new.cert, new.key)  # the same home with the new pair gets in
    assert svc.run_stock_agent(home, {"SSL_CERT_FILE": str(svc.ca_path)})["connected"] is True


def test_reads_its_pair_from_home_only(svc, tmp_path):
    """An empty HOME: no ~/.mtls/client.crt, so the agent cannot even build its context."""
    result = svc.run_stock_agent(tmp_path, {"SSL_CERT_FILE": str(svc.ca_path)})
    assert result["connected"] is False and result["cause"] == "FileNotFoundError", result
    assert svc.faults()["requests"].get("/socket.io/", 0) == 0
