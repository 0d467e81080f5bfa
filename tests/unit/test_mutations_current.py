"""The mutation table (tests/faults/mutate.py) still meets the code and the suites: every edit's
text is found in the file it edits, and every case it runs names a test file that exists. A
table that drifted from the code would report "stale" only when someone runs it."""

from __future__ import annotations

import pytest

from tests.faults.mutate import MUTATIONS, REPO


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_every_edit_finds_its_text(name):
    _what, edits, _cases = MUTATIONS[name]
    for rel, old, _new in edits:
        assert old in (REPO / rel).read_text(), f"{name}: {old[:60]!r} not found in {rel}"


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_every_case_names_an_existing_test(name):
    _what, _edits, cases = MUTATIONS[name]
    assert cases, name
    for case in cases:
        path, _, function = case.partition("::")
        source = (REPO / path).read_text()
        assert "def " + function.split("[")[0] + "(" in source, f"{name}: {case} names no test"
