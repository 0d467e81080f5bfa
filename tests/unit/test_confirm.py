"""confirm.py: what the cloud's view of a running agent means (verdicts, the poll, an unchanged
run's review, an audit's flags, the takeover evidence), with a fake clock: no network, no
process, no sleep. The route itself is met in tests/module/test_confirm.py."""

from __future__ import annotations

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import api, confirm
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ApiError

ID = "0A1B2C3D"


def beat(status="active", uptime=10, timestamp="2026-12-05T10:00:00", seen=True):
    if not seen:
        return api.Heartbeat(ID, seen=False, detail="No heartbeat data found for agent %s" % ID)
    return api.Heartbeat(ID, status=status, uptime=uptime, timestamp=timestamp)


@pytest.mark.parametrize(("hb", "since", "kind", "words"), [
    (beat(uptime=3), 5.0, "confirmed", "active, uptime 3s (the swap was 5s ago)"),
    (beat(uptime=5), 5.0, "confirmed", "active, uptime 5s"),
    (beat(uptime=120), 5.0, "old", "active but started before the swap: the agent still runs the old identity"),
    (beat(uptime=None), 5.0, "old", "carries no uptime"),
    (beat(status="inactive"), 5.0, "inactive", "inactive since 2026-12-05T10:00:00"),
    (beat(seen=False), 5.0, "unseen", "404 never seen (No heartbeat data found for agent 0A1B2C3D)"),
])
def test_the_verdicts(hb, since, kind, words):
    verdict = confirm.judge(hb, since)
    assert verdict.kind == kind and words in verdict.message and verdict.ok is (kind == "confirmed")


class Clock:
    """A monotonic clock that sleep() moves forward."""

    def __init__(self):
        self.now = 100.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_the_poll_asks_until_an_agent_started_since_the_swap_is_active():
    clock = Clock()
    swap = clock.now
    answers = iter([beat(seen=False), beat(status="inactive"), beat(uptime=400), beat(uptime=1)])
    verdict = confirm.poll(lambda: next(answers), lambda: clock.now - swap, timeout=10, sleep=clock.sleep, clock=clock)
    assert verdict.ok and clock.slept == [1.0, 1.0, 1.0]


def test_the_poll_gives_the_last_answer_at_the_timeout_and_retries_only_transient_errors():
    clock = Clock()
    errors = iter([ApiError("down", status=None), ApiError("busy", status=503)])

    def ask():
        error = next(errors, None)
        if error is not None:
            raise error
        return beat(uptime=999)

    verdict = confirm.poll(ask, lambda: 1.0, timeout=5, sleep=clock.sleep, clock=clock)
    assert verdict.kind == "old" and sum(clock.slept) <= 5
    with pytest.raises(ApiError, match="Forbidden"):
        confirm.poll(lambda: (_ for _ in ()).throw(ApiError("HTTP 403: Forbidden", status=403)), lambda: 1.0,
                     timeout=5, sleep=clock.sleep, clock=clock)
    with pytest.raises(ApiError, match="down"):  # never answered: the error is the outcome
        confirm.poll(lambda: (_ for _ in ()).throw(ApiError("down", status=None)), lambda: 1.0, timeout=2,
                     sleep=clock.sleep, clock=clock)


@pytest.mark.parametrize(("hb", "audit", "outcome", "words"), [
    (beat(uptime=3), False, "ok", "active"),
    (beat(seen=False), False, "ok", "never seen"),  # an unchanged run reports, never fails on it
    (beat(status="inactive"), False, "ok", "inactive"),
    (beat(uptime=4000), False, "heal", "active but started before the last swap"),
    (beat(uptime=4000), True, "fail", "active but started before the last swap"),
    (beat(seen=False), True, "fail", "never seen"),
    (beat(status="inactive", timestamp="2026-12-05T09:00:00"), True, "fail", "silent for more than 10 minutes"),
    (beat(status="inactive", timestamp="2026-12-05T09:55:00"), True, "ok", "inactive"),
])
def test_an_unchanged_run_reviews_one_answer(hb, audit, outcome, words):
    now = confirm.epoch("2026-12-05T10:00:00")
    assert confirm.review(hb, 3600.0, audit=audit, stale_minutes=10, now=now)[0] == outcome
    assert words in confirm.review(hb, 3600.0, audit=audit, stale_minutes=10, now=now)[1]


def test_an_id_taken_over_is_not_healed_for_the_replaced_device():
    outcome, message = confirm.review(beat(uptime=4000), 1.0, taken_over=True)
    assert outcome == "ok" and "the device the ID was taken from" in message


def test_the_report_fields():
    assert confirm.report_fields(None) == {"cloud": "not asked", "agent_uptime_s": None, "heartbeat_at": ""}
    assert confirm.report_fields(beat(seen=False)) == {"cloud": "unseen", "agent_uptime_s": None, "heartbeat_at": ""}
    assert confirm.report_fields(beat(uptime=7.9)) == {
        "cloud": "active", "agent_uptime_s": 7, "heartbeat_at": "2026-12-05T10:00:00"}
    assert confirm.report_fields(beat(status="inactive"))["cloud"] == "inactive"


def test_the_evidence_that_a_device_holds_an_id():
    assert confirm.holder_evidence(beat(seen=False)) is None
    assert confirm.holder_evidence(beat(uptime=42)).startswith("the cloud sees its agent active (uptime 42s")
    assert "inactive since 2026-12-05T10:00:00" in confirm.holder_evidence(beat(status="inactive"))
    refusal = confirm.takeover_refusal(ID, "the cloud sees its agent active")
    assert refusal.startswith("agent ID 0A1B2C3D already belongs to a device: the cloud sees its agent active")
    assert "agent_id_takeover=true" in refusal


@pytest.mark.parametrize(("text", "seconds"), [
    ("2026-12-05T10:00:00", 1796464800), ("2026-12-05T10:00:00.5", 1796464800.5),
    ("2026-12-05T10:00:00+01:00", 1796461200), ("2026-12-05T10:00:00Z", 1796464800), ("yesterday", None),
])
def test_the_agents_time(text, seconds):
    assert confirm.epoch(text) == seconds


# ---- the contract's pieces (api.py)


@pytest.mark.parametrize(("flavor", "confirm", "mode"), [
    ("legacy", None, "none"),
    ("enroll", None, "none"),
    ("api_service", None, "heartbeat"),
    ("api_service", "none", "none"),
    ("legacy", "heartbeat", "heartbeat"),
])
def test_the_default_of_confirm_follows_the_flavor(flavor, confirm, mode):
    """The flavor's has_heartbeat decides the default; the option, when given, wins."""
    assert api.confirm_mode(api.FLAVORS[flavor], confirm) == mode


def test_a_reservation_lapses_by_the_devices_clock_with_a_margin():
    def reservation(expires_in, sent_at):
        return api.Reservation("0A1B2C3D", expires_at=None, expires_in=expires_in, sent_at=sent_at)

    assert not reservation(10, 100.0).lapsed(now=108.9) and reservation(10, 100.0).lapsed(now=109.0)
    assert not reservation(None, 0.0).lapsed(now=1e9)
    assert reservation(0, 0.0).lapsed(now=0.0)


def test_a_heartbeat_handed_over_round_trips_and_is_checked():
    hb = beat(uptime=3)
    assert vars(api.Heartbeat.from_dict(hb.as_dict())) == vars(hb)
    for bad in ({"seen": True}, {"agent_id": ID, "uptime": "3"}, {"agent_id": ID, "uptime": True}, "x"):
        with pytest.raises(Exception, match="the cloud's view"):
            api.Heartbeat.from_dict(bad)
