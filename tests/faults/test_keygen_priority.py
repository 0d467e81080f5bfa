"""Fault matrix, slow devices: the key made in the background really comes last (issue 22).

The background process sets nice 19 and the idle scheduling class, which act only inside its
autogroup; its new session is an autogroup of its own, which the kernel schedules as fairly as
the SSH session's or the agent's service's (sched(7), "The autogroup feature"). Measured on this
machine before the fix: 50 such keygens took the controller's and the identity task's CPU, so the
first pass of 50 fast devices took 32 s instead of a ping's 9. The case reads the held process's
own scheduling: its nice, its policy and its autogroup's nice.
"""
from __future__ import annotations

import os
import pathlib

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import prekey
from tests.faults.test_background_keygen import HOLD_BEFORE_WRITING, keygens, record_of, run_prekey  # noqa: F401
from tests.fixtures import module_runner as h

AUTOGROUPS = pathlib.Path("/proc/sys/kernel/sched_autogroup_enabled")


def test_the_background_keygen_is_last_in_its_autogroup_and_as_a_group(device, svc, keygens):  # noqa: F811
    device.seed()
    run_prekey(device, rotate="always", hooks={"FLEET_FAULTS_KILL": HOLD_BEFORE_WRITING})
    record = record_of(device)
    keygens.append(record)
    h.wait_for(lambda: (prekey.process_facts(record.pid) or ("?",))[0] == "T", timeout=120,
               what="the background process to hold before writing its key")
    assert os.getpriority(os.PRIO_PROCESS, record.pid) == 19
    assert os.sched_getscheduler(record.pid) == os.SCHED_IDLE
    autogroup = pathlib.Path("/proc/%d/autogroup" % record.pid)
    if not (AUTOGROUPS.exists() and AUTOGROUPS.read_text().strip() == "1" and autogroup.exists()):
        pytest.skip("this kernel schedules no autogroups")
    assert autogroup.read_text().split()[-2:] == ["nice", "19"], autogroup.read_text()
    # its own group, not the run's: the run's session keeps its priority
    assert autogroup_name(autogroup) != autogroup_name(pathlib.Path("/proc/self/autogroup"))


def autogroup_name(path):
    """The autogroup a process is in, or None for the default one: the file is empty for a
    process whose session goes back to init's (a CI runner started without a session of its own)."""
    words = path.read_text().split()
    return words[0] if words else None
