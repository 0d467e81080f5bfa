# -*- coding: utf-8 -*-
"""The agent's runtime files beside its identity: the agent configuration (agent-tls.ini).

Written after the identity engine ran (the identity it points at is in place), in the same
locked identity directory, atomically (staged under a hidden name, then renamed) and only when
its content, mode or owner differ.
"""
from __future__ import annotations

import re
import stat

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError, StateError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.fsutil import IdentityDir

AGENT_CONFIG = "agent-tls.ini"
AGENT_CONFIG_MODE = 0o644
MAX_AGENT_CONFIG = 64 * 1024
CONFIG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# The identity's own files: a configuration may name them, never replace them.
RESERVED_NAMES = ("client.key", "client.crt")


def check_agent_config(text, name=AGENT_CONFIG):
    """Validate the configuration's content and file name (before anything changes)."""
    if text is not None:
        if not isinstance(text, str):
            raise ConfigError("agent_config must be a string (the file's content)")
        if len(text.encode("utf-8")) > MAX_AGENT_CONFIG:
            raise ConfigError("agent_config is larger than %d bytes" % MAX_AGENT_CONFIG)
        if "PRIVATE KEY" in text:
            # The configuration is world-readable: it may name the key, never hold one.
            raise ConfigError("agent_config must not contain a private key")
    if not isinstance(name, str) or not CONFIG_NAME.match(name) or name in RESERVED_NAMES:
        raise ConfigError("agent_config_name must be a plain file name (letters, digits, '.', "
                          "'_', '-'; not hidden) other than %s" % " and ".join(RESERVED_NAMES))
    return text


def write_agent_config(idir, name, text, uid, gid, check_mode=False):
    """Make ``name`` in ``idir`` (an open IdentityDir, or None in check mode when the directory
    does not exist yet) hold ``text``, mode 0644, owned by uid:gid. Returns whether it changed
    (or would, in check mode)."""
    wanted = text.encode("utf-8")
    current, st = (None, None) if idir is None else idir.read(name)
    if current == wanted:
        right = stat.S_IMODE(st.st_mode) == AGENT_CONFIG_MODE and (st.st_uid, st.st_gid) == (uid, gid)
        if right or check_mode:
            return not right
        if st.st_nlink == 1:
            return bool(idir.fix_file(name, AGENT_CONFIG_MODE))
        # Hard-linked: a chmod/chown would change the file behind the other name too.
    if check_mode:
        return True
    staged = "." + name + ".new"
    idir.create(staged, wanted, AGENT_CONFIG_MODE)
    idir.rename(staged, name)
    idir.fsync()
    return True


def ensure_agent_config(settings, name, text, check_mode=False):
    """Open the identity directory of ``settings`` (an identity Settings), take its lock and
    write the configuration there. Raises StateError when the system refuses (full disk...)."""
    try:
        idir = IdentityDir.open(settings.path, settings.uid, settings.gid, create=not check_mode)
        if idir is None:
            return write_agent_config(None, name, text, settings.uid, settings.gid, check_mode)
        with idir:
            idir.lock(timeout=settings.lock_timeout)
            return write_agent_config(idir, name, text, settings.uid, settings.gid, check_mode)
    except OSError as exc:
        raise StateError("cannot write %s in %s: %s"
                         % (name, settings.path, exc.strerror or type(exc).__name__)) from None
