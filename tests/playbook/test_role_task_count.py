"""What provisioning costs each host, in tasks: at most 3, first run or re-run - the module, whose
action plugin also checks the role's variables; the skipped final `fail`; and the background
keygen pass (issue 22: slow devices make their keys in parallel), which runs only where the
identity ledger expects a new key (the first run here) and is skipped on the controller,
without a round trip, everywhere else (the re-run). One call per host does the device's work.

Counted by the test callback tests/fixtures/callback_plugins/task_count.py over a real
playbooks/provision.yml run: every result a host gets (ok, changed, failed, skipped; the
argument validations included). A ``run_once`` task runs once per batch on the controller (the
ledger lookup, the report) and is attributed by Ansible to the batch's first host: it is
counted for the batch, not for a host (listed in the failure message too), so every host is
measured alike.
"""

from __future__ import annotations

import pytest

from tests.fixtures.playbook_fleet import RoleFleet

pytestmark = pytest.mark.integration

HOSTS = ("tc-01", "tc-02", "tc-03")
LIMITS = {"first run": 3, "re-run": 3}
BACKGROUND_KEYGEN = "Start generating a new key in the background"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_service):
    shared_service.clear_faults()
    fleet = RoleFleet(tmp_path_factory.mktemp("task-count"), shared_service, {h: {} for h in HOSTS})
    first = fleet.play("provision.yml")
    again = fleet.play("provision.yml")
    return {"first run": first, "re-run": again}


def listing(tasks):
    return "\n".join(f"  {t['host']:8} {t['status']:8} {'(once) ' if t['run_once'] else ''}{t['task']}" for t in tasks)


@pytest.mark.parametrize("which", list(LIMITS))
def test_tasks_per_host(runs, which):
    run = runs[which]
    assert run.rc == 0, run.explain()
    assert run.tasks, "the task_count callback recorded nothing"
    per_host = {host: [t for t in run.tasks if t["host"] == host and not t["run_once"]] for host in HOSTS}
    over = {host: len(tasks) for host, tasks in per_host.items() if len(tasks) > LIMITS[which]}
    assert not over, (f"{which}: more than {LIMITS[which]} tasks for {over}:\n{listing(run.tasks)}")
    keygen = {t["host"]: t["status"] for t in run.tasks if BACKGROUND_KEYGEN in t["task"]}
    expected = "skipped" if which == "re-run" else "changed"
    assert keygen == dict.fromkeys(HOSTS, expected), f"{which}: the background keygen pass:\n{listing(run.tasks)}"
    if which == "re-run":
        assert run.recap and all(r["changed"] == 0 for r in run.recap.values()), run.explain()
    once = [t for t in run.tasks if t["run_once"]]
    assert len(once) <= 4, f"{which}: {len(once)} once-per-batch tasks:\n{listing(once)}"
