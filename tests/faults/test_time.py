"""Fault matrix, time: a device clock far from the provisioning API's (the engine runs in this
process with a skewed ``now``; the service's ``Date`` is the real time), and an enrollment CA
that issues certificates shorter than the device's renewal window."""
from __future__ import annotations

import datetime
import os

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import IdentityError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.fsutil import IdentityDir
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import (
    assess,
    decide,
    ensure_identity,
)
from tests.fixtures.product import api_client
from tests.fixtures.product import settings as make_settings

ID_EP = "/generate-orchestrator-id"
UPLOAD_EP = "/upload-orchestrator-certificate"
ENROLL_EP = "/orchestrators/enroll"
DAY = datetime.timedelta(days=1)


def run_engine(device, now=None, **settings):
    """One engine run on ``device`` in this process; returns (result, warnings)."""
    svc = device.service

    def client():
        return api_client(svc.api_url, ca_path=str(svc.ca_path), retries=0, timeout=10, sleep=lambda _s: None)

    settings.setdefault("key_size", 2048)
    return ensure_identity(make_settings(device.path, **settings), client, now=now)


@pytest.mark.parametrize(("phase", "skew", "words"), [
    ("rotate", 340 * DAY, "340 days ahead of"),   # the certificate looks due: every run rotated
    ("rotate", -730 * DAY, "730 days behind"),    # it looks not yet valid
    ("create", 730 * DAY, "730 days ahead of"),
], ids=["ahead-340d-rotate", "behind-2y-rotate", "ahead-2y-create"])
def test_skewed_clock_refuses_to_mint_or_rotate(device, svc, registry_delta, phase, skew, words):
    """The clock is compared with the server's Date before anything is requested, uploaded or
    enrolled: the run refuses, saying so, and changes nothing; and it does so on every run
    (no rotation whose upload the server refuses as not valid yet, run after run)."""
    agent = device.seed() if phase == "rotate" else None
    before, registered = device.state(), svc.registrations()
    now = datetime.datetime.now(datetime.UTC) + skew
    for _ in range(2):
        with pytest.raises(IdentityError) as info:
            run_engine(device, now=now)
        msg = info.value.msg
        assert "the device clock is %s the provisioning API (server Date: " % words in msg, msg
        assert msg.endswith("fix the clock (NTP); nothing was changed"), msg
        if phase == "rotate":
            device.assert_intact(before)
        else:
            assert list(device.path.iterdir()) == []  # the (new) directory holds nothing
    assert svc.request_count(ID_EP) == svc.request_count(UPLOAD_EP) == 0
    assert svc.registrations() == registered
    assert registry_delta()[0] == ([agent] if agent else [])  # no ID reserved


def test_small_skew_is_tolerated(device, svc):
    """Two minutes ahead (less than the notBefore backdate): the rotation goes through."""
    agent = device.seed()
    now = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=2)
    result, _warnings = run_engine(device, now=now, rotate="always")
    assert result["action"] == "rotated" and result["agent_id"] == agent
    device.assert_registered()


@pytest.fixture
def short_lived_ca(service_factory):
    """A service whose enrollment CA issues certificates valid for 20 days."""
    return service_factory(extra_args=["--enrolled-days", "20"])


def test_ca_lifetime_shorter_than_the_renewal_window_does_not_reenrol_every_run(make_device, short_lived_ca):
    """enrollment=csr with renew_before_days=30 (the default) and valid_days=365, while the CA
    issues 20-day certificates: the first run enrols and warns that the CA decided another
    lifetime; the next runs are unchanged (with a warning naming the lifetimes) instead of
    re-enrolling each time; renewal comes once less than a third of the issued lifetime is left."""
    svc = short_lived_ca
    device = make_device(svc, enrollment="csr")
    created = device.run()
    assert not created.failed and created.result["action"] == "created", created
    svc.clear_faults()
    for _ in range(2):
        again = device.run()
        assert not again.failed and again.result["action"] == "unchanged", again
        assert "issues certificates valid for 20 days, not more than renew_before_days=30" in again.output
    assert svc.request_count(ENROLL_EP) == 0
    assert "issued a certificate valid for 20 days, not the valid_days=365" in created.output, created.output
    assert svc.whoami(device.cert_path, device.key_path) == (200, {"id": device.agent_id})

    # 14 days on (6 of 20 left, under a third): due, re-enrolled under the same ID
    with IdentityDir.open(str(device.path), os.geteuid(), os.getegid()) as idir:
        a = assess(idir)
    later = a.cert_info.not_before + 14 * DAY
    plan = decide(a, make_settings(device.path, key_size=2048, enrollment="csr"), now=later)
    assert plan.kind == "rekey" and "less than a third of its issued lifetime" in plan.reason, plan
