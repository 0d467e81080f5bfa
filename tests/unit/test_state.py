"""Where the controller keeps the fleet's state: never inside an installed collection
(module_utils/state.py), wherever a symbolic link points."""

from __future__ import annotations

import os

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import state
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError


@pytest.fixture
def collections(tmp_path):
    root = tmp_path / "collections"
    (root / "ansible_collections" / "autonomy_edge" / "fleet_mtls" / "playbooks").mkdir(parents=True)
    (root / "ansible_collections" / "other" / "thing").mkdir(parents=True)
    return root


@pytest.mark.parametrize("inside", [
    "ansible_collections/autonomy_edge/fleet_mtls/playbooks/../reports/identity-ledger.json",
    "ansible_collections/autonomy_edge/fleet_mtls",
    "ansible_collections/other/thing/state",
])
def test_a_path_inside_any_installed_collection_is_refused_naming_the_variable(collections, inside):
    with pytest.raises(ConfigError, match=r"^mtls_ledger_path .* resolves inside the installed collection %s/"
                       r"ansible_collections/\w+/\w+: .*Set mtls_state_dir \(or mtls_ledger_path\)" % collections):
        state.checked_state_path(str(collections / inside), "mtls_ledger_path", [str(collections)])


def test_a_symlink_into_a_collection_is_followed(collections, tmp_path):
    (tmp_path / "project").mkdir()
    os.symlink(collections / "ansible_collections" / "autonomy_edge" / "fleet_mtls", tmp_path / "project" / "state")
    with pytest.raises(ConfigError, match="resolves inside the installed collection"):
        state.checked_state_path(str(tmp_path / "project" / "state" / "x.json"), "mtls_report_dir",
                                 ["/nonexistent", str(collections)])


@pytest.mark.parametrize("outside", ["project/fleet-mtls-state", "collections/ansible_collections/x",
                                     "collections/ansible_collections", "collections/state"])
def test_the_operators_own_directories_are_kept_and_made_absolute(collections, tmp_path, outside, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert state.checked_state_path(outside, "mtls_report_dir", [str(collections)]) == str(tmp_path / outside)
    assert state.checked_state_path("", "mtls_report_dir", [str(collections)]) == ""


def test_the_running_collections_path_is_found_only_in_a_collection_layout(tmp_path):
    installed = tmp_path / "c" / "ansible_collections" / "ns" / "name" / "plugins" / "module_utils" / "state.py"
    assert state.own_collections_path(str(installed)) == str(tmp_path / "c")
    assert state.own_collections_path(str(tmp_path / "checkout" / "plugins" / "module_utils" / "state.py")) is None
