# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What mtls_identity_info returns: facts about the identity on disk, read-only, no network."""
from __future__ import annotations

import os

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certinfo
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import IdentityError, UnreadableError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.fsutil import IdentityDir, stat_facts
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.assess import assess
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.files import (
    CERT,
    JOURNAL,
    KEY,
    hard_linked,
    mode_owner_problems,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.plan import renewal_window
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.settings import valid_id


def identity_facts(location, id_pattern, renew_before_days, modes, now=None):
    """Facts about the identity at ``location`` (location.Location); never writes, never uses the
    network. Read whoever owns it (root reads any user's identity); owners are compared only
    when the location names one. Raises UnreadableError when it cannot be read: an identity the
    module cannot see is a failure, never "no identity"."""
    now = now or certinfo.utcnow()
    path = location.path
    facts = {
        "dir_path": path,
        "cert_path": os.path.join(path, CERT),
        "key_path": os.path.join(path, KEY),
        "exists": False,
        "agent_id": None,
        "fingerprint_sha256": None,
        "serial": None,
        "not_before": None,
        "not_after": None,
        "days_left": None,
        "key_size": None,
        "key_matches": None,
        "self_signed": None,
        "subject": None,
        "due": None,
        "files": {"directory": None, "key": None, "cert": None},
        "pending": {"staged_key": False, "staged_cert": False, "journal": None},
        "problems": [],
    }
    try:
        idir = IdentityDir.open_to_read(path)
    except UnreadableError:
        raise
    except IdentityError as exc:
        facts["problems"].append(exc.msg)
        return facts
    if idir is None:
        facts["problems"].append("%s does not exist" % path)
        return facts
    with idir:
        # Read under no lock: renames are atomic, and a reader must never block a run.
        try:
            a = assess(idir, now)
        except UnreadableError:
            raise
        except IdentityError as exc:
            facts["problems"].append(exc.msg)
            return facts
    owner = (location.uid, location.gid) if location.owner_given else (None, None)
    _describe(facts, a, id_pattern, renew_before_days, now, modes, owner)
    return facts


def _describe(facts, a, id_pattern, renew_before_days, now, modes, owner):
    problems = facts["problems"]
    facts["files"] = {"directory": stat_facts(a.dir_stat), "key": stat_facts(a.key.stat),
                      "cert": stat_facts(a.cert.stat)}
    # Owners only when one was named: without, the owner a run wants is unknown here.
    problems.extend("%s has %s" % (fix.label, ", ".join(fix.wrong))
                    for fix in mode_owner_problems(a.stats, modes, *owner))
    if hard_linked(a.key.stat):
        problems.append("%s has %d hard links: a copy may be readable elsewhere (the next run "
                        "replaces it with a new key)" % (KEY, a.key.stat.st_nlink))
    facts["pending"] = {"staged_key": a.staged_key, "staged_cert": a.staged_cert, "journal": a.journal}
    if a.staged:
        problems.append("an interrupted transaction left staged files (the next run resolves them)")
    if a.journal is not None:
        problems.append("the registry may not hold the current certificate (journal %s present)" % JOURNAL)
    if not a.cert.exists:
        problems.append("%s is missing" % CERT)
    elif a.cert_info is None:
        problems.append("%s cannot be read: %s" % (CERT, a.cert.error))
    else:
        info = a.cert_info
        facts.update(info.facts())
        facts["self_signed"] = info.self_signed
        facts["subject"] = info.subject
        window, _note = renewal_window(info, renew_before_days)
        facts["due"] = now >= info.not_after or info.not_after - now < window
        if not valid_id(info.agent_id, id_pattern):
            problems.append("the certificate CN is not a valid agent ID")
        problems.extend("certificate: %s" % p for p in info.client_auth_problems)
    if not a.key.exists:
        problems.append("%s is missing" % KEY)
    elif a.key.error:
        problems.append("%s: %s" % (KEY, a.key.error))
    else:
        if a.key_size and facts["key_size"] is None:
            facts["key_size"] = a.key_size
        if a.key_matches is not None:
            facts["key_matches"] = a.key_matches
            if not a.key_matches:
                problems.append("%s does not match %s" % (KEY, CERT))
    facts["exists"] = a.cert_info is not None and a.key_matches is True
