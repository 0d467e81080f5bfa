"""One table per option (plugins/module_utils/option_table.py): every copy made from it agrees
with it, the other modules use its names, and the constructors of a run take their values from
it, never a default of their own."""

from __future__ import annotations

import inspect
import re

import ansible.module_utils.common.arg_spec  # noqa: F401 - its first import probes a socket: at collection
import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import (
    agent_files,
    api,
    confirm,
    keys,
    names,
    option_table,
    options,
    restart,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.controller import (
    RoleArgumentsError,
    role_arguments,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.settings import Settings
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.provision import Job
from tests.tools import option_docs


@pytest.mark.parametrize("path", sorted(str(p.relative_to(option_docs.REPO)) for p in option_docs.generated()))
def test_every_generated_copy_equals_the_tables(path):
    """The doc fragments and the role's argument specs are the table's (tests/tools/option_docs.py)."""
    wanted = {str(p.relative_to(option_docs.REPO)): text for p, text in option_docs.generated().items()}[path]
    assert (option_docs.REPO / path).read_text() == wanted, "stale: run tests/tools/option_docs.py"


def test_the_argument_spec_is_the_tables():
    spec = options.argument_spec()
    assert set(spec) == {o.name for o in option_table.MODULE_OPTIONS}
    assert spec["key_size"] == {"type": "int", "default": 4096}
    assert spec["agent_restart"]["choices"] == list(restart.METHODS)
    assert spec["api_flavor"] == {"type": "str", "default": "legacy", "choices": list(api.FLAVORS)}
    assert spec["headers"]["no_log"] is True
    assert spec["subject"]["options"]["OU"] == {"type": "str", "default": "Development"}
    assert "default" not in spec["upload_endpoint"]  # the flavor's, unless given


def test_messages_name_the_tables_role_variables(role_names):
    for vocabulary, by_name in option_table.VOCABULARIES.items():
        names.use_role_names(True, vocabulary)
        for name, option in by_name.items():
            if option.role and name != "ca_path":
                assert names.setting(name) == option.role, (vocabulary, name)
    names.use_role_names(True)
    assert names.setting("ca_path") == "mtls_api_ca_src (or mtls_api_ca)"
    assert names.setting("server_ca", "server_ca_src") == "mtls_server_ca_src (or mtls_server_ca)"
    # One name, two meanings: the cloud's confirmation for mtls_identity, the decommission's for
    # mtls_deregister (whose cloud question is cloud_check, through the same role variable).
    assert names.setting("confirm") == "mtls_confirm"
    names.use_role_names(True, "mtls_deregister")
    assert (names.setting("confirm"), names.setting("cloud_check")) == ("mtls_decommission_confirm", "mtls_confirm")


def test_the_role_maps_a_variable_it_is_given_else_takes_its_default():
    args = {"api_url": "https://api.example"}
    variables = {"mtls_api_url": "https://api.example", "mtls_owner": "agent", "mtls_key_size": 4096, "mtls_dir": "",
                 "mtls_agent_trust": "", "unrelated": "{{ not templated }}"}
    seen = []

    def template(value):
        seen.append(value)
        return value

    role_arguments("main", options.argument_spec(), args, variables, template)
    assert "{{ not templated }}" not in seen
    assert args["owner"] == "agent"
    assert "key_size" not in args  # the module's default: nothing to send
    assert "path" not in args and "agent_trust" not in args  # empty: unset, as the role documents
    assert (args["agent_restart"], args["verify_retries"], args["renew_jitter_days"]) == ("docker", 2, 14)
    assert args["api_url"] == "https://api.example"  # given by the task: kept


@pytest.mark.parametrize(("entry_point", "variables", "words"), [
    ("main", {"mtls_api_url": "https://a", "mtls_rotate": "sometimes"},
     "value of mtls_rotate must be one of: auto, always, never, got: sometimes"),
    ("main", {}, "missing required arguments: mtls_api_url"),
    ("main", {"mtls_api_url": "https://a", "mtls_key_size": "big"}, "mtls_key_size"),
    ("decommission", {"mtls_decommission_local_only": "maybe"}, "mtls_decommission_local_only"),
])
def test_the_role_variables_are_checked_against_the_entry_points_spec(entry_point, variables, words):
    with pytest.raises(RoleArgumentsError, match=re.escape(words)):
        role_arguments(entry_point, options.argument_spec(), {}, variables, lambda value: value)
    role_arguments("decommission", option_table.DEREGISTER_OPTIONS, {}, {}, lambda value: value)  # no API URL needed


@pytest.mark.parametrize(("module", "names_", "old"), [
    ("mtls_check", option_table.CHECK_OPTIONS, {"owner": "user", "agent_trust": "trust", "server_ca": "ca_file",
                                                "verify_protocol": "protocol", "verify_url": "url"}),
    ("mtls_identity_info", option_table.INFO_OPTIONS, {}),
    ("mtls_deregister", option_table.DEREGISTER_OPTIONS, {}),
])
def test_one_vocabulary_across_the_modules(module, names_, old):
    """A setting has mtls_identity's name, type and default in every module; old names are
    aliases. mtls_deregister's own options (its confirm, endpoint, local_only, cloud_check) are
    the only exceptions."""
    vocabulary = module if module in option_table.VOCABULARIES else "mtls_identity"
    spec = option_table.argument_spec(names_, vocabulary=vocabulary, **{new: [name] for new, name in old.items()})
    own = {name for name, option in option_table.VOCABULARIES[vocabulary].items() if option.module == module}
    assert own <= {"confirm", "endpoint", "local_only", "cloud_check"}
    for name in set(names_) - own:
        option = option_table.BY_NAME[name]
        assert spec[name]["type"] == option.type, name
        assert spec[name].get("default") == option.spec().get("default"), name
    for new, name in old.items():
        assert name in spec[new]["aliases"]
    assert "owner" in names_ and "path" in names_


def test_the_checks_protocols_are_the_options_choices():
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.check import PROTOCOL_PATHS

    assert tuple(PROTOCOL_PATHS) == option_table.PROTOCOLS


def test_restart_methods_are_one_registry():
    for name, method in restart.METHODS.items():
        assert method.name == name and callable(method.restart)
    assert [m for m in restart.METHODS if restart.METHODS[m].needs_dropin] == ["systemd"]
    assert restart.METHODS["docker"].inspect is not None


def test_each_flavor_is_a_complete_record():
    for name, flavor in api.FLAVORS.items():
        assert flavor.name == name
        assert all(hasattr(flavor, field) for field in api.Flavor.FIELDS)
    legacy = api.FLAVORS["legacy"]
    assert (legacy.id_endpoint, legacy.upload_endpoint, legacy.upload_format, legacy.enrollment) == (
        "/generate-orchestrator-id", "/upload-orchestrator-certificate", "multipart", "self_signed")
    assert api.FLAVORS["api_service"].has_heartbeat and not api.FLAVORS["api_service"].issues_ids
    assert api.endpoints("enroll", upload_endpoint="/x").upload_endpoint == "/x"
    assert api.endpoints("enroll", upload_endpoint=None).upload_endpoint == "/upload-orchestrator-certificate"
    # confirm_endpoint names the flavor's heartbeat route (legacy has none of its own)
    assert api.Flavor.OVERRIDABLE["confirm_endpoint"] == "heartbeat_endpoint"
    assert options.flavor(option_table.defaults()).heartbeat_endpoint is None
    assert options.flavor(dict(option_table.defaults(), confirm_endpoint="/hb")).heartbeat_endpoint == "/hb"
    with pytest.raises(TypeError, match="missing"):
        api.Flavor(name="half")


def test_key_profiles_hold_rsa_only():
    assert list(keys.PROFILES) == ["rsa"]
    rsa = keys.PROFILES["rsa"]
    assert (rsa.min_size, rsa.max_size) == (keys.MIN_KEY_SIZE, keys.MAX_KEY_SIZE)


# Parameters of a run's objects that are no option: test and tuning knobs, or a path of the OS.
NOT_OPTIONS = {"sleep", "lock_timeout", "systemd_dir", "backoff_base", "backoff_cap", "retry_after_cap", "interval"}


@pytest.mark.parametrize("cls", [Settings, agent_files.AgentConfig, restart.Restart, options.Verify,
                                 api.ProvisioningClient, Job, confirm.Confirm])
def test_constructors_take_every_option_as_a_required_keyword(cls):
    defaulted = [name for name, parameter in inspect.signature(cls.__init__).parameters.items()
                 if parameter.default is not inspect.Parameter.empty and name not in NOT_OPTIONS]
    assert defaulted == [], "%s has defaults of its own: %s (defaults live in option_table)" % (cls.__name__, defaulted)
