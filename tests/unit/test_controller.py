"""Controller-side helpers of the mtls_identity action plugin: plain functions."""

from __future__ import annotations

import hashlib

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import controller
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError


@pytest.mark.parametrize("host", ["edge-sp-01", "edge-cps-02", "h", "ünïcode-host"])
@pytest.mark.parametrize("jitter", [0, 1, 14, 90])
def test_the_jitter_is_the_roles_old_formula(host, jitter):
    # The role computed: (inventory_hostname | hash('sha1'))[:8] | int(base=16) % (jitter + 1)
    old = int(hashlib.sha1(host.encode("utf-8")).hexdigest()[:8], 16) % (jitter + 1)  # noqa: S324
    assert controller.jitter_offset(host, jitter) == old
    assert 0 <= controller.jitter_offset(host, jitter) <= jitter


def test_the_jitter_spreads_a_fleet():
    offsets = {controller.jitter_offset("edge-%04d" % n, 14) for n in range(200)}
    assert offsets == set(range(15))


def test_a_negative_jitter_is_refused():
    with pytest.raises(ConfigError):
        controller.jitter_offset("h", -1)


@pytest.mark.parametrize(("run", "skip", "phases"), [
    (None, None, ["identity", "config", "verify"]),
    (["all"], [], ["identity", "config", "verify"]),
    (["mtls"], [], ["identity", "config", "verify"]),
    (["mtls_config"], [], ["config"]),
    (["mtls_config", "mtls_verify"], [], ["config", "verify"]),
    (["mtls_verify"], [], ["verify"]),
    (["all"], ["mtls_verify"], ["identity", "config"]),
])
def test_tags_select_the_phases(run, skip, phases):
    assert controller.phases_for_tags(run, skip) == phases


@pytest.mark.parametrize("text", ["not json {", "[1, 2]", '{"Authorization": 5}', '{"a": ["Bearer x"]}'])
def test_a_headers_source_that_is_not_a_string_object_is_refused_without_showing_it(text):
    with pytest.raises(ConfigError) as info:
        controller.headers_from_source(text)
    assert "Bearer" not in info.value.msg and text not in info.value.msg


def test_a_headers_source_is_read(tmp_path):
    path = tmp_path / "headers.json"
    path.write_text('{"Authorization": "Bearer s3cr3t-token"}')
    assert controller.headers_from_source(controller.read_source(str(path), "headers_src")) == {
        "Authorization": "Bearer s3cr3t-token"}
    with pytest.raises(ConfigError, match="cannot read headers_src"):
        controller.read_source(str(tmp_path / "missing.json"), "headers_src")


def test_the_stale_headers_cleanup_keeps_the_current_file():
    cmd = controller.stale_headers_cleanup("/home/a/.ansible/tmp", "/home/a/.ansible/tmp/ansible-tmp-1/x.json")
    assert "-mmin +%d" % controller.STALE_HEADERS_MINUTES in cmd
    assert "! -path /home/a/.ansible/tmp/ansible-tmp-1/x.json" in cmd and cmd.endswith("true")


def test_a_failure_keeps_what_the_identity_phase_did():
    row = controller.failure_status("h1", "identity", "boom", {"action": "rotated", "phase": "config", "error": "x"})
    assert (row["action"], row["phase"], row["error"], row["host"]) == ("rotated", "config", "x", "h1")
    assert controller.failure_status("h1", "preflight", "bad")["action"] == "failed"
