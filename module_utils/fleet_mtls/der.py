# -*- coding: utf-8 -*-
"""A minimal DER reader: tag-length-value elements, their children, INTEGERs.

Standard library only, on purpose: ``library/mtls_check.py`` uses it on devices where the
``cryptography`` library may be missing, and ``certs.py`` uses it to look at a private key
without an OpenSSL load. Runs on Python 3.9 or later.

Only what X.509 certificates and PKCS#1/PKCS#8 keys need: single-byte tags and definite lengths
of up to four bytes. It reads positions in a buffer and never copies or formats its content;
the errors are fixed texts (``ValueError``) that never contain the bytes read.
"""
from __future__ import annotations

SEQUENCE = 0x30
SET = 0x31
INTEGER = 0x02
OCTET_STRING = 0x04
OBJECT_IDENTIFIER = 0x06

_MAX_LENGTH_BYTES = 4


def read_tlv(data, pos):
    """Read the DER element at ``pos``; return ``(tag, content_start, content_end)``.

    Raises ValueError when the element is truncated, uses the multi-byte tag form, or has an
    indefinite or over-long length."""
    if pos < 0 or pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("unsupported DER tag")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > _MAX_LENGTH_BYTES or pos + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, pos, end


def read_expected(data, pos, tag):
    """Read the DER element at ``pos``, which must have ``tag``; return ``(content_start,
    content_end)``. Raises ValueError otherwise."""
    if pos >= len(data) or data[pos] != tag:
        raise ValueError("unexpected DER tag")
    _tag, start, end = read_tlv(data, pos)
    return start, end


def read_children(data, start, end):
    """The elements from ``start`` to ``end`` (a constructed element's content), as a list of
    ``(tag, content_start, content_end)``. Raises ValueError if one runs past ``end``."""
    found = []
    pos = start
    while pos < end:
        tag, cstart, cend = read_tlv(data, pos)
        if cend > end:
            raise ValueError("truncated DER")
        found.append((tag, cstart, cend))
        pos = cend
    return found


def read_integer(data, pos):
    """Read the INTEGER at ``pos`` (two's complement); return ``(value, content_end)``."""
    start, end = read_expected(data, pos, INTEGER)
    if start == end:
        raise ValueError("empty INTEGER")
    return int.from_bytes(data[start:end], "big", signed=True), end
