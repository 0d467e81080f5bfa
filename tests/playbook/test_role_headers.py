"""The API token through the role: the headers file the mtls_identity action plugin puts in the
remote temporary directory is 0600 from its first byte and gone after the task, headers files
an interrupted controller left are removed by the next run that sends headers, and the token
appears in no output, not even with ANSIBLE_DEBUG=1 (which prints every module's arguments).

One provision.yml run (the demo inventory sends ``Authorization: Bearer <token>``) with
ANSIBLE_KEEP_REMOTE_FILES=1 (the remote temporary directories stay, so the file must have been
removed on its own) and ANSIBLE_DEBUG=1. "From its first byte": the plugin writes the file with
``cat > file`` in a shell; a ``cat`` first on PATH records the mode and size of its standard
output, the file just created by the shell, before it starts copying (then runs the real cat).
"""

from __future__ import annotations

import os
import pathlib
import time

import pytest

from tests.fixtures.playbook_fleet import RoleFleet

pytestmark = pytest.mark.integration

HOST = "hd-01"
NAME = "mtls-identity-headers.json"
CAT = """#!/bin/sh
# Records the mode and size of the file this cat writes to, when it is a headers file.
target=$(readlink "/proc/$$/fd/1" 2>/dev/null)
case "$target" in
  */{name}) stat -c '%a %s %n' "$target" >> {log} ;;
esac
exec /bin/cat "$@"
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, shared_service):
    shared_service.clear_faults()
    fleet = RoleFleet(tmp_path_factory.mktemp("headers"), shared_service, {HOST: {}})
    wrapper = fleet.root / "bin"
    wrapper.mkdir()
    fleet.cat_log = fleet.root / "cat.log"
    (wrapper / "cat").write_text(CAT.format(name=NAME, log=fleet.cat_log))
    (wrapper / "cat").chmod(0o755)
    # What interrupted controllers left: one file 20 minutes old, one of a run still going (1 minute).
    fleet.remote_tmp.mkdir(mode=0o700)
    fleet.stale, fleet.live = (fleet.remote_tmp / f"ansible-tmp-{n}-1-1" / NAME for n in (1, 2))
    for path, age in ((fleet.stale, 1200), (fleet.live, 60)):
        path.parent.mkdir(mode=0o700)
        path.write_text('{"Authorization": "Bearer left-behind"}')
        path.chmod(0o600)
        os.utime(path, (time.time() - age, time.time() - age))
    fleet.run = fleet.play("provision.yml", env={
        "ANSIBLE_KEEP_REMOTE_FILES": "1", "ANSIBLE_DEBUG": "1",
        "PATH": f"{wrapper}{os.pathsep}{fleet.env()['PATH']}"})
    return fleet


def test_the_run_sends_the_headers(fleet):
    assert fleet.run.rc == 0, fleet.run.explain()
    assert fleet.rows()[HOST]["verify"] == "ok"


def cat_records(fleet):
    return fleet.cat_log.read_text().splitlines() if fleet.cat_log.exists() else []


def test_the_headers_file_is_0600_from_its_first_byte(fleet):
    records = cat_records(fleet)
    assert len(records) == 1, f"{records}: the headers went some other way than the shell's cat"
    mode, size, path = records[0].split(" ", 2)
    assert (mode, size) == ("600", "0"), records[0]
    assert path.startswith(str(fleet.remote_tmp) + "/ansible-tmp-") and path.endswith("/" + NAME)


def test_the_headers_file_is_gone_after_the_task_though_the_directory_is_kept(fleet):
    sent_to = pathlib.Path(cat_records(fleet)[0].split(" ", 2)[2])
    assert (sent_to.parent / "AnsiballZ_mtls_identity.py").exists(), (
        f"ANSIBLE_KEEP_REMOTE_FILES did not keep the task's directory: {sorted(fleet.remote_tmp.rglob('*'))}")
    assert not sent_to.exists(), f"{sent_to} is still there after the task"


def test_a_headers_file_an_interrupted_run_left_is_removed(fleet):
    assert not fleet.stale.exists(), "the 20-minute-old headers file is still there"
    assert fleet.live.exists(), "a file younger than 10 minutes (a run still going) was removed"


def test_the_token_is_in_no_output_and_no_kept_file(fleet):
    output = fleet.run.output
    assert "_execute_module (autonomy_edge.fleet_mtls.mtls_identity" in output  # ANSIBLE_DEBUG was on
    token = fleet.service.token
    assert token not in output, "the bearer token is in the ANSIBLE_DEBUG output"
    for path in (fleet.remote_tmp, fleet.root / "local-tmp", fleet.reports):
        for item in path.rglob("*"):
            if item.is_file() and item not in (fleet.live,):
                assert token not in item.read_text(errors="replace"), f"the bearer token is in {item}"
