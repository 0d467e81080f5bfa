# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The journal (``.mtls-pending.json``, no secret): "the registry may not hold client.crt for
this ID". It is written, fsync-ed and renamed into place before anything leaves the device,
and dropped only once device and registry are known to agree.

States of the identity directory between runs (what a run leaves when it ends, fails, is
interrupted by SIGINT/SIGTERM or killed by SIGKILL at any point), and what the next run does:

=====================  ===============================  =============================  ==============================
state                  files                            the registry may hold          the next run
=====================  ===============================  =============================  ==============================
settled                client.key + client.crt (or      client.crt                     decides (plan.py)
                       nothing), no journal
staging                .client.key.new [+ .crt.new],    the previous certificate       removes the staged files
                       no journal                       (nothing was sent; a creation  ("incomplete"), then decides
                                                        may have reserved an ID, which
                                                        lapses unused on the server)
sending                staged key + staged cert +       the previous or the staged     recovers: uploads the staged
                       journal (create/rotate)          certificate                    certificate again, swaps it in
enrolling (CSR)        staged key + journal, no         the previous or a certificate  removes the staged key; the
                       staged certificate               issued for a key it forgets    journal then re-enrols / reuses
                                                                                       the journaled ID
swapping               new client.key, .client.crt.new  the staged certificate         recovers (the key is in place):
                       + journal                                                       uploads it again, swaps it in
swapped                new pair + journal               client.crt                     as "uncertain" (the upload is
                                                                                       idempotent)
uncertain              previous pair + journal (an      the previous certificate or    uploads client.crt again
                       ambiguous failure, an            the new one that never made    (self-signed) or re-enrols
                       interrupted rollback)            it to the device               (CSR), drops the journal
reserved               no pair + journal (create)       a certificate for the          creates reusing the journaled
                                                        journaled ID, or nothing       ID (never a second ID)
stale                  journal naming another ID        --                             drops it, then decides
copying                .client.crt.copy (a hard-linked  client.crt                     removes it, then decides
                       certificate being replaced)
keygen running         .mtls-keygen.json naming a live  as in the state beside it      decides; needing a new key, it
                       process of ours [+ .client.key.  (the background sends          waits for that one (up to
                       pre.new being written]           nothing)                       keygen_timeout, then fails with
                                                                                       the identity intact), else
                                                                                       stops the process, removes both
keygen ready           .client.key.pre (0600) + record  as in the state beside it      takes that key for its new
                                                                                       identity (no keygen of its
                                                                                       own), else removes both
keygen abandoned       a record of a dead (or not our)  as in the state beside it      removes them (a link itself,
                       process, a half-written key, or                                 never its target; the process
                       anything foreign at those names                                 is never signalled), warns,
                                                                                       then decides
=====================  ===============================  =============================  ==============================

The key is made before an ID is reserved, and a reservation needs no journal (it registers
nothing): an interruption before the journal exists costs at most one unused reservation, never
a second identity. The journal names the ID the upload is for, so it is written after the
reservation (and rewritten by nothing: a lapsed reservation is replaced before the journal).

The three keygen states (identity/prekey.py: the role's first pass starts the background process)
sit beside any of the others: their files hold only the next key, never part of the identity.

A definitive failure (the server surely did not act) removes the staged files and the journal
this run wrote; an interruption once the journal exists leaves everything for the next run,
exactly like a kill (the upload may be on its way or stored already).
"""
from __future__ import annotations

import json

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certinfo
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.files import (
    JOURNAL,
    JOURNAL_TMP,
    LEFTOVERS,
)

MAX_JOURNAL = 65536


def read(idir):
    """The journal as a dict ({"id": None, "corrupt": True} when unreadable), or None."""
    data, _st = idir.read(JOURNAL, limit=MAX_JOURNAL)
    if data is None:
        return None
    try:
        journal = json.loads(data.decode("utf-8"))
        if not isinstance(journal, dict):
            raise ValueError
    except (ValueError, UnicodeDecodeError):
        return {"id": None, "corrupt": True}
    if not isinstance(journal.get("id"), str):
        journal["id"] = None
    return journal


def write(idir, agent_id, operation, fingerprint=None, now=None):
    record = {
        "version": 1,
        "id": agent_id,
        "operation": operation,
        "registry": "uncertain",
        "since": certinfo.iso(now or certinfo.utcnow()),
    }
    if fingerprint:
        record["fingerprint_sha256"] = fingerprint
    idir.create(JOURNAL_TMP, (json.dumps(record, sort_keys=True) + "\n").encode("ascii"), 0o600)
    idir.rename(JOURNAL_TMP, JOURNAL)
    idir.fsync()


def drop(idir):
    if idir.unlink(JOURNAL):
        idir.fsync()


def drop_leftovers(idir):
    """Remove staged files (never the journal)."""
    removed = False
    for name in LEFTOVERS:
        removed = idir.unlink(name) or removed
    if removed:
        idir.fsync()
