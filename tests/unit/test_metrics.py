"""metrics.py: the Prometheus textfile of status rows, read back with prometheus_client's own
parser (the text format node_exporter's textfile collector reads), against a real certificate."""

from __future__ import annotations

import datetime
import os
import stat

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certs, metrics
from tests.fixtures.identities import build_cert

UTC = datetime.timezone.utc  # noqa: UP017 - mirrors the device-side code
T0 = int(datetime.datetime(2026, 12, 1, 10, 0, tzinfo=UTC).timestamp())
P = metrics.PREFIX


def families(text):
    """{family name: family} parsed by prometheus_client (raises on any format error)."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(parsed, suffix, **labels):
    samples = [s for s in parsed[P + suffix].samples if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(samples) == 1, (suffix, labels, parsed[P + suffix].samples)
    return samples[0].value


def iso(seconds):
    return datetime.datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_row(cert, host="edge-01", action="created", checked_at=T0, **extra):
    """The status row the module returns for ``cert`` (its facts, as the module computes them)."""
    row = dict(certs.cert_info(cert).facts(), host=host, action=action, phase="", error="",
               checked_at=iso(checked_at))
    row.update(extra)
    return row


@pytest.fixture
def cert(keys):
    return build_cert(keys.get(), "0A1B2C3D", days=90)


def test_the_file_holds_the_certificate_s_dates_and_the_run(tmp_path, cert):
    path = metrics.write(str(tmp_path / "textfile"), [status_row(cert)], now=T0 + 60)

    assert path == str(tmp_path / "textfile" / "fleet-mtls.prom")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    parsed = families(open(path, encoding="utf-8").read())
    who = {"host": "edge-01", "agent_id": "0A1B2C3D"}
    # The certificate's own dates, read by cryptography, not through metrics' or certs' code.
    not_after = cert.not_valid_after_utc.timestamp()
    assert value(parsed, "certificate_not_after_timestamp_seconds", **who) == not_after
    assert value(parsed, "certificate_not_before_timestamp_seconds", **who) == cert.not_valid_before_utc.timestamp()
    assert value(parsed, "certificate_days_left", **who) == (not_after - (T0 + 60)) // 86400
    assert value(parsed, "last_run_timestamp_seconds", **who) == T0
    assert value(parsed, "last_run_success", **who) == 1
    assert value(parsed, "last_success_timestamp_seconds", **who) == T0
    assert value(parsed, "last_rotation_timestamp_seconds", **who) == T0
    assert value(parsed, "action_info", action="created", **who) == 1
    assert value(parsed, "metrics_generated_timestamp_seconds") == T0 + 60
    for family in parsed.values():
        assert family.type == "gauge" and family.documentation
        assert family.name.startswith("fleet_mtls_")


def test_the_clouds_view_of_the_agent(tmp_path, cert):
    """Connected (0/1) and the last heartbeat's time for the hosts whose run asked the cloud."""
    rows = [status_row(cert, host="up", cloud="active", heartbeat_at="2026-12-01T09:59:55"),
            status_row(cert, host="down", cloud="inactive", heartbeat_at="2026-12-01T08:00:00.5"),
            status_row(cert, host="never", cloud="unseen"),
            status_row(cert, host="unasked", cloud="not asked")]
    parsed = families(open(metrics.write(str(tmp_path), rows, now=T0), encoding="utf-8").read())
    assert [value(parsed, "agent_connected", host=h) for h in ("up", "down", "never")] == [1, 0, 0]
    assert value(parsed, "agent_heartbeat_timestamp_seconds", host="up") == T0 - 5
    assert value(parsed, "agent_heartbeat_timestamp_seconds", host="down") == T0 - 7200  # whole seconds
    hosts = {s.labels["host"] for s in parsed[P + "agent_connected"].samples}
    assert hosts == {"up", "down", "never"}  # a run that did not ask says nothing about it
    assert {s.labels["host"] for s in parsed[P + "agent_heartbeat_timestamp_seconds"].samples} == {"up", "down"}


def test_a_failed_run_keeps_the_last_success_and_rotation(tmp_path, cert):
    directory = str(tmp_path)
    metrics.write(directory, [status_row(cert, action="created", checked_at=T0)], now=T0)
    metrics.write(directory, [status_row(cert, action="unchanged", checked_at=T0 + 3600)], now=T0 + 3600)
    failed = status_row(cert, action="failed", checked_at=T0 + 7200, phase="identity", error="upload refused")
    parsed = families(open(os.path.join(directory, "fleet-mtls.prom"), encoding="utf-8").read())
    assert value(parsed, "last_success_timestamp_seconds") == T0 + 3600
    metrics.write(directory, [failed], now=T0 + 7200)

    parsed = families(open(os.path.join(directory, "fleet-mtls.prom"), encoding="utf-8").read())
    assert value(parsed, "last_run_timestamp_seconds") == T0 + 7200
    assert value(parsed, "last_run_success") == 0
    assert value(parsed, "last_success_timestamp_seconds") == T0 + 3600  # kept
    assert value(parsed, "last_rotation_timestamp_seconds") == T0  # kept
    assert value(parsed, "action_info", action="failed") == 1
    assert [s.labels["action"] for s in parsed[P + "action_info"].samples] == ["failed"]


def test_a_rotation_moves_the_rotation_time_and_the_dates(tmp_path, keys, cert):
    directory = str(tmp_path)
    metrics.write(directory, [status_row(cert, checked_at=T0)], now=T0)
    renewed = build_cert(keys.get(1), "0A1B2C3D", days=365)
    metrics.write(directory, [status_row(renewed, action="rotated", checked_at=T0 + 86400)], now=T0 + 86400)

    parsed = families(open(os.path.join(directory, "fleet-mtls.prom"), encoding="utf-8").read())
    assert value(parsed, "last_rotation_timestamp_seconds") == T0 + 86400
    assert value(parsed, "certificate_not_after_timestamp_seconds") == renewed.not_valid_after_utc.timestamp()
    assert len(parsed[P + "certificate_not_after_timestamp_seconds"].samples) == 1


def test_an_expired_certificate_has_negative_days_left(tmp_path, keys):
    started = datetime.datetime.now(UTC) - datetime.timedelta(days=30)
    old = build_cert(keys.get(), "0A1B2C3D", days=-3, not_before=started)
    text = metrics.render([status_row(old, action="failed", error="expired")])
    assert value(families(text), "certificate_days_left") in (-3, -4)


def test_label_values_are_escaped_and_read_back(tmp_path, cert):
    host = 'edge "quoted" \\n is not a newline\nbut this was, and a backslash \\'
    metrics.write(str(tmp_path), [status_row(cert, host=host, checked_at=T0)], now=T0)
    metrics.write(str(tmp_path), [status_row(cert, host=host, action="failed", error="x", checked_at=T0 + 5)],
                  now=T0 + 5)

    parsed = families((tmp_path / "fleet-mtls.prom").read_text())
    # The newline is written visibly (the label reads "...newline\\nbut..."), quotes and
    # backslashes with the format's escapes; the file is read back through both.
    shown = host.replace("\n", "\\n")
    assert value(parsed, "last_success_timestamp_seconds", host=shown) == T0
    assert value(parsed, "action_info", host=shown, action="failed") == 1


def test_a_fleet_file_keeps_the_newer_run_and_the_other_hosts(tmp_path, keys, cert):
    other = build_cert(keys.get(1), "99887766", days=30)
    directory = str(tmp_path)
    metrics.write(directory, [status_row(cert, checked_at=T0 + 100), status_row(other, host="edge-02")],
                  now=T0 + 100)
    # An older row of edge-01 (a report kept from an earlier run) and no row for edge-02.
    stale = status_row(cert, action="unchanged", checked_at=T0 - 500)
    metrics.write(directory, [stale], now=T0 + 200, keep_other_hosts=True)

    parsed = families((tmp_path / "fleet-mtls.prom").read_text())
    assert value(parsed, "last_run_timestamp_seconds", host="edge-01") == T0 + 100
    assert value(parsed, "action_info", host="edge-01", action="created") == 1
    other_not_after = other.not_valid_after_utc.timestamp()
    assert value(parsed, "certificate_not_after_timestamp_seconds", host="edge-02") == other_not_after
    # days left recomputed for the file's time, kept hosts too
    assert value(parsed, "certificate_days_left", host="edge-02") == (other_not_after - (T0 + 200)) // 86400

    metrics.write(directory, [stale], now=T0 + 300)  # a device file: only its own host
    assert {s.labels["host"] for s in families((tmp_path / "fleet-mtls.prom").read_text())[
        P + "action_info"].samples} == {"edge-01"}


def test_decommissioned_and_not_run_hosts_have_no_expiry(cert):
    parsed = families(metrics.render([
        status_row(cert, host="gone", action="decommissioned"),
        {"host": "later", "action": "not run", "checked_at": ""},
    ], now=T0))
    assert P + "certificate_not_after_timestamp_seconds" not in parsed
    assert value(parsed, "action_info", host="gone", action="decommissioned") == 1
    assert value(parsed, "action_info", host="later", action="not run") == 1
    assert [s.labels["host"] for s in parsed[P + "last_run_timestamp_seconds"].samples] == ["gone"]


def test_the_write_is_a_rename_of_a_fresh_0644_file_whatever_the_umask(tmp_path, cert):
    target = tmp_path / "fleet-mtls.prom"
    target.write_text("old\n")
    before = target.stat().st_ino
    old_umask = os.umask(0o077)
    try:
        metrics.write(str(tmp_path), [status_row(cert)], now=T0)
    finally:
        os.umask(old_umask)
    assert target.stat().st_ino != before  # replaced by rename, not rewritten in place
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet-mtls.prom"]  # no temporary file left


def test_never_through_a_symlink(tmp_path, cert):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(metrics.MetricsError, match="link: it is a symbolic link"):
        metrics.write(str(tmp_path / "link" / "sub"), [status_row(cert)])
    assert list(real.iterdir()) == []

    # A metrics file elsewhere, linked in: neither read (its success time is not kept) nor written.
    elsewhere = tmp_path / "elsewhere"
    victim = metrics.write(str(elsewhere), [status_row(cert, checked_at=T0 - 50)], now=T0 - 50)
    precious = open(victim, encoding="utf-8").read()
    directory = tmp_path / "textfile"
    directory.mkdir()
    (directory / "fleet-mtls.prom").symlink_to(victim)
    metrics.write(str(directory), [status_row(cert, action="failed", error="x", checked_at=T0)], now=T0)
    assert open(victim, encoding="utf-8").read() == precious
    assert not (directory / "fleet-mtls.prom").is_symlink()
    assert P + "last_success_timestamp_seconds" not in families((directory / "fleet-mtls.prom").read_text())


def test_the_directory_is_created_and_must_be_absolute(tmp_path, cert):
    metrics.write(str(tmp_path / "a" / "b"), [status_row(cert)], now=T0)
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o755
    with pytest.raises(metrics.MetricsError, match="absolute"):
        metrics.write("relative/dir", [status_row(cert)])
    with pytest.raises(metrics.MetricsError, match="plain file name"):
        metrics.write(str(tmp_path), [status_row(cert)], name="../x.prom")


@pytest.mark.parametrize("text, expected", [
    ("2026-12-01T10:00:00Z", T0),
    ("2026-12-01T10:00:00+00:00", T0),
    ("2026-12-01T13:00:00+03:00", T0),
    ("2026-12-01 10:00:00", T0),
    ("", None),
    ("yesterday", None),
])
def test_epoch(text, expected):
    assert metrics.epoch(text) == expected
