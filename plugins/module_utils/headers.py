# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Request headers: read from a file on the device (the module's ``headers_file`` option), and
checked as HTTP fields wherever they come from (``check_headers``).

A bearer token handed to a module as an argument is printed by ansible-core's ANSIBLE_DEBUG
output, ``no_log`` or not. Read on the device instead, from a JSON object of header name ->
string value, the token is never a module argument. Errors name the file (or the setting the
headers came from), the header and what is wrong with it, never its content (values, names
that fail validation, the text around a JSON error).

Values must be RFC 9110 field values of visible ASCII: http.client sends a ``str`` value as
Latin-1, so ``tökén`` would reach the server as other bytes than the token, and ``токен€``
cannot be sent at all (a crash inside requests, before this check). Both are refused before
any request.
"""
from __future__ import annotations

import errno
import json
import os
import re
import stat

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.fsutil import read_at_most
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.names import setting

MAX_HEADERS_FILE = 64 * 1024
# The file the mtls_identity action plugin writes on the device for ``headers``/``headers_src``
# (the module deletes it once read; its errors name those settings, not this temporary file).
HEADERS_FILE_NAME = "mtls-identity-headers.json"
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
# RFC 9110 field-name: a token.
_FIELD_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# RFC 9110 field-value: visible characters, with spaces and tabs only between them. obs-text
# (0x80-0xFF) is left out: see the module docstring.
_BAD_VALUE_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_FIELD_VALUE = re.compile(r"(?:[\x21-\x7e](?:[\x20\x09\x21-\x7e]*[\x21-\x7e])?)?")


def read_headers_file(path, label=None):
    """Return the headers (dict str -> str) held in the JSON file ``path``.

    The file is opened with O_NOFOLLOW (a symbolic link is refused) and must be a regular
    file of at most 64 KiB holding one JSON object whose keys are HTTP field names and whose
    values are HTTP field values (``check_headers``). Raises ConfigError naming the file, or
    ``label`` instead (the setting a file written for the module came from); no message
    contains any byte of the file.
    """
    if not isinstance(path, str) or not path:
        raise ConfigError("%s must be a path" % setting("headers_file"))
    if not os.path.isabs(path):
        raise ConfigError("%s must be an absolute path, got %r" % (setting("headers_file"), path))
    what = label or "%s %s" % (setting("headers_file"), path)
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise ConfigError("%s does not exist" % what) from None
        if exc.errno == errno.ELOOP:
            raise ConfigError("%s is a symbolic link; refused (name the file itself)" % what) from None
        raise ConfigError("cannot open %s: %s" % (what, exc.strerror)) from None
    try:
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError("%s is not a regular file" % what)
            data = None if st.st_size > MAX_HEADERS_FILE else read_at_most(fd, MAX_HEADERS_FILE)
        except OSError as exc:
            raise ConfigError("cannot read %s: %s" % (what, exc.strerror)) from None
    finally:
        os.close(fd)
    if data is None:
        raise ConfigError("%s is larger than %d bytes; refused" % (what, MAX_HEADERS_FILE))
    return parse_headers(data, what)


def parse_headers(data, what="headers_file"):
    """Validate the bytes of a headers file; see read_headers_file."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("%s is not UTF-8 text" % what) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        payload = json.loads(text)
    except ValueError as exc:
        # JSONDecodeError.msg ("Expecting value", ...) and the position hold no file content.
        detail = ""
        if hasattr(exc, "msg") and hasattr(exc, "lineno"):
            detail = " (%s at line %d column %d)" % (exc.msg, exc.lineno, exc.colno)
        raise ConfigError("%s is not valid JSON%s" % (what, detail)) from None
    if not isinstance(payload, dict):
        raise ConfigError("%s must hold a JSON object of header names to string values, not %s"
                          % (what, _json_type(payload)))
    return check_headers(payload, what)


def check_headers(headers, what):
    """``headers`` (a dict) as a new dict when every name is an RFC 9110 field name and every
    value a string holding an RFC 9110 field value of visible ASCII; else ConfigError naming
    ``what`` (the setting or file the headers came from) and the header, never a value."""
    checked = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
            # The name is not shown: a malformed file may have a secret where a name should be.
            raise ConfigError("%s holds a header name that is not a valid HTTP field name (not shown)" % what)
        if not isinstance(value, str):
            raise ConfigError("%s: the value of header %s must be a string, not %s"
                              % (what, name, _json_type(value)))
        problem = _value_problem(value)
        if problem:
            raise ConfigError("%s: the value of header %s %s; HTTP field values are visible ASCII "
                              "(RFC 9110), so nothing was sent" % (what, name, problem))
        checked[name] = value
    return checked


def _value_problem(value):
    """What makes ``value`` no field value, in words that show none of it; None when it is one."""
    if _FIELD_VALUE.fullmatch(value):
        return None
    if _BAD_VALUE_CHAR.search(value):
        return "contains a line break or a control character"
    if any(ord(char) > 0x7E for char in value):
        return "holds a character outside ASCII"
    return "starts or ends with a space or a tab"


def merge_headers(base, override):
    """``base`` updated with ``override``; names compare case-insensitively (HTTP), so an
    ``authorization`` in ``override`` replaces an ``Authorization`` in ``base``."""
    merged = dict(base or {})
    for name, value in (override or {}).items():
        for existing in [k for k in merged if str(k).lower() == name.lower()]:
            del merged[existing]
        merged[name] = value
    return merged


def _json_type(value):
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a string"


def module_headers(module, transferred=None):
    """The API headers of a module run: its ``headers`` (no_log) merged with those of its
    ``headers_file``, each checked as HTTP fields, whose values are masked in everything the
    module returns as no_log masks ``headers`` (short values aside: masking "1" would mangle
    every number). A file named ``transferred`` (the action plugin's copy) is deleted as soon as
    it is read, and its errors name the settings it came from, not its temporary path."""
    headers, file_values = params_headers(module.params, transferred)
    module.no_log_values.update(v for v in file_values if len(v) >= 4)
    return headers


def remove_transfer_dir(path):
    """Remove the action plugin's temporary directory that held the headers file at ``path``
    (already deleted) when it is now empty - with pipelining, nothing else is put there - so
    that the controller needs no round trip more to remove it. Whether it was removed."""
    directory = os.path.dirname(path)
    if not os.path.basename(directory).startswith("ansible-tmp-"):
        return False
    try:
        os.rmdir(directory)  # only an empty directory; a symbolic link is refused (ENOTDIR)
    except OSError:
        return False
    return True


def params_headers(p, transferred=None):
    """``module_headers`` for the options ``p``: (the merged headers, the values read from the
    file, which a module masks)."""
    headers = check_headers(p["headers"], setting("headers"))
    if not p["headers_file"]:
        return headers, []
    copied = bool(transferred) and os.path.basename(p["headers_file"]) == transferred
    label = "%s (or %s)" % (setting("headers"), setting("headers_src")) if copied else None
    try:
        file_headers = read_headers_file(p["headers_file"], label)
    finally:
        if copied:
            try:
                os.unlink(p["headers_file"])
            except OSError:
                pass  # the action plugin removes its directory anyway
    return merge_headers(headers, file_headers), list(file_headers.values())
