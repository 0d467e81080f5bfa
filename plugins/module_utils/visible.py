# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Text cells that cannot forge what a reader sees: control characters written as escapes.

A host name (or an error, an ID) comes from an inventory or a server, and a report prints it
in a table, a CSV, a Prometheus label, an AWX artifact. A raw newline there forges a table
line, a CR overwrites one, ESC/OSC sequences retitle or reset the reader's terminal, a bidi
override reorders it. ``visible`` writes each such character as a backslash escape (``\\n``,
``\\r``, ``\\t``, ``\\x1b``, ``\\u202e``): C0, DEL and C1 controls, the Unicode line and
paragraph separators and the bidi embedding/override/isolate controls. Printable text, a
backslash included, is left as it is, so ordinary names are unchanged in every format.

Standard library only (the device writes metrics with it too).
"""
from __future__ import annotations

import re

_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match):
    char = match.group(0)
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code


def visible(text):
    """``text`` (any value; None is "") with every invisible control written as an escape."""
    return _INVISIBLE.sub(_escape, "" if text is None else str(text))


def visible_data(value):
    """``value`` (JSON-like data) with ``visible`` applied to every string in it, keys too."""
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, dict):
        return {visible_data(key): visible_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [visible_data(item) for item in value]
    return value
