"""Agent ID validation, reason sanitizing and URL display: the strings that reach the server,
the file system and the user."""

from __future__ import annotations

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.api import (
    DEFAULT_ID_PATTERN,
    check_agent_id,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.reasons import display_url, sanitize_reason
from tests.fixtures.product import api_client

PERMISSIVE = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


@pytest.mark.parametrize("value", ["07048933", "0A1B2C3D", "00001234", "FFFFFFFF"])
def test_the_services_ids_are_accepted(value):
    assert check_agent_id(value) == value


@pytest.mark.parametrize("value", ["0a1b2c3d", "1234e567", "0A1B2C3", "0A1B2C3D4", "device-01"])
def test_ids_in_another_form_are_refused_by_default(value):
    with pytest.raises(ConfigError, match="does not match id_pattern"):
        check_agent_id(value)


@pytest.mark.parametrize("value", [
    "07048933", "0A1B2C3D", "a", "device-01", "dev_01", "A" * 64, "1234e567", "00001234",
])
def test_plain_ids_are_accepted_by_a_permissive_pattern(value):
    assert check_agent_id(value, PERMISSIVE) == value


@pytest.mark.parametrize("value", [
    "", "../../etc/passwd", "..", "A/CN=evil", "/CN=evil", "ID\n", "ID\nX", "\nID", " ID",
    "ID ", "A" * 65, "A" * 10000, "caf\u00e9", "\u0661\u0662", "ID\x00", "-leading-dash",
    "_x", "a.b", "a\\b", "a;b", "a%2F", "A\r",
])
def test_hostile_ids_are_refused(value):
    for pattern in (DEFAULT_ID_PATTERN, PERMISSIVE):
        with pytest.raises(ConfigError, match="does not match id_pattern"):
            check_agent_id(value, pattern)


@pytest.mark.parametrize("value", [12345678, float("inf"), 1e300, True, None,
                                   ["07048933"], {"id": "x"}, b"07048933"])
def test_non_strings_are_refused_not_converted(value):
    with pytest.raises(ConfigError, match="must be a string") as info:
        check_agent_id(value)
    assert "quote it" in str(info.value)


def test_custom_pattern_cannot_widen_the_safe_name_rule():
    assert check_agent_id("a.b", r".*") == "a.b"
    for hostile in ("../x", "a/b", "a\nb", "x" * 129, "a..b", "caf\u00e9"):
        with pytest.raises(ConfigError):
            check_agent_id(hostile, r"(?s).*")


def test_custom_pattern_narrows():
    pattern = r"^[0-9A-F]{8}$"
    assert check_agent_id("0A1B2C3D", pattern)
    with pytest.raises(ConfigError):
        check_agent_id("0a1b2c3d", pattern)


def test_invalid_pattern_is_a_config_error():
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        check_agent_id("x", "([")


def test_default_pattern_is_the_documented_one():
    assert DEFAULT_ID_PATTERN == r"^[0-9A-F]{8}$"  # the provisioning service's (and the cloud's) IDs


def test_sanitize_reason_truncates_flattens_and_redacts():
    token = "s3cr3t-token-value-123456"
    text = ("bad token Bearer " + token + "\nline2\x1b[31m\t" + "x" * 500)
    out = sanitize_reason(text, secrets=[token, "Bearer " + token])
    assert token not in out and "********" in out
    assert "\n" not in out and "\x1b" not in out
    assert len(out) <= 203


def test_sanitize_reason_removes_private_keys():
    text = "echo: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY----- done"
    out = sanitize_reason(text)
    assert "MIIEvQIBADANBg" not in out and "[private key removed]" in out and "done" in out


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:pw@api.example.com:8443/base/x?token=1#f", "https://api.example.com:8443/base/x"),
    ("https://api.example.com/generate-orchestrator-id", "https://api.example.com/generate-orchestrator-id"),
    ("https://[::1]:9/x", "https://[::1]:9/x"),
])
def test_display_url_hides_userinfo_and_query(url, shown):
    assert display_url(url) == shown


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"api_url": "http://api.example.com"}, "https://"),
    ({"api_url": "ftp://x"}, "https://"),
    ({"api_url": ""}, "required"),
    ({"api_url": "https://api.example.com/?a=1"}, "query"),
    ({"api_url": "https://a.example.com", "id_endpoint": "generate"}, "id_endpoint"),
    ({"api_url": "https://a.example.com", "upload_endpoint": "https://evil.example/x"}, "upload_endpoint"),
    ({"api_url": "https://a.example.com", "retries": -1}, "retries"),
    ({"api_url": "https://a.example.com", "timeout": 0}, "timeout"),
    ({"api_url": "https://a.example.com", "upload_format": "xml"}, "upload_format"),
    ({"api_url": "https://a.example.com", "ca_path": "/nonexistent/ca.crt"}, "ca_path"),
])
def test_client_option_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        api_client(**kwargs)


def test_client_error_for_userinfo_url_does_not_show_password():
    with pytest.raises(ConfigError) as info:
        api_client("http://user:hunter2@api.example.com")
    assert "hunter2" not in str(info.value)
