# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the bundle keeps in an identity directory: the file names, and the one list of what
decommissioning removes (nothing else in the directory is ever touched).
"""
from __future__ import annotations

import fnmatch
import re

KEY = "client.key"
CERT = "client.crt"
STAGED_KEY = ".client.key.new"
STAGED_CERT = ".client.crt.new"
CERT_COPY = ".client.crt.copy"  # a fresh copy replacing a hard-linked certificate
# The agent still has to be restarted onto the pair in place: a restart failed after a change.
RESTART_OWED = ".mtls-restart-owed"
JOURNAL = ".mtls-pending.json"
JOURNAL_TMP = ".mtls-pending.json.new"
# A key generated in the background before the run needs it (identity/prekey.py): the record of
# the process making it (no secret), the key being written, the finished key (both 0600).
KEYGEN_RECORD = ".mtls-keygen.json"
KEYGEN_RECORD_TMP = ".mtls-keygen.json.new"
PREKEY_TMP = ".client.key.pre.new"
PREKEY = ".client.key.pre"
# Every name the background keygen may leave, in the order a clean-up removes them.
KEYGEN_FILES = (PREKEY, PREKEY_TMP, KEYGEN_RECORD, KEYGEN_RECORD_TMP)
AGENT_CONFIG = "agent-tls.ini"
AGENT_ENV = "agent.env"
API_CA = "api-ca.crt"
SERVER_CA = "server-ca.crt"

# Each of these may also be staged as ".<name>.new" while a run writes it.
_WRITTEN = (KEY, CERT, AGENT_CONFIG, AGENT_ENV, API_CA, SERVER_CA)
MANAGED_FILES = _WRITTEN + tuple("." + name + ".new" for name in _WRITTEN) + (
    JOURNAL, JOURNAL_TMP, CERT_COPY, RESTART_OWED, "." + RESTART_OWED + ".new",
    *KEYGEN_FILES)
# Backups kept by backup=true: <name>.<UTC timestamp>[-<n>].bak
MANAGED_PATTERNS = ("client.key.*.bak", "client.crt.*.bak")
BACKUP = re.compile(r"(client\.key|client\.crt)\.([0-9]{8}T[0-9]{6}Z)(?:-([0-9]{1,6}))?\.bak")


def is_managed(name):
    """Whether decommissioning removes the directory entry ``name``."""
    return name in MANAGED_FILES or any(fnmatch.fnmatchcase(name, p) for p in MANAGED_PATTERNS)


def backup_name(name, stamp, number=1):
    """The backup of ``name`` made at ``stamp`` (the ``number``-th at that second)."""
    return "%s.%s%s.bak" % (name, stamp, "-%d" % number if number > 1 else "")


def backup_of(name):
    """(stamp, number) of the backup ``name`` (what orders the pairs, oldest first), or None
    when ``name`` is not a backup this bundle makes."""
    match = BACKUP.fullmatch(name)
    if match is None:
        return None
    return match.group(2), int(match.group(3) or 1)
