"""The mtls_report role's fleet-wide metrics file, through real ansible-playbook runs of the
report fixture (tests/fixtures/report/provision_fixture.yml: the module's status rows
without devices), parsed with prometheus_client. The values against a real certificate are
asserted where a real provisioning runs (test_playbook_pull.py, the pull container test)."""

from __future__ import annotations

import calendar
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.playbook_fleet import explain
from tests.fixtures.report_fleet import FP, ReportFleet, healthy

pytestmark = pytest.mark.integration


def samples(path):
    return {(s.name, s.labels.get("host"), s.labels.get("action")): s.value
            for family in text_string_to_metric_families(path.read_text()) for s in family.samples}


def test_the_report_writes_the_fleet_metrics_and_not_in_check_mode(tmp_path):
    fleet = ReportFleet(tmp_path, {
        "ok-01": healthy("A1", FP["a"], action="rotated", not_before="2026-11-30T23:55:00Z",
                         not_after="2027-11-30T23:55:00Z"),
        "bad-01": {"fixture_fail_phase": "config", "fixture_error": "staged check failed"},
    })
    started = int(time.time())
    run = fleet.play()
    assert run.rc != 0, explain(run)  # bad-01 fails after the report
    prom = fleet.reports / "fleet-mtls.prom"
    assert prom.stat().st_mode & 0o777 == 0o644
    values = samples(prom)
    not_after = calendar.timegm((2027, 11, 30, 23, 55, 0))
    assert values[("fleet_mtls_certificate_not_after_timestamp_seconds", "ok-01", None)] == not_after
    assert values[("fleet_mtls_certificate_not_before_timestamp_seconds", "ok-01", None)] == not_after - 365 * 86400
    assert values[("fleet_mtls_action_info", "ok-01", "rotated")] == 1
    assert values[("fleet_mtls_action_info", "bad-01", "failed")] == 1
    assert values[("fleet_mtls_last_run_success", "ok-01", None)] == 1
    assert values[("fleet_mtls_last_run_success", "bad-01", None)] == 0
    assert ("fleet_mtls_last_success_timestamp_seconds", "bad-01", None) not in values  # never succeeded
    rotated_at = values[("fleet_mtls_last_rotation_timestamp_seconds", "ok-01", None)]
    assert started - 1 <= rotated_at <= time.time()

    before = prom.read_bytes()
    run = fleet.play("--check")
    assert "fleet-mtls report provision-report" in run.output, explain(run)
    assert prom.read_bytes() == before  # a plan is not a rotation

    run = fleet.play("-e", "mtls_report_metrics=false", "--limit", "ok-01")
    assert run.rc == 0, explain(run)
    assert prom.read_bytes() == before
