# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The validated options of one identity run (network options belong to the API client)."""
from __future__ import annotations

import datetime
import os

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certs, keys
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.api import DEFAULT_ID_PATTERN, check_agent_id
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import CertificateError, ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.fsutil import (
    expand_path,
    resolve_group,
    resolve_owner,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.files import CERT, KEY
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.names import setting

ROTATE_CHOICES = ("auto", "always", "never")
ENROLLMENT_CHOICES = ("self_signed", "csr")
LOST_IDENTITY_CHOICES = ("restore", "new", "fail")
# A device clock ahead of the server by more than the notBefore backdate makes certificates the
# server refuses as "not valid yet"; a little more than that is tolerated (NTP jitter, the Date
# header's one-second resolution, the time between the request and the answer).
DEFAULT_MAX_CLOCK_SKEW = int((certs.BACKDATE + datetime.timedelta(minutes=5)).total_seconds())


def valid_id(value, pattern):
    """True when ``value`` is a usable agent ID under ``pattern`` (and the safe-name rule)."""
    try:
        check_agent_id(value, pattern, "agent ID")
        return True
    except ConfigError:
        return False


def _int_in(value, name, low, high=None):
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        raise ConfigError("%s must be an integer %s" % (
            setting(name), ">= %d" % low if high is None else "between %d and %d" % (low, high)))
    return value


class Settings:
    """Validated options of one run."""

    def __init__(self, path=None, owner=None, group=None, agent_id=None,
                 id_pattern=DEFAULT_ID_PATTERN, enrollment="self_signed", key_size=4096,
                 subject=None, valid_days=365, rotate="auto", renew_before_days=30,
                 backup=False, lock_timeout=600.0, max_clock_skew=DEFAULT_MAX_CLOCK_SKEW,
                 ledger_id=None, lost_identity="restore", agent_id_takeover=False):
        self.path = expand_path(path)
        self.uid, default_gid = resolve_owner(owner)
        self.gid = resolve_group(group, default_gid)
        self.id_pattern = id_pattern or DEFAULT_ID_PATTERN
        self.agent_id = None
        if agent_id is not None and agent_id != "":
            self.agent_id = check_agent_id(agent_id, self.id_pattern, setting("agent_id"))
        if enrollment not in ENROLLMENT_CHOICES:
            raise ConfigError("%s must be one of %s" % (setting("enrollment"), ", ".join(ENROLLMENT_CHOICES)))
        self.enrollment = enrollment
        self.key_size = _int_in(key_size, "key_size", keys.MIN_KEY_SIZE, keys.MAX_KEY_SIZE)
        try:
            self.subject = certs.normalize_subject(subject)
        except CertificateError as exc:
            raise ConfigError(exc.msg) from None
        self.valid_days = _int_in(valid_days, "valid_days", 1, 36500)
        if rotate not in ROTATE_CHOICES:
            raise ConfigError("%s must be one of %s" % (setting("rotate"), ", ".join(ROTATE_CHOICES)))
        self.rotate = rotate
        self.renew_before_days = _int_in(renew_before_days, "renew_before_days", 0)
        if renew_before_days >= valid_days:
            raise ConfigError("%s (%d) must be smaller than %s (%d), or every run would rotate"
                              % (setting("renew_before_days"), renew_before_days, setting("valid_days"), valid_days))
        self.backup = bool(backup)
        self.lock_timeout = lock_timeout
        self.max_clock_skew = _int_in(max_clock_skew, "max_clock_skew", 1)
        if lost_identity not in LOST_IDENTITY_CHOICES:
            raise ConfigError("%s must be one of %s" % (setting("lost_identity"), ", ".join(LOST_IDENTITY_CHOICES)))
        self.lost_identity = lost_identity
        # This host replaces the device that holds agent_id (dead hardware): no takeover refusal.
        self.agent_id_takeover = bool(agent_id_takeover)
        # The ID the controller's identity ledger holds for this host (a hint, used only for a
        # device that lost its identity; never to override the certificate's CN).
        self.ledger_id = None
        if ledger_id:
            self.ledger_id = check_agent_id(ledger_id, self.id_pattern, "the identity ledger's ID")

    @property
    def key_path(self):
        return os.path.join(self.path, KEY)

    @property
    def cert_path(self):
        return os.path.join(self.path, CERT)

    def valid_id(self, value):
        return valid_id(value, self.id_pattern)
