"""Acceptance of the agent check at the reference service's gate, which follows the real
cloud's rules: real nginx (``ssl_verify_client optional_no_ca``) in front of ``/ws`` (101 / 403)
and ``/socket.io/`` (python-socketio: 40 / 44), plain routes 403 without the API key; the
registry is the service's (uploads through its API, deletions as decommissioning does).

Also here: the check runs as the agent's user with the agent's HOME (``run_as``), and agrees
with the stock agent's own connection (``tests/fixtures/stock_agent.py``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import check
from tests.fixtures.check_helpers import (
    expect,
    make_cert,
    make_key,
    pem,
    write_pair,
)

PROTOCOLS = ["websocket", "socketio"]


class Device:
    """One agent ID with identities made (not uploaded) on demand."""

    count = 0

    def __init__(self, pki, agent_id):
        self.pki, self.agent_id = pki, agent_id

    def identity(self, **cert_options):
        Device.count += 1
        key = make_key()
        cert = make_cert(key, self.agent_id, client=cert_options.pop("client", True), days=365, **cert_options)
        return self.pki.identity("dev%d" % Device.count, cert, key), cert


def _check(gate, identity, protocol, **kwargs):
    kwargs.setdefault("trust", "ca_file")
    kwargs.setdefault("ca_file", str(gate.ca_path))
    kwargs.setdefault("timeout", 10)
    return check.run_agent_check(identity, gate.gate_url, protocol=protocol, **kwargs)


def _expect(kind, gate, identity, protocol, **kwargs):
    kwargs.setdefault("trust", "ca_file")
    kwargs.setdefault("ca_file", str(gate.ca_path))
    kwargs.setdefault("timeout", 10)
    return expect(kind, identity, gate.gate_url, protocol=protocol, **kwargs)


# --------------------------------------------------------------------------- registered or not


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_current_certificate_is_ok(pki, gate, protocol):
    device = Device(pki, "C0000001")
    identity, cert = device.identity()
    gate.upload(device.agent_id, pem(cert))
    result = _check(gate, identity, protocol)
    assert (result["agent_id"], result["status"]) == ("C0000001", 101)
    assert bool(result["sid"]) == (protocol == "socketio")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_rotated_out_certificate_is_refused(pki, gate, protocol):
    device = Device(pki, "C0000002")
    old, old_cert = device.identity()
    gate.upload(device.agent_id, pem(old_cert))
    new, new_cert = device.identity()
    gate.upload(device.agent_id, pem(new_cert))  # the last upload wins
    error = _expect("refused", gate, old, protocol)
    assert error.details["agent_id"] == "C0000002"
    assert _check(gate, new, protocol)["status"] == 101


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_never_uploaded_certificate_with_the_right_cn_is_refused(pki, gate, protocol):
    device = Device(pki, "C0000003")
    registered, registered_cert = device.identity()
    gate.upload(device.agent_id, pem(registered_cert))
    stranger, _cert = device.identity()  # same CN, another key, never uploaded
    _expect("refused", gate, stranger, protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_deleted_id_is_refused(pki, gate, protocol):
    device = Device(pki, {"websocket": "C0000041", "socketio": "C0000042"}[protocol])
    identity, cert = device.identity()
    gate.upload(device.agent_id, pem(cert))
    assert _check(gate, identity, protocol)["status"] == 101
    gate.delete(device.agent_id)
    _expect("refused", gate, identity, protocol)


def test_get_answered_403_for_a_missing_api_key_is_not_a_certificate_refusal(pki, gate):
    device = Device(pki, "C0000005")
    identity, cert = device.identity()
    gate.upload(device.agent_id, pem(cert))
    error = _expect("http_status", gate, identity, "https")
    assert error.details["status"] == 403
    assert "not a certificate verdict" in error.message and "Forbidden" in error.message
    assert _check(gate, identity, "websocket")["status"] == 101, "the same certificate is accepted"


@pytest.mark.parametrize("protocol", PROTOCOLS + ["https"])
def test_front_end_refuses_a_certificate_not_for_client_auth(pki, gate, protocol):
    """nginx optional_no_ca still checks the purpose: 400 The SSL certificate error, before any
    registry could be asked (the registry refuses to store such a certificate anyway)."""
    device = Device(pki, "C0000006")
    identity, _cert = device.identity(client=False)  # extendedKeyUsage serverAuth only
    error = _expect("refused", gate, identity, protocol)
    assert "TLS front end" in error.message and error.details["status"] == 400


# --------------------------------------------------------------------------- the agent's trust


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_private_server_ca_with_system_trust_fails_saying_how_to_fix_it(pki, gate, protocol, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(gate.ca_path))  # the caller's, never the agent's
    device = Device(pki, "C0000007")
    identity, cert = device.identity()
    gate.upload(device.agent_id, pem(cert))
    error = _expect("untrusted_server", gate, identity, protocol, trust="system", ca_file=None)
    assert "the agent trusts OpenSSL's default store (no SSL_CERT_FILE in its environment)" in error.message
    assert "give it the server's CA" in error.message
    assert _check(gate, identity, protocol)["status"] == 101, "with trust ca_file the same agent connects"


# --------------------------------------------------------------------------- the agent's user and HOME


NOBODY = pwd.getpwnam("nobody")


class Agent:
    """The agent's user (``nobody``): a home of its own and the server CA where it can read it,
    under a world-traversable directory."""

    def __init__(self, base, gate):
        self.home = os.path.join(base, "home")
        os.mkdir(self.home, 0o700)
        self.ca = os.path.join(base, "server-ca.crt")
        shutil.copy(gate.ca_path, self.ca)
        os.chmod(self.ca, 0o644)
        self.run_as = (NOBODY.pw_uid, NOBODY.pw_gid, self.home)

    def own_home(self):
        for root, dirs, files in os.walk(self.home):
            for name in [root] + [os.path.join(root, entry) for entry in dirs + files]:
                os.chown(name, NOBODY.pw_uid, NOBODY.pw_gid)


@pytest.fixture
def agent(gate):
    if os.geteuid() != 0:
        pytest.skip("becoming another user needs root")
    base = tempfile.mkdtemp(prefix="fleet-mtls-check-", dir="/tmp")
    os.chmod(base, 0o755)
    yield Agent(base, gate)
    shutil.rmtree(base)


def _registered_identity(pki, gate, directory, agent_id):
    key = make_key()
    cert = make_cert(key, agent_id, client=True, days=365)
    gate.upload(agent_id, pem(cert))
    write_pair(directory, cert, key)
    return str(directory)


def test_run_as_reads_the_agents_home_not_the_callers(pki, gate, agent, monkeypatch):
    """``~/.mtls`` is the agent's: the caller's HOME holds an unregistered identity that would be
    refused, the agent's a registered one."""
    _registered_identity(pki, gate, os.path.join(agent.home, ".mtls"), "C0000008")
    agent.own_home()
    monkeypatch.setenv("HOME", os.path.dirname(Device(pki, "C0000008").identity()[0]))
    result = _check(gate, "~/.mtls", "socketio", run_as=agent.run_as, ca_file=agent.ca)
    assert (result["agent_id"], result["status"]) == ("C0000008", 101)
    _expect("refused", gate, "~/.mtls", "socketio")  # as the caller, with its HOME


def test_run_as_drops_privileges_before_reading_the_key(pki, gate, agent):
    identity = _registered_identity(pki, gate, os.path.join(agent.home, ".mtls"), "C0000009")
    agent.own_home()
    os.chown(os.path.join(identity, "client.key"), 0, 0)  # 0600 root: the agent cannot read it
    assert _check(gate, identity, "websocket")["status"] == 101, "root can"
    error = _expect("client_credentials", gate, identity, "websocket", run_as=agent.run_as, ca_file=agent.ca)
    assert "client.key as uid %d (nobody)" % NOBODY.pw_uid in error.message
    assert "Permission denied" in error.message


def test_ca_file_the_agent_cannot_read_is_a_config_failure(pki, gate, agent):
    identity = _registered_identity(pki, gate, os.path.join(agent.home, ".mtls"), "C000000A")
    agent.own_home()
    assert _check(gate, identity, "websocket", run_as=agent.run_as, ca_file=agent.ca)["status"] == 101
    error = _expect("config", gate, identity, "websocket", run_as=agent.run_as)  # root's 0700 pytest dir
    assert "cannot read SSL_CERT_FILE=%s" % gate.ca_path in error.message


# --------------------------------------------------------------------------- agreement with the agent


def _agent_connects(gate, identity, ca_file):
    """The stock agent stand-in with only the agent's environment: HOME and, given, SSL_CERT_FILE."""
    return gate.run_stock_agent(os.path.dirname(identity), {"SSL_CERT_FILE": ca_file} if ca_file else {})


@pytest.mark.parametrize("case", ["current", "rotated_out", "system_trust"])
def test_check_agrees_with_a_real_socketio_client_built_like_the_agent(pki, gate, case):
    device = Device(pki, "C000000B")
    identity, cert = device.identity()
    gate.upload(device.agent_id, pem(cert))
    if case == "rotated_out":
        gate.upload(device.agent_id, pem(device.identity()[1]))
    ca_file = None if case == "system_trust" else str(gate.ca_path)
    agent = _agent_connects(gate, identity, ca_file)
    try:
        check.run_agent_check(identity, gate.gate_url, protocol="socketio", trust="ca_file" if ca_file else "system",
                              ca_file=ca_file, timeout=10)
        verdict = "ok"
    except check.CheckError as exc:
        verdict = exc.kind
    assert (verdict == "ok") == agent["connected"], (verdict, agent)
    assert verdict == {"current": "ok", "rotated_out": "refused", "system_trust": "untrusted_server"}[case]
