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

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.assess import Assessment, assess
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.engine import Engine, ensure_identity
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.facts import identity_facts
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.files import (
    CERT,
    JOURNAL,
    KEY,
    STAGED_CERT,
    STAGED_KEY,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.plan import Plan, decide
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.settings import Settings
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.transaction import (
    check_issued_certificate,
)

__all__ = [
    "CERT", "JOURNAL", "KEY", "STAGED_CERT", "STAGED_KEY", "Assessment", "Engine", "Plan", "Settings",
    "assess", "check_issued_certificate", "decide", "ensure_identity", "identity_facts",
]
