"""The contract's defaults live in api.DEFAULTS; the modules' argument specs take theirs from it
and their DOCUMENTATION (what ansible-doc shows) must say the same: they cannot drift."""

from __future__ import annotations

import importlib.util
import pathlib

import ansible.module_utils.basic  # noqa: F401 - its first import probes a socket: at collection
import pytest
import yaml

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import api, layout, option_table, options
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import files

REPO = pathlib.Path(__file__).resolve().parents[2]
MODULES = ("mtls_identity", "mtls_deregister", "mtls_identity_info", "mtls_check")


def load(module):
    spec = importlib.util.spec_from_file_location("_doc_" + module, REPO / "plugins" / "modules" / (module + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def argspec(mod):
    if mod.__name__ == "_doc_mtls_identity":
        return options.argument_spec()
    if hasattr(mod, "argument_spec"):
        return mod.argument_spec()
    return option_table.argument_spec(option_table.INFO_OPTIONS)  # mtls_identity_info builds it in main()


def documented(mod):
    """The module's documented options, with those of its documentation fragments."""
    doc = yaml.safe_load(mod.DOCUMENTATION)
    options = {}
    for fragment in doc.get("extends_documentation_fragment", []):
        name = fragment.rsplit(".", 1)[-1]
        path = REPO / "plugins" / "doc_fragments" / (name + ".py")
        spec = importlib.util.spec_from_file_location("_fragment_" + name, path)
        frag = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(frag)
        options.update(yaml.safe_load(frag.ModuleDocFragment.DOCUMENTATION)["options"])
    options.update(doc.get("options") or {})
    return options


@pytest.mark.parametrize("module", MODULES)
def test_argspec_and_documentation_defaults_equal_the_contracts(module):
    mod = load(module)
    spec = argspec(mod)
    doc = documented(mod)
    checked = [name for name in api.DEFAULTS if name in spec]
    assert checked or module == "mtls_check", module  # the check calls no API
    for name in checked:
        assert spec[name].get("default") == api.DEFAULTS[name], (module, name)
        assert doc[name].get("default") == api.DEFAULTS[name], (module, name, "DOCUMENTATION")
    for name, option in spec.items():  # every other default agrees with the docs too
        assert doc[name].get("default") == option.get("default"), (module, name)
        assert doc[name].get("type", "str") == option.get("type", "str"), (module, name, "type")
    assert sorted(doc) == sorted(spec), module  # nothing documented that does not exist, or the reverse


def test_id_field_has_no_fixed_default_it_follows_the_format():
    mod = load("mtls_identity")
    assert "default" not in options.argument_spec()["id_field"]
    assert "default" not in documented(mod)["id_field"]
    assert api.ID_FIELDS == {"multipart": "id", "json": "agent_id"}
    assert options.argument_spec()["upload_format"]["choices"] == list(api.ID_FIELDS)


def test_the_engine_uses_the_layouts_file_names():
    for name in ("KEY", "CERT", "STAGED_KEY", "STAGED_CERT", "CERT_COPY", "JOURNAL", "JOURNAL_TMP"):
        assert getattr(files, name) == getattr(layout, name), name
        assert layout.is_managed(getattr(layout, name)), name
    assert layout.is_managed("client.key.20261127T170002Z.bak") and layout.is_managed(".agent.env.new")
    assert not layout.is_managed("notes.txt") and not layout.is_managed("client.key.bak.old")
