# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The identity engine, split by concern.

=================  ===========================================================================
module             concern
=================  ===========================================================================
``settings``       the validated options of a run
``files``          names and modes of the identity directory's files; the mode/owner check
``assess``         what is on disk (read-only, cheap)
``plan``           the decision: ``Plan.kind`` (unchanged, repair, reupload, create, rekey)
``clock``          the device clock against the API's, before anything is minted or rotated
``transaction``    the writes: one method per kind, and recovery of an interrupted run
``journal``        the journal, and the table of the directory's states between runs
``engine``         one run: lock, assess, recover, decide, carry out, describe the result
``facts``          what mtls_identity_info returns
=================  ===========================================================================

Entry points: ``Settings``, ``ensure_identity`` (mtls_identity), ``identity_facts``
(mtls_identity_info).
"""
from __future__ import annotations

# Bound here, not in __getattr__: ``assess`` is also the submodule's name, which the import
# system would otherwise leave on the package.
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.assess import Assessment, assess

__all__ = ["Assessment", "assess"]  # the rest is bound when first used (__getattr__ below)


def __getattr__(name):
    """The entry points, imported when first used: importing one submodule (the engine, on a
    device's unchanged run) does not load the others (the transaction, the facts)."""
    # Absolute imports written out: Ansible's payload builder finds a module's dependencies in
    # its import statements.
    if name in ("Engine", "ensure_identity"):
        from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import engine as module
    elif name == "identity_facts":
        from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import facts as module
    elif name in ("CERT", "JOURNAL", "KEY", "STAGED_CERT", "STAGED_KEY"):
        from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import files as module
    elif name in ("Plan", "decide"):
        from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import plan as module
    elif name == "Settings":
        from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import settings as module
    elif name == "check_issued_certificate":
        from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import transaction as module
    else:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    return getattr(module, name)
