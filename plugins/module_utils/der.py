# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one standard-library DER / X.509 reader: tag-length-value elements, their children,
INTEGERs, and what the check needs of a certificate (CN, validity, fingerprint).

Standard library only, on purpose: the agent check (``check.py``) uses it on devices where the
``cryptography`` library may be missing, and ``keys.py`` uses it to look at a private key
without an OpenSSL load. Runs on Python 3.9 or later.

Only what X.509 certificates and PKCS#1/PKCS#8 keys need: single-byte tags and definite lengths
of up to four bytes. It reads positions in a buffer and never copies or formats its content;
the errors are fixed texts (``ValueError``) that never contain the bytes read.
"""
from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import re

SEQUENCE = 0x30
SET = 0x31
INTEGER = 0x02
OCTET_STRING = 0x04
OBJECT_IDENTIFIER = 0x06
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
EXPLICIT_0 = 0xA0

_OID_COMMON_NAME = b"\x55\x04\x03"
_PEM_CERT_RE = re.compile(
    r"-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END CERTIFICATE-----"
)

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


# --------------------------------------------------------------------------- X.509


def pem_certificate_der(pem_text):
    """The DER of the first certificate of a PEM text. Raises ValueError."""
    match = _PEM_CERT_RE.search(pem_text)
    if not match:
        raise ValueError("no PEM certificate found")
    try:
        return base64.b64decode("".join(match.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("bad PEM base64") from None


def parse_certificate(data):
    """What the check needs of a certificate, from PEM text or DER bytes.

    Returns a dict: ``cn`` (the last subject CN, as OpenSSL shows it; ``""`` when none),
    ``not_before``, ``not_after`` (aware UTC datetimes) and ``fingerprint_sha256`` (lower-case
    hex of the DER). Raises ValueError."""
    der = pem_certificate_der(data) if isinstance(data, str) else bytes(data)
    tag, start, end = read_tlv(der, 0)
    if tag != SEQUENCE or end != len(der):
        raise ValueError("not a certificate")
    cert_parts = read_children(der, start, end)
    if len(cert_parts) != 3 or cert_parts[0][0] != SEQUENCE:
        raise ValueError("not a certificate")
    tbs = read_children(der, cert_parts[0][1], cert_parts[0][2])
    if tbs and tbs[0][0] == EXPLICIT_0:  # version
        tbs = tbs[1:]
    # serialNumber, signature, issuer, validity, subject, ...
    if len(tbs) < 5 or tbs[3][0] != SEQUENCE or tbs[4][0] != SEQUENCE:
        raise ValueError("not a certificate")
    validity = read_children(der, tbs[3][1], tbs[3][2])
    if len(validity) != 2:
        raise ValueError("bad validity")
    return {
        "cn": _common_name(der, tbs[4][1], tbs[4][2]),
        "not_before": read_time(der, validity[0]),
        "not_after": read_time(der, validity[1]),
        "fingerprint_sha256": hashlib.sha256(der).hexdigest(),
    }


def decode_string(tag, raw):
    try:
        if tag == 0x1E:  # BMPString
            return raw.decode("utf-16-be")
        if tag == 0x1C:  # UniversalString
            return raw.decode("utf-32-be")
        if tag == 0x14:  # T61String, read as latin-1 like OpenSSL does
            return raw.decode("latin-1")
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("bad string in a name") from None


def read_time(data, element):
    tag, start, end = element
    try:
        text = data[start:end].decode("ascii")
        if tag == UTC_TIME:  # YYMMDDHHMMSSZ; RFC 5280: 50-99 are 19xx
            year = int(text[0:2])
            year += 1900 if year >= 50 else 2000
            rest = text[2:]
        elif tag == GENERALIZED_TIME:  # YYYYMMDDHHMMSSZ
            year = int(text[0:4])
            rest = text[4:]
        else:
            raise ValueError("unexpected time type")
        if len(rest) != 11 or not rest.endswith("Z") or not (text[:-1].isascii() and text[:-1].isdigit()):
            raise ValueError("unsupported time format")
        fields = [int(rest[i:i + 2]) for i in range(0, 10, 2)]
        return datetime.datetime(year, *fields, tzinfo=datetime.timezone.utc)
    except (UnicodeDecodeError, ValueError):
        raise ValueError("bad certificate time") from None


def _common_name(data, start, end):
    """The last CN of an X.501 Name (as OpenSSL's subject string shows it), or ''."""
    found = ""
    for set_tag, set_start, set_end in read_children(data, start, end):
        if set_tag != SET:
            raise ValueError("bad RDN")
        for atv_tag, atv_start, atv_end in read_children(data, set_start, set_end):
            if atv_tag != SEQUENCE:
                raise ValueError("bad attribute")
            parts = read_children(data, atv_start, atv_end)
            if len(parts) != 2 or parts[0][0] != OBJECT_IDENTIFIER:
                raise ValueError("bad attribute")
            if data[parts[0][1]:parts[0][2]] == _OID_COMMON_NAME:
                found = decode_string(parts[1][0], data[parts[1][1]:parts[1][2]])
    return found
