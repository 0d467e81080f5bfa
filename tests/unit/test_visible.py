"""visible(): report cells whose control characters are written as escapes."""

from __future__ import annotations

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.visible import visible, visible_data


@pytest.mark.parametrize(("text", "shown"), [
    ("edge-01", "edge-01"),
    ("a\\nb C:\\x", "a\\nb C:\\x"),  # printable backslashes stay as they are
    ("evil\nFAKE", "evil\\nFAKE"),
    ("\r\t", "\\r\\t"),
    ("\x1b]0;t\x07\x1bc", "\\x1b]0;t\\x07\\x1bc"),
    ("\x00\x7f\x85\x9b", "\\x00\\x7f\\x85\\x9b"),
    ("caf\u00e9 \u20ac", "caf\u00e9 \u20ac"),  # printable non-ASCII stays
    ("a\u2028b\u202ec\u2066", "a\\u2028b\\u202ec\\u2066"),
    (None, ""),
    (42, "42"),
])
def test_controls_are_written_as_escapes(text, shown):
    assert visible(text) == shown


def test_data_is_made_visible_throughout():
    data = {"hosts": [{"host": "a\nb", "days_left": 3, "ok": True}], "k\x1b": ("x\ty",)}
    assert visible_data(data) == {"hosts": [{"host": "a\\nb", "days_left": 3, "ok": True}], "k\\x1b": ["x\\ty"]}
