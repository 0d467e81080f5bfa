"""A systemd agent through the role (mtls_agent_restart=systemd).

The role writes the drop-in ``/etc/systemd/system/<unit>.service.d/fleet-mtls.conf`` that gives
the agent its environment (``EnvironmentFile=<identity dir>/agent.env``); systemd 252's own
parser (``systemd-analyze verify``, beside a minimal unit file) must accept it without a word.
No systemd runs here, so ``systemctl`` fails: the host is reported failed in the ``restart``
phase, with the identity it was given kept in its row. The unit name is a fresh one per run;
its files are removed from /etc/systemd/system afterwards.
"""

from __future__ import annotations

import os
import pathlib
import secrets
import shutil
import subprocess

import pytest

from tests.fixtures.playbook_fleet import RoleFleet

SYSTEMD = pathlib.Path("/etc/systemd/system")
HOST = "sd-01"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("systemd-analyze") is None,
                       reason="needs root (the drop-in goes to /etc/systemd/system) and systemd-analyze"),
]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, shared_service):
    shared_service.clear_faults()
    unit = "fleet-mtls-test-" + secrets.token_hex(4)
    fleet = RoleFleet(tmp_path_factory.mktemp("systemd"), shared_service, {HOST: {}},
                      mtls_agent_restart="systemd", mtls_agent_service=unit)
    fleet.unit = unit
    try:
        fleet.first = fleet.play("provision.yml")
        yield fleet
    finally:
        shutil.rmtree(SYSTEMD / f"{unit}.service.d", ignore_errors=True)
        (SYSTEMD / f"{unit}.service").unlink(missing_ok=True)


def test_the_drop_in_gives_the_agent_its_env_file_and_systemd_accepts_it(fleet):
    dropin = SYSTEMD / f"{fleet.unit}.service.d" / "fleet-mtls.conf"
    assert dropin.exists(), fleet.first.explain()
    unit = SYSTEMD / f"{fleet.unit}.service"
    unit.write_text("[Unit]\nDescription=fleet-mtls test agent\n\n[Service]\nExecStart=/usr/bin/sleep infinity\n")
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False,
                            timeout=60)
    # systemd-analyze exits 0 on a key it ignores too: no word about the unit or its drop-in either.
    assert verify.returncode == 0 and fleet.unit not in verify.stdout + verify.stderr, verify
    lines = [line for line in dropin.read_text().splitlines() if line and not line.startswith("#")]
    assert lines == ["[Service]", f"EnvironmentFile={fleet.host_dir(HOST)}/agent.env"], lines
    assert dropin.stat().st_mode & 0o777 == 0o644 and dropin.stat().st_uid == 0


def test_a_failing_systemctl_is_the_restart_phase_and_the_identity_is_kept(fleet):
    run = fleet.first
    assert run.rc != 0 and run.recap[HOST]["failed"] == 1, run.explain()
    row = fleet.rows()[HOST]
    assert (row["action"], row["phase"], row["restarted"], row["config"]) == (
        "created", "restart", False, "changed"), row
    assert row["error"].startswith("systemctl daemon-reload failed (rc "), row
    assert row["agent_id"] == fleet.agent_id(HOST)
    assert row["fingerprint_sha256"] == fleet.fingerprint(HOST) == fleet.service.registrations()[row["agent_id"]]
    assert fleet.ledger()[HOST]["agent_id"] == row["agent_id"]


def test_a_failed_restart_is_tried_again_by_the_next_run(fleet):
    """The identity was handed to the device but its agent was never restarted onto it: the next
    run must not call the host fine (the running agent still presents what it read at start)."""
    run = fleet.play("provision.yml")
    row = fleet.rows()[HOST]
    assert run.rc != 0 and (row["phase"], row["restarted"]) == ("restart", False), (
        f"the re-run says rc={run.rc}, phase={row['phase']!r}, restarted={row['restarted']}, "
        f"verify={row['verify']!r}: the agent that never restarted onto its identity is reported fine")
