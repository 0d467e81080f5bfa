# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The files of the identity directory: names, modes, and the one check of modes and owners.

::

    client.key            the private key (key_mode)      client.crt   the certificate (cert_mode)
    .client.key.new       staged key (key_mode from byte one) .client.crt.new  staged certificate
    .client.crt.copy      a fresh copy of client.crt replacing a hard-linked one
    .mtls-pending.json    journal (no secret): the registry may not hold client.crt for this ID
    .mtls-pending.json.new  the journal being written
"""
from __future__ import annotations

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError
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
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.names import setting

__all__ = ["CERT", "CERT_COPY", "Fix", "JOURNAL", "JOURNAL_TMP", "KEY", "LEFTOVERS", "Modes", "STAGED_CERT",
           "STAGED_KEY", "hard_linked", "mode_owner_problems"]
# What an interrupted run may leave besides the journal (removed or completed by the next run).
LEFTOVERS = (STAGED_KEY, STAGED_CERT, CERT_COPY, JOURNAL_TMP)


class Modes:
    """The modes of the directory, the key and the certificate (options ``dir_mode``, ``key_mode``,
    ``cert_mode``, octal strings). Never looser than what keeps the key private: the key and the
    directory are the owner's only, the certificate writable by the owner only; the owner must
    read the key and the certificate and use the directory."""

    # option: (bits it may have, bits it must have, what they are for)
    _RULES = {
        "dir_mode": (0o700, 0o700, "the directory of the key: the owner's only, and the owner writes it"),
        "key_mode": (0o600, 0o400, "the private key: readable by its owner only"),
        "cert_mode": (0o644, 0o400, "the certificate: readable by the owner, writable by the owner only"),
    }

    def __init__(self, *, dir_mode, key_mode, cert_mode):
        self.directory = _mode("dir_mode", dir_mode)
        self.key = _mode("key_mode", key_mode)
        self.cert = _mode("cert_mode", cert_mode)

    def wanted(self):
        """(name in the directory, what messages call it, mode) of the three."""
        return ((".", "directory", self.directory), (KEY, KEY, self.key), (CERT, CERT, self.cert))


def _mode(option, value):
    text = str(value if value is not None else "")
    if not text or len(text) > 4 or any(c not in "01234567" for c in text):
        raise ConfigError("%s must be an octal mode such as \"0600\" (quote it), got %r" % (setting(option), value))
    mode = int(text, 8)
    allowed, needed, what = Modes._RULES[option]
    if mode & ~allowed or mode & needed != needed:
        raise ConfigError("%s %04o is refused for %s (at most %04o, at least %04o)"
                          % (setting(option), mode, what, allowed, needed))
    return mode


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


def mode_owner_problems(stats, modes, uid=None, gid=None):
    """[Fix] for ``stats`` ({name: stat or None}) against ``modes``; owners are compared only when
    ``uid`` is given."""
    fixes = []
    for name, label, mode in modes.wanted():
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
