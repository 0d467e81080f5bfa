"""headers_file: request headers read on the device from a JSON file, never echoed."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.headers import (
    MAX_HEADERS_FILE,
    merge_headers,
    read_headers_file,
)

SECRET = "s3cr3t-TOKEN-0123456789abcdef"


def write(tmp_path, data, name="headers.json", mode=0o600):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("content, expected", [
    ({"Authorization": "Bearer " + SECRET}, {"Authorization": "Bearer " + SECRET}),
    ({}, {}),
    ({"Authorization": "Bearer x", "X-Fleet-Site": "plant 7", "x-empty": ""},
     {"Authorization": "Bearer x", "X-Fleet-Site": "plant 7", "x-empty": ""}),
    ({"X-Note": "plant \t 7"}, {"X-Note": "plant \t 7"}),
])
def test_reads_a_json_object_of_strings(tmp_path, content, expected):
    path = write(tmp_path, json.dumps(content))
    assert read_headers_file(str(path)) == expected


def test_a_utf8_bom_is_accepted(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbf" + json.dumps({"Authorization": "Bearer x"}).encode())
    assert read_headers_file(str(path)) == {"Authorization": "Bearer x"}


# Each row: file content (holding SECRET where a careless message would echo it), the
# expected words of the error.
BAD_CONTENT = [
    pytest.param('{"Authorization": "Bearer %s"' % SECRET, "is not valid JSON", id="truncated-json"),
    pytest.param("Authorization: Bearer %s\n" % SECRET, "is not valid JSON", id="header-line-not-json"),
    pytest.param("", "is not valid JSON", id="empty"),
    pytest.param('["Bearer %s"]' % SECRET, "must hold a JSON object", id="list"),
    pytest.param('"Bearer %s"' % SECRET, "must hold a JSON object", id="string"),
    pytest.param("null", "must hold a JSON object", id="null"),
    pytest.param('{"Authorization": %s}' % "1234567890123456789", "must be a string, not a number", id="number"),
    pytest.param('{"Authorization": ["Bearer %s"]}' % SECRET, "must be a string, not a list", id="list-value"),
    pytest.param('{"Authorization": {"Bearer": "%s"}}' % SECRET, "must be a string, not an object", id="object-value"),
    pytest.param('{"Authorization": null}', "must be a string, not null", id="null-value"),
    pytest.param('{"Authorization": true}', "must be a string, not a boolean", id="bool-value"),
    pytest.param('{"Bearer %s": "x"}' % SECRET, "not a valid HTTP field name (not shown)", id="secret-as-name"),
    pytest.param('{"": "Bearer %s"}' % SECRET, "not a valid HTTP field name", id="empty-name"),
    pytest.param('{"Authorization": "Bearer %s\\r\\nX-Evil: 1"}' % SECRET, "contains a line break",
                 id="crlf-injection"),
    pytest.param('{"Authorization": "Bearer %s\\u0000"}' % SECRET, "control character", id="nul"),
    pytest.param(b"\xff\xfe" + SECRET.encode(), "is not UTF-8 text", id="not-utf8"),
    # Field values are visible ASCII: Latin-1 would be sent as other bytes, beyond it not at all.
    pytest.param('{"Authorization": "Bearer %s-t\u00f6k\u00e9n"}' % SECRET, "holds a character outside ASCII",
                 id="latin-1"),
    pytest.param('{"Authorization": "Bearer %s-\u0442\u043e\u043a\u0435\u043d\u20ac"}' % SECRET,
                 "holds a character outside ASCII", id="cyrillic-euro"),
    pytest.param('{"Authorization": " Bearer %s"}' % SECRET, "starts or ends with a space", id="leading-space"),
    pytest.param('{"Authorization": "Bearer %s\u0085"}' % SECRET, "outside ASCII", id="c1-control"),
]


@pytest.mark.parametrize("content, words", BAD_CONTENT)
def test_bad_content_is_refused_without_showing_it(tmp_path, content, words):
    path = write(tmp_path, content)
    with pytest.raises(ConfigError) as err:
        read_headers_file(str(path))
    msg = str(err.value)
    assert words in msg
    assert str(path) in msg  # says which file
    assert SECRET not in msg and "Bearer" not in msg and "1234567890" not in msg


def test_the_name_of_a_header_with_a_bad_value_is_shown(tmp_path):
    path = write(tmp_path, json.dumps({"Authorization": 42}))
    with pytest.raises(ConfigError, match="the value of header Authorization must be a string"):
        read_headers_file(str(path))


def test_a_json_error_gives_the_position(tmp_path):
    path = write(tmp_path, '{\n  "Authorization": "Bearer %s",\n}' % SECRET)
    with pytest.raises(ConfigError, match=r"line 3 column 1\)") as err:
        read_headers_file(str(path))
    assert SECRET not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="headers_file .*/nope.json does not exist"):
        read_headers_file(str(tmp_path / "nope.json"))


def test_relative_path_is_refused(tmp_path, monkeypatch):
    write(tmp_path, "{}")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="must be an absolute path"):
        read_headers_file("headers.json")


def test_symlink_is_refused_even_to_a_good_file(tmp_path):
    target = write(tmp_path, json.dumps({"Authorization": "Bearer " + SECRET}))
    link = tmp_path / "link.json"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="is a symbolic link; refused") as err:
        read_headers_file(str(link))
    assert SECRET not in str(err.value)


def test_dangling_symlink_is_refused_as_a_link(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="is a symbolic link; refused"):
        read_headers_file(str(link))


def test_directory_is_not_a_regular_file(tmp_path):
    with pytest.raises(ConfigError, match="is not a regular file"):
        read_headers_file(str(tmp_path))


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file"):
        read_headers_file(str(fifo))


def test_a_path_through_a_file_cannot_be_opened(tmp_path):
    write(tmp_path, "{}")
    with pytest.raises(ConfigError, match="cannot open headers_file .*: Not a directory"):
        read_headers_file(str(tmp_path / "headers.json" / "x"))


def test_too_large_is_refused(tmp_path):
    padding = " " * MAX_HEADERS_FILE
    path = write(tmp_path, '{"Authorization": "Bearer %s"}%s' % (SECRET, padding))
    with pytest.raises(ConfigError, match="is larger than 65536 bytes; refused") as err:
        read_headers_file(str(path))
    assert SECRET not in str(err.value)


def test_largest_accepted_size(tmp_path):
    body = json.dumps({"Authorization": "Bearer x"})
    path = write(tmp_path, body + " " * (MAX_HEADERS_FILE - len(body)))
    assert read_headers_file(str(path)) == {"Authorization": "Bearer x"}


@pytest.mark.parametrize("base, override, expected", [
    ({}, {"Authorization": "b"}, {"Authorization": "b"}),
    ({"Authorization": "a", "X-Site": "1"}, {"authorization": "b"}, {"X-Site": "1", "authorization": "b"}),
    ({"AUTHORIZATION": "a"}, {"Authorization": "b", "X-New": "n"}, {"Authorization": "b", "X-New": "n"}),
    ({"X-Site": "1"}, {}, {"X-Site": "1"}),
    (None, None, {}),
])
def test_merge_headers_file_wins_case_insensitively(base, override, expected):
    assert merge_headers(base, override) == expected
