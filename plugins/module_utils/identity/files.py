# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The files of the identity directory: names, modes, and the one check of modes and owners.

::

    client.key            the private key (0600)          client.crt   the certificate (0644)
    .client.key.new       staged key (0600 from byte one) .client.crt.new  staged certificate
    .client.crt.copy      a fresh copy of client.crt replacing a hard-linked one
    .mtls-pending.json    journal (no secret): the registry may not hold client.crt for this ID
    .mtls-pending.json.new  the journal being written
"""
from __future__ import annotations

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.fsutil import mode_str
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.layout import (  # noqa: F401 - re-exported
    CERT,
    CERT_COPY,
    JOURNAL,
    JOURNAL_TMP,
    KEY,
    STAGED_CERT,
    STAGED_KEY,
)

__all__ = ["CERT", "CERT_COPY", "CERT_MODE", "DIR_MODE", "Fix", "JOURNAL", "JOURNAL_TMP", "KEY", "KEY_MODE",
           "LEFTOVERS", "STAGED_CERT", "STAGED_KEY", "WANTED", "hard_linked", "mode_owner_problems"]
# What an interrupted run may leave besides the journal (removed or completed by the next run).
LEFTOVERS = (STAGED_KEY, STAGED_CERT, CERT_COPY, JOURNAL_TMP)

DIR_MODE = 0o700
KEY_MODE = 0o600
CERT_MODE = 0o644
# name in the directory, what messages call it, wanted mode
WANTED = ((".", "directory", DIR_MODE), (KEY, KEY, KEY_MODE), (CERT, CERT, CERT_MODE))


class Fix:
    """A wrong mode or owner of the directory, the key or the certificate."""

    def __init__(self, name, label, mode, wrong, hard_linked=False):
        self.name = name
        self.label = label
        self.mode = mode
        self.wrong = wrong  # ["mode 0644 (want 0600)", "owner 0:0 (want 1000:1000)"]
        # A hard-linked file is replaced by a fresh copy: a chmod or chown through the link
        # would change the other name's file too.
        self.hard_linked = hard_linked

    def describe(self):
        return "%s %s" % (self.label, ", ".join(self.wrong))

    def __repr__(self):
        return "Fix(%s)" % self.describe()


def hard_linked(st):
    """True when a regular file has another name (possibly outside the directory)."""
    return st is not None and st.st_nlink > 1


def mode_owner_problems(stats, uid=None, gid=None):
    """[Fix] for ``stats`` ({name: stat or None}); owners are compared only when ``uid`` is given."""
    fixes = []
    for name, label, mode in WANTED:
        st = stats.get(name)
        if st is None:
            continue
        wrong = []
        if (st.st_mode & 0o7777) != mode:
            wrong.append("mode %s (want %04o)" % (mode_str(st.st_mode), mode))
        if uid is not None and (st.st_uid != uid or st.st_gid != gid):
            wrong.append("owner %d:%d (want %d:%d)" % (st.st_uid, st.st_gid, uid, gid))
        if wrong:
            fixes.append(Fix(name, label, mode, wrong, hard_linked=name != "." and hard_linked(st)))
    return fixes
