"""The fleet report is the truth about every host, through the real playbooks/provision.yml.

One fleet, with a host per kind of failure beside two healthy ones: a bad variable value (it
fails argument validation: it used to vanish from the report), a wrong server CA (its staged
configuration is refused), a host that cannot be reached. Then a --limit run and a run with
``-e mtls_rotate=sometimes``.

How "printed once" is counted: the output is cut into its task sections (``TASK [...]``); a
failing host's error text (the ``error`` of its report row, for the argument failure the
validator's own sentence) may appear in the section of the task that failed, where Ansible's
``[ERROR]`` line and the host's ``fatal:`` result (``msg`` and ``status.error``) are that one
failure's own lines, and in the printed fleet table (the report, whose ERROR column holds a
truncated copy). Not in the rescue, not in the final ``fail`` task, nowhere else; the final
``fail`` prints one line per failed host without the error text.
"""

from __future__ import annotations

import pytest

from tests.fixtures.playbook_fleet import RoleFleet

pytestmark = pytest.mark.integration

MODULE_TASK = "autonomy_edge.fleet_mtls.mtls_identity : Ensure the device's registered mTLS identity"
REPORT_PRINT = "autonomy_edge.fleet_mtls.mtls_report : Print the fleet report"
FINAL_FAIL = "Fail the hosts whose identity could not be provisioned"
BAD_VALUE = "value of mtls_rotate must be one of: auto, always, never, got: sometimes"
GOOD = ("rt-ok-1", "rt-ok-2")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, shared_service):
    shared_service.clear_faults()
    root = tmp_path_factory.mktemp("report-truth")
    fleet = RoleFleet(root, shared_service, {
        "rt-ok-1": {},
        "rt-ok-2": {},
        "rt-bad-args": {"mtls_rotate": "sometimes"},
        "rt-bad-ca": {"mtls_server_ca_src": str(shared_service.state_dir / "enroll-ca.crt")},
        "rt-gone": {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 9,
                    "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"},
    })
    fleet.first = fleet.play("provision.yml")
    return fleet


def sections_with(run, text):
    return [name for name, body in run.sections() if text in body]


def test_every_host_is_in_the_report_with_its_phase(fleet):
    run = fleet.first
    assert run.rc != 0, run.explain()
    rows = fleet.rows()
    assert sorted(rows) == sorted(["rt-ok-1", "rt-ok-2", "rt-bad-args", "rt-bad-ca", "rt-gone"])
    for host in GOOD:
        assert (rows[host]["action"], rows[host]["verify"], rows[host]["phase"]) == ("created", "ok", ""), rows[host]
    args = rows["rt-bad-args"]
    assert (args["action"], args["phase"]) == ("failed", "arguments"), args
    assert BAD_VALUE in args["error"], args
    ca = rows["rt-bad-ca"]
    assert (ca["phase"], ca["config"], ca["verify_failure"]) == ("config", "refused", "untrusted_server"), ca
    gone = rows["rt-gone"]
    assert (gone["action"], gone["phase"]) == ("unreachable", "unreachable"), gone
    assert (run.recap["rt-bad-args"]["failed"], run.recap["rt-bad-ca"]["failed"]) == (1, 1), run.explain()
    assert run.recap["rt-gone"]["unreachable"] == 1, run.explain()


def test_the_totals_line(fleet):
    line = "totals: 5 host(s): 0 ok, 2 changed, 2 failed, 1 unreachable, 0 not run; 0 due for rotation within 30 days"
    assert fleet.first.output.count(line) == 1, fleet.first.explain()
    assert fleet.report()["totals"] == {"hosts": 5, "ok": 0, "changed": 2, "failed": 2, "unreachable": 1,
                                        "not_run": 0, "due_for_rotation": 0, "due_days": 30}
    assert line in (fleet.reports / "provision-report.txt").read_text()


@pytest.mark.parametrize(("host", "failed_task"), [
    ("rt-bad-ca", MODULE_TASK),
    # The role's variables are checked by the module task's action plugin (no task of their own).
    ("rt-bad-args", MODULE_TASK),
])
def test_each_failure_is_printed_once_per_host(fleet, host, failed_task):
    run = fleet.first
    error = BAD_VALUE if host == "rt-bad-args" else fleet.rows()[host]["error"]
    # The text (and its opening words) in the failed task's own lines and in the printed table,
    # nowhere else: not in the rescue, not in the final fail.
    for text in (error, error[:60]):
        found = sections_with(run, text)
        assert found[0].startswith(failed_task) and found[1:] in ([], [REPORT_PRINT]), (text, found)
    assert sections_with(run, error[:60])[1:] == [REPORT_PRINT]
    # The final fail: one line for the host, pointing at the error instead of repeating it.
    final = dict(run.sections())[FINAL_FAIL]
    lines = [line for line in final.splitlines() if line.startswith(f"fatal: [{host}]")]
    assert len(lines) == 1 and error[:60] not in final, final
    phase = fleet.rows()[host]["phase"]
    assert f"failed in the {phase} phase (its error is above and in the report)" in lines[0]


def test_a_limit_run_keeps_the_other_rows_and_updates_its_own(fleet):
    before = fleet.rows()
    run = fleet.play("provision.yml", "--limit", "rt-ok-2")
    assert run.rc == 0, run.explain()
    after = fleet.rows()
    assert sorted(after) == sorted(before)
    assert after["rt-ok-2"]["checked_at"] > before["rt-ok-2"]["checked_at"]
    assert after["rt-ok-2"]["action"] == "unchanged"
    for host in set(before) - {"rt-ok-2"}:
        assert {k: v for k, v in after[host].items() if k != "days_left"} == \
               {k: v for k, v in before[host].items() if k != "days_left"}, host
    assert "5 host(s), 4 kept from earlier runs" in run.output


def test_a_bad_value_given_with_e_puts_the_host_in_the_report(fleet):
    before = fleet.rows()
    run = fleet.play("provision.yml", "--limit", "rt-ok-1", "-e", "mtls_rotate=sometimes")
    assert run.rc != 0, run.explain()
    assert run.recap["rt-ok-1"]["failed"] == 1, run.explain()
    rows = fleet.rows()
    assert sorted(rows) == sorted(before)
    row = rows["rt-ok-1"]
    assert (row["action"], row["phase"]) == ("failed", "arguments"), row
    assert BAD_VALUE in row["error"] and row["checked_at"] > before["rt-ok-1"]["checked_at"]
    assert "totals: 1 host(s): 0 ok, 0 changed, 1 failed, 0 unreachable, 0 not run" in run.output
