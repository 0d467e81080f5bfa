"""Fixtures of the fault matrix: a device (``tests/fixtures/device.py``: an identity directory
under a tmp home) bound to a reference service, and the registry's changes during a case."""
from __future__ import annotations

import pytest

from tests.fixtures.device import Device


@pytest.fixture
def registry_delta(svc):
    """Call it at the end of a test: (new reserved IDs, {id: fp} registered/changed since the start)."""
    ids_before = set(svc.reserved_ids())
    regs_before = svc.registrations()

    def delta():
        ids = [i for i in svc.reserved_ids() if i not in ids_before]
        regs = {i: fp for i, fp in svc.registrations().items() if regs_before.get(i) != fp}
        return ids, regs

    return delta


@pytest.fixture
def device(tmp_path, svc):
    return Device(tmp_path, svc)


@pytest.fixture
def make_device(tmp_path):
    """Devices bound to other services (dedicated instances) or with other defaults."""
    count = [0]

    def make(service, **defaults):
        count[0] += 1
        return Device(tmp_path / f"dev{count[0]}", service, **defaults)

    return make
