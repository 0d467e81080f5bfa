"""What provisioning costs each host, in tasks: 2 on a first run - the background keygen pass
(issue 22: slow devices make their keys in parallel) and the module, whose action plugin also
checks the role's variables - and 1 on a re-run, the module alone. The keygen pass runs only
where the identity ledger expects a new key and, in a batch where it expects none (the re-run),
is skipped once for the batch; so is the playbook's final `fail` when no host failed. One call
per host does the device's work.

Counted by the test callback tests/fixtures/callback_plugins/task_count.py over a real
playbooks/provision.yml run: every result a host gets (ok, changed, failed, skipped; the
argument validations included). A ``run_once`` task runs once per batch on the controller (the
ledger's read and write, the report) and is attributed by Ansible to the batch's first host: it is
counted for the batch, not for a host (listed in the failure message too), so every host is
measured alike. A task whose ``run_once`` is a template (decided per batch) counts once when it
has one result in the batch, else per host.
"""

from __future__ import annotations

import pytest

from tests.fixtures.playbook_fleet import RoleFleet

pytestmark = pytest.mark.integration

HOSTS = ("tc-01", "tc-02", "tc-03")
LIMITS = {"first run": 2, "re-run": 1}
BACKGROUND_KEYGEN = "Start generating a new key in the background"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_service):
    shared_service.clear_faults()
    fleet = RoleFleet(tmp_path_factory.mktemp("task-count"), shared_service, {h: {} for h in HOSTS})
    first = fleet.play("provision.yml")
    again = fleet.play("provision.yml")
    for run in (first, again):
        once_in_batch(run.tasks)
    return {"first run": first, "re-run": again}


def once_in_batch(tasks):
    """Resolve a templated run_once: True when the task has a single result in the batch."""
    for task in tasks:
        if task["run_once"] == "templated":
            task["run_once"] = sum(t["task"] == task["task"] for t in tasks) == 1


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
    keygen = [t for t in run.tasks if BACKGROUND_KEYGEN in t["task"]]
    if which == "re-run":  # skipped once for the batch, on the controller
        assert [(t["status"], t["run_once"]) for t in keygen] == [("skipped", True)], listing(run.tasks)
    else:
        assert {t["host"]: t["status"] for t in keygen} == dict.fromkeys(HOSTS, "changed"), listing(run.tasks)
    if which == "re-run":
        assert run.recap and all(r["changed"] == 0 for r in run.recap.values()), run.explain()
    once = [t for t in run.tasks if t["run_once"]]
    # the ledger's read and its write of the batch's records, the report's three, the skipped
    # final fail and (re-run) the skipped keygen pass
    assert len(once) <= 7, f"{which}: {len(once)} once-per-batch tasks:\n{listing(once)}"


def test_a_host_that_rotates_by_its_own_variable_still_gets_the_pass(tmp_path, shared_service):
    """A batch's keygen pass is skipped once only when no host of it will need a key: a host
    set to rotate always by its own variables (not the batch's first) keeps its pass."""
    shared_service.clear_faults()
    fleet = RoleFleet(tmp_path, shared_service, {"rh-01": {}, "rh-02": {}, "rh-03": {"mtls_rotate": "always"}})
    assert fleet.play("provision.yml").rc == 0
    again = fleet.play("provision.yml")
    assert again.rc == 0, again.explain()
    once_in_batch(again.tasks)
    keygen = {t["host"]: t["status"] for t in again.tasks if BACKGROUND_KEYGEN in t["task"]}
    assert keygen == {"rh-01": "skipped", "rh-02": "skipped", "rh-03": "changed"}, listing(again.tasks)
