"""The controller's token reaches a device only for a run that uses it.

The demo inventory's token is held by the controller (``mtls_api_headers``). A first run sends it
to every device (each creates its identity). A re-run of a fleet the identity ledger knows and
that is not due sends it to none: the module runs once per host, without it, in one round trip.
A device that needs the API although the ledger expected not (its identity was removed, or
``mtls_rotate=always`` for it) changes nothing without the token, says so, and is run again with
it. Seen with ``-vvv`` (pipelining on, as operators run): every command of the identity task is
printed, the one that writes the headers file among them (never the token). The headers' file
and directory are made in one command and removed by the module: a run with the token costs two
round trips per host, not five (``~`` expanded, a directory made, the file written, the module,
the directory removed).
"""

from __future__ import annotations

import re
import shutil

import pytest

from tests.fixtures.playbook_fleet import RoleFleet

pytestmark = pytest.mark.integration

HOSTS = ("tk-01", "tk-02", "tk-03")
HEADERS_FILE = "mtls-identity-headers.json"
SEND = re.compile(r"^<(?P<host>[^>]+)> EXEC .*cat > \S*" + re.escape(HEADERS_FILE), re.MULTILINE)


def sent_to(run) -> list[str]:
    """The hosts the headers file was written to, once per write."""
    return sorted(m["host"] for m in SEND.finditer(run.output))


def commands(run, host) -> list[str]:
    """The commands the identity task ran on ``host``, in order."""
    identity = "".join(body for name, body in run.sections() if name.endswith("connection"))
    return re.findall(r"^<%s> EXEC (.*)$" % re.escape(host), identity, re.MULTILINE)


def module_runs(run, host) -> int:
    """The mtls_identity module's executions on ``host`` (pipelined: its interpreter's command;
    without the token, lean: the interpreter reading the script as ``- mtls_identity``)."""
    return sum(1 for cmd in commands(run, host)
               if re.match(r"/bin/sh -c '\S*python[\d.]*( - mtls_identity)? && sleep 0'$", cmd))


def play(fleet, *args):
    run = fleet.play("provision.yml", "-vvv", *args, env={"ANSIBLE_PIPELINING": "1"})
    assert run.rc == 0, run.explain()
    assert not list(fleet.remote_tmp.glob("ansible-tmp-*")), "a remote temporary directory was left"
    return run


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, shared_service):
    shared_service.clear_faults()
    fleet = RoleFleet(tmp_path_factory.mktemp("token"), shared_service, {h: {} for h in HOSTS})
    first = play(fleet)
    assert sent_to(first) == sorted(HOSTS), "a first run sends the token to every device"
    for host in HOSTS:
        assert len(commands(first, host)) == 2 and module_runs(first, host) == 1, commands(first, host)
    assert {r["action"] for r in fleet.rows().values()} == {"created"}
    return fleet


def test_an_unchanged_run_keeps_the_token_on_the_controller(fleet):
    before = {h: fleet.fingerprint(h) for h in HOSTS}
    run = play(fleet)
    assert sent_to(run) == []
    assert fleet.service.token not in run.output
    assert {h: r["action"] for h, r in fleet.rows().items()} == dict.fromkeys(HOSTS, "unchanged")
    assert {h: fleet.fingerprint(h) for h in HOSTS} == before
    assert [len(commands(run, h)) for h in HOSTS] == [1, 1, 1]


def test_a_device_that_needs_the_api_gets_the_token_on_a_second_run(fleet):
    lost, others = "tk-01", ("tk-02", "tk-03")
    agent_id = fleet.agent_id(lost)
    shutil.rmtree(fleet.host_dir(lost))
    run = play(fleet)
    assert sent_to(run) == [lost]
    rows = fleet.rows()
    assert (rows[lost]["action"], rows[lost]["agent_id"]) == ("restored", agent_id), rows[lost]
    assert fleet.service.registrations()[agent_id] == fleet.fingerprint(lost)
    assert [rows[h]["action"] for h in others] == ["unchanged", "unchanged"]
    assert module_runs(run, lost) == 2 and len(commands(run, lost)) == 3
    assert [len(commands(run, h)) for h in others] == [1, 1]


def test_a_forced_rotation_sends_the_token_at_once(fleet):
    host = "tk-02"
    old = fleet.fingerprint(host)
    run = play(fleet, "--limit", host, "-e", "mtls_rotate=always")
    assert sent_to(run) == [host]
    assert fleet.rows()[host]["action"] == "rotated" and fleet.fingerprint(host) != old
    assert module_runs(run, host) == 1 and len(commands(run, host)) == 2
