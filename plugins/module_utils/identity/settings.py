# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The validated options of one identity run (network options belong to the API client).

Every value is given (the defaults are option_table's); choices are the argument spec's to
enforce, so only what it cannot say is checked here: ranges, the subject, IDs, modes.
"""
from __future__ import annotations

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certinfo, keys
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.api import check_agent_id
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import CertificateError, ConfigError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity.files import Modes
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.names import setting

# How long a run waits for another run's lock on the directory (not an option).
LOCK_TIMEOUT = 600.0


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
    """Validated options of one run. ``location``: location.Location; ``modes``: files.Modes."""

    def __init__(self, *, location, agent_id, id_pattern, enrollment, key_size, subject, valid_days, rotate,
                 renew_before_days, backup, backup_keep, max_clock_skew, ledger_id, lost_identity, modes,
                 keygen_timeout, agent_id_takeover, lock_timeout=LOCK_TIMEOUT):
        self.location = location
        self.path, self.uid, self.gid = location.path, location.uid, location.gid
        self.key_path, self.cert_path = location.key_path, location.cert_path
        self.id_pattern = id_pattern
        self.agent_id = None
        if agent_id is not None and agent_id != "":
            self.agent_id = check_agent_id(agent_id, self.id_pattern, setting("agent_id"))
        self.enrollment = enrollment
        self.key_profile = keys.PROFILES["rsa"]  # the registry contract is RSA
        self.key_size = _int_in(key_size, "key_size", self.key_profile.min_size, self.key_profile.max_size)
        try:
            self.subject = certinfo.normalize_subject(subject)
        except CertificateError as exc:
            raise ConfigError(exc.msg) from None
        self.valid_days = _int_in(valid_days, "valid_days", 1, 36500)
        self.rotate = rotate
        self.renew_before_days = _int_in(renew_before_days, "renew_before_days", 0)
        if renew_before_days >= valid_days:
            raise ConfigError("%s (%d) must be smaller than %s (%d), or every run would rotate"
                              % (setting("renew_before_days"), renew_before_days, setting("valid_days"), valid_days))
        self.backup = bool(backup)
        # After a swap with backup, the backups beyond the newest this many pairs go (0: none).
        self.backup_keep = _int_in(backup_keep, "backup_keep", 0)
        self.lock_timeout = lock_timeout
        # How long a run waits for the key a background process is making (identity/prekey.py).
        self.keygen_timeout = _int_in(keygen_timeout, "keygen_timeout", 0)
        self.max_clock_skew = _int_in(max_clock_skew, "max_clock_skew", 1)
        self.lost_identity = lost_identity
        self.modes = modes
        # This host replaces the device that holds agent_id (dead hardware): no takeover refusal.
        self.agent_id_takeover = bool(agent_id_takeover)
        # The ID the controller's identity ledger holds for this host (a hint, used only for a
        # device that lost its identity; never to override the certificate's CN).
        self.ledger_id = None
        if ledger_id:
            self.ledger_id = check_agent_id(ledger_id, self.id_pattern, "the identity ledger's ID")

    def valid_id(self, value):
        return valid_id(value, self.id_pattern)

    def not_this_hosts(self, agent_id):
        """Whether ``agent_id``, named by the device's own files, is neither the ID the ledger
        holds for this host nor the operator's agent_id. Whoever writes ~/.mtls can name any ID:
        such an ID is never uploaded for (the registry's last upload wins)."""
        return bool(self.ledger_id) and agent_id not in (self.ledger_id, self.agent_id)


def settings_from(p, location, enrollment):
    """The Settings of a run's parameters ``p`` (the argument spec applied) at ``location``;
    ``enrollment``: the option's value, or the API flavor's."""
    return Settings(
        location=location, agent_id=p["agent_id"], id_pattern=p["id_pattern"], enrollment=enrollment,
        key_size=p["key_size"], subject=p["subject"], valid_days=p["valid_days"], rotate=p["rotate"],
        renew_before_days=p["renew_before_days"], backup=p["backup"], backup_keep=p["backup_keep"],
        max_clock_skew=p["max_clock_skew"], keygen_timeout=p["keygen_timeout"],
        ledger_id=p["ledger_id"], lost_identity=p["lost_identity"], agent_id_takeover=p["agent_id_takeover"],
        modes=Modes(dir_mode=p["dir_mode"], key_mode=p["key_mode"], cert_mode=p["cert_mode"]))
