# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only assessment of the identity directory: what is on disk, cheaply (the key's RSA
structure is read directly, never validated through OpenSSL on a re-run)."""
from __future__ import annotations

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certinfo, keys
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import CertificateError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import journal
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.files import (
    CERT,
    CERT_COPY,
    JOURNAL_TMP,
    KEY,
    STAGED_CERT,
    STAGED_KEY,
)


class FileState:
    def __init__(self):
        self.exists = False
        self.stat = None
        self.data = None
        self.error = None


class Assessment:
    """What is on disk. Key bytes stay in ``key.data`` and are never formatted anywhere."""

    def __init__(self):
        self.dir_exists = False
        self.dir_stat = None
        self.key = FileState()
        self.key_summary = None
        self.key_size = None
        self.key_is_rsa = None
        self.cert = FileState()
        self.cert_info = None
        self.key_matches = None
        self.journal = None          # dict, or {"id": None} when unreadable
        self.staged_key = False
        self.staged_cert = False
        self.staged_other = False    # a journal being written, a certificate copy

    @property
    def staged(self):
        return self.staged_key or self.staged_cert or self.staged_other

    @property
    def stats(self):
        return {".": self.dir_stat, KEY: self.key.stat, CERT: self.cert.stat}


def assess(idir, now=None):
    """Read the identity in ``idir`` (an IdentityDir, or None when the directory is absent)."""
    now = now or certinfo.utcnow()
    a = Assessment()
    if idir is None:
        return a
    a.dir_exists = True
    a.dir_stat = idir.dir_stat()

    a.cert.data, a.cert.stat = idir.read(CERT)
    a.cert.exists = a.cert.data is not None
    if a.cert.exists:
        try:
            a.cert_info = certinfo.read(a.cert.data, now)
        except CertificateError as exc:
            a.cert.error = exc.msg

    a.key.data, a.key.stat = idir.read(KEY)
    a.key.exists = a.key.data is not None
    if a.key.exists:
        try:
            a.key_summary = keys.summarize_private_key(a.key.data)
            a.key_is_rsa = a.key_summary.is_rsa
            a.key_size = a.key_summary.key_size
        except CertificateError as exc:
            a.key.error = exc.msg
    if a.key_summary is not None and a.cert_info is not None:
        public = a.cert_info.public
        a.key_matches = public is not None and a.key_summary.public == public

    a.journal = journal.read(idir)
    a.staged_key = idir.exists(STAGED_KEY)
    a.staged_cert = idir.exists(STAGED_CERT)
    a.staged_other = idir.exists(JOURNAL_TMP) or idir.exists(CERT_COPY)
    return a
