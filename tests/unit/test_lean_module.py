"""The device's side of a lean run (module_utils/lean.py): the API headers' values it read are
masked in all it returns exactly as AnsibleModule masks them (ansible-core's own
``remove_values``, which a module's exit_json and fail_json apply)."""
from __future__ import annotations

import io
import json
import sys

from ansible.module_utils.common.parameters import remove_values
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import lean

SECRETS = ["Bearer s3cr3t-token-value", "s3cr3t", "4242", "client.crt"]
# Strings built around the secrets, so that whole, partial and repeated occurrences are common.
TEXT = st.lists(st.sampled_from(SECRETS + ["", "/home/dev/.mtls/", "x", " ", "Bearer ", "42"]), max_size=5).map("".join)
SCALARS = st.one_of(st.none(), st.booleans(), TEXT, st.integers(min_value=-10**6, max_value=10**6),
                    st.sampled_from([4242, 424242, 42.42, 4.242]))
RESULTS = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(TEXT, inner, max_size=4)), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(result=RESULTS, secrets=st.lists(st.sampled_from(SECRETS), max_size=4))
def test_the_mask_is_ansiblemodules(result, secrets):
    assert lean.mask(result, secrets) == remove_values(result, secrets)


def test_emit_masks_the_result_and_the_warnings(monkeypatch):
    module = lean.LeanModule({}, check_mode=False)
    module.no_log_values.update({"s3cr3t-token-value"})
    module.warn("the API said: bad token s3cr3t-token-value")
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    lean.emit({"msg": "s3cr3t-token-value", "status": {"error": "Bearer s3cr3t-token-value refused"}}, module)
    answer = json.loads(out.getvalue())
    assert answer == {"msg": lean.NO_LOG, "status": {"error": "Bearer ******** refused"},
                      "warnings": ["the API said: bad token ********"]}
