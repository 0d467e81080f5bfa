# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent's configuration files: rendered from the role's templates on the controller,
completed, validated and staged here beside the live ones, swapped in only after they were
proven.

What the stock agent really reads is fixed in its code: ``~/.mtls/client.crt`` and
``client.key`` of its user, and the server trust of OpenSSL's default store, which only the
``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` variables of its environment change. So the files that
matter to it are:

  agent.env        its environment (``SSL_CERT_FILE=...`` when it must trust a private CA);
                   docker reads it with ``--env-file``, systemd through the drop-in below
  server-ca.crt    the server's CA, when one is given (``SSL_CERT_FILE`` names it)
  <drop-in>        ``/etc/systemd/system/<service>.service.d/fleet-mtls.conf``
                   (``EnvironmentFile=`` agent.env), for a restart method that needs it (systemd)

``agent-tls.ini`` is a machine-readable record of the same settings for people and tools; the
stock agent ignores it, so a change of it alone never restarts the agent.

The texts come from templates (``roles/mtls_identity/templates``, or the operator's), which the
action plugin renders on the controller with ``template_variables()`` and the task's variables.
The one value only the device knows - where the identity directory is (under the owner's home)
- is the placeholder ``IDENTITY_DIR_PLACEHOLDER`` in them; ``AgentConfig`` puts the real directory in its
place, and refuses a text with a placeholder left, key material, or an environment that docker's
``--env-file`` and systemd's ``EnvironmentFile=`` would read differently or that would give the
agent another trust than the one the check proves.

A change is staged as ``.<name>.new`` next to the live file (same directory, so the swap is one
atomic rename each), checked by the caller with the staged settings, then committed or
aborted: an aborted change leaves the live files byte-for-byte as they were.
"""
from __future__ import annotations

import errno
import os
import re
import stat
from urllib.parse import urlsplit

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError, FileSafetyError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.fsutil import DirFd
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.layout import (  # noqa: F401 - re-exported
    AGENT_CONFIG,
    AGENT_ENV,
    API_CA,
    SERVER_CA,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.names import setting
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.option_table import TLS_VERSIONS, TRUSTS

INI = AGENT_CONFIG  # the record's default name (option agent_config_name)
ENV = AGENT_ENV
DROPIN_NAME = "fleet-mtls.conf"
SYSTEMD_DIR = "/etc/systemd/system"
FILE_MODE = 0o644
MAX_CA_SIZE = 256 * 1024
MAX_TEMPLATE_SIZE = 64 * 1024
# What a template names the identity directory by until the device fills it in.
IDENTITY_DIR_PLACEHOLDER = "/@@fleet_mtls_identity_dir@@"
_PLACEHOLDER = re.compile(r"@@fleet_mtls", re.IGNORECASE)
# The templates the action plugin renders: key -> (role variable's option, default file name).
TEMPLATES = {"env": ("agent_env_template", "agent.env.j2"), "ini": ("agent_ini_template", "agent-tls.ini.j2"),
             "dropin": ("agent_dropin_template", "fleet-mtls.conf.j2")}
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# A value in agent.env must survive docker's --env-file and systemd's EnvironmentFile= alike.
_ENV_SAFE = re.compile(r"^[A-Za-z0-9_./@:+-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNIT_NAME = re.compile(r"^[A-Za-z0-9@._:-]{1,200}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
RESERVED = ("client.key", "client.crt", ENV, SERVER_CA, API_CA)
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\s+[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----")


def check_ca_content(text, what):
    """PEM certificates only (a CA file is world-readable: never a key, never anything else)."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("%s is empty" % what)
    if len(text.encode("utf-8")) > MAX_CA_SIZE:
        raise ConfigError("%s is larger than %d bytes" % (what, MAX_CA_SIZE))
    if "PRIVATE KEY" in text:
        raise ConfigError("%s contains a private key: give the CA certificate only" % what)
    if not _PEM_CERT.search(text):
        raise ConfigError("%s holds no PEM certificate" % what)
    return text if text.endswith("\n") else text + "\n"


def parse_env(text, what):
    """{name: value} of an agent.env text; refuses what docker --env-file and systemd's
    EnvironmentFile= would read differently (quotes, spaces, continuation lines...)."""
    values = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not _ENV_NAME.match(name) or not _ENV_SAFE.match(value):
            raise ConfigError("%s line %d is not NAME=VALUE with a value of letters, digits and ./_-@:+ only "
                              "(what docker --env-file and systemd's EnvironmentFile= both read alike)"
                              % (what, number))
        values[name] = value
    return values


class AgentConfig:
    """The agent's runtime as the bundle sets it up (validated; no file system access).

    ``restart``: a restart.Restart. ``templates``: the texts the action plugin rendered
    ({"env", "ini", "dropin"}), or None where only ``template_variables()`` is wanted (the
    controller, before it renders them)."""

    def __init__(self, *, identity_dir, server_url, trust, server_ca, server_ca_content, tls_min_version,
                 restart, config_name, templates, systemd_dir=SYSTEMD_DIR):
        self.identity_dir = identity_dir
        self.systemd_dir = systemd_dir
        parts = urlsplit(server_url or "")
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError("%s must be an https:// URL (where the agent connects), got %r"
                              % (setting("server_url"), server_url))
        self.server_url = server_url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or 443
        if server_ca_content is not None:
            server_ca_content = check_ca_content(server_ca_content, "the server CA")
            if server_ca not in (None, "", "system"):
                raise ConfigError("give the server CA as a file on the device (%s) or from the controller "
                                  "(%s), not both" % (setting("server_ca"), setting("server_ca_src")))
        elif server_ca not in (None, "", "system") and not os.path.isabs(server_ca):
            raise ConfigError("%s must be 'system' or an absolute path on the device" % setting("server_ca"))
        self.server_ca_content = server_ca_content
        self.server_ca = (os.path.join(identity_dir, SERVER_CA) if server_ca_content is not None
                          else (server_ca if server_ca not in (None, "", "system") else None))
        self.trust = trust or ("ca_file" if self.server_ca else "system")
        if self.trust not in TRUSTS:
            raise ConfigError("%s must be one of %s" % (setting("agent_trust"), ", ".join(TRUSTS)))
        if self.trust == "ca_file" and not self.server_ca:
            raise ConfigError("%s=ca_file needs the server's CA: set %s (a file on the controller) or %s (a path on "
                              "the device)" % (setting("agent_trust"), setting("server_ca_src"), setting("server_ca")))
        if tls_min_version not in TLS_VERSIONS:
            raise ConfigError("%s must be one of %s" % (setting("tls_min_version"), ", ".join(TLS_VERSIONS)))
        self.tls_min_version = tls_min_version
        self.restart = restart
        if restart.how.needs_dropin and not _UNIT_NAME.match(restart.service or ""):
            raise ConfigError("%s %r is not a systemd unit name" % (setting("agent_service"), restart.service))
        if not os.path.isabs(restart.container_home or ""):
            raise ConfigError("%s must be an absolute path" % setting("agent_container_home"))
        self.container_home = restart.container_home.rstrip("/") or "/"
        if not isinstance(config_name, str) or not _FILE_NAME.match(config_name) or config_name in RESERVED:
            raise ConfigError("%s must be a plain file name (letters, digits, '.', '_', "
                              "'-'; not hidden) other than the identity's own files" % setting("agent_config_name"))
        self.config_name = config_name
        for path in (self.server_ca, identity_dir):
            if path and not _ENV_SAFE.match(path):
                raise ConfigError("%r cannot be written to agent.env: use a path of letters, digits "
                                  "and ./_-@:+ only" % path)
        self.texts = self._complete(templates) if templates is not None else None

    # ------------------------------------------------------------------ what the agent sees
    def cert_file_for_agent(self):
        """The SSL_CERT_FILE value the agent gets (a path as the agent sees it), or None."""
        if self.trust != "ca_file":
            return None
        return self.restart.path_for_agent(self.identity_dir, self.server_ca)

    def dropin_dir(self):
        return os.path.join(self.systemd_dir, self.restart.service + ".service.d")

    def env_file(self):
        return os.path.join(self.identity_dir, ENV)

    # ------------------------------------------------------------------ the templates
    def template_variables(self):
        """The variables a template of the agent's files gets (documented in the role README).
        Built on the controller with ``identity_dir=IDENTITY_DIR_PLACEHOLDER``."""
        return {
            "mtls_agent_identity_dir": self.identity_dir,
            "mtls_agent_env_file": self.env_file(),
            "mtls_agent_cert_file": os.path.join(self.identity_dir, "client.crt"),
            "mtls_agent_key_file": os.path.join(self.identity_dir, "client.key"),
            "mtls_agent_ssl_cert_file": self.cert_file_for_agent() or "",
            "mtls_agent_server_ca": self.server_ca or "system",
            "mtls_agent_server_url": self.server_url,
            "mtls_agent_server_host": self.host,
            "mtls_agent_server_port": self.port,
            "mtls_agent_trust": self.trust,
            "mtls_agent_tls_min_version": self.tls_min_version,
            "mtls_agent_restart": self.restart.method,
            "mtls_agent_service": self.restart.service,
        }

    def templates_wanted(self):
        """The keys of TEMPLATES this configuration renders."""
        return ("env", "ini", "dropin") if self.restart.how.needs_dropin else ("env", "ini")

    def _complete(self, templates):
        """The rendered texts with the identity directory filled in, validated."""
        texts = {}
        for key in self.templates_wanted():
            text = templates.get(key) if isinstance(templates, dict) else None
            what = "the %s template (%s)" % (key, setting(TEMPLATES[key][0]))
            if not isinstance(text, str):
                raise ConfigError("%s was not rendered: run the module through Ansible, whose action plugin "
                                  "renders the agent's files" % what)
            if len(text.encode("utf-8")) > MAX_TEMPLATE_SIZE:
                raise ConfigError("%s renders more than %d bytes" % (what, MAX_TEMPLATE_SIZE))
            text = text.replace(IDENTITY_DIR_PLACEHOLDER, self.identity_dir)
            if _PLACEHOLDER.search(text):
                raise ConfigError("%s uses the identity directory in a way the device cannot fill in (a filter "
                                  "applied to mtls_agent_identity_dir?): use the variable as it is" % what)
            if "PRIVATE KEY" in text:
                raise ConfigError("%s renders key material: the agent's files are world-readable" % what)
            texts[key] = text if text.endswith("\n") else text + "\n"
        self._check_env(texts["env"])
        if "dropin" in texts:
            self._check_dropin(texts["dropin"])
        return texts

    def _check_env(self, text):
        """The environment must give the agent exactly the trust the check proves."""
        what = "%s (%s)" % (ENV, setting("agent_env_template"))
        env = parse_env(text, what)
        wanted = self.cert_file_for_agent()
        if env.get("SSL_CERT_FILE") != wanted:
            raise ConfigError("%s sets SSL_CERT_FILE=%s but the agent's trust is %s%s: the check would not prove "
                              "what the agent gets" % (what, env.get("SSL_CERT_FILE", "(unset)"), self.trust,
                                                       " (SSL_CERT_FILE=%s)" % wanted if wanted else ""))
        if "SSL_CERT_DIR" in env:
            raise ConfigError("%s sets SSL_CERT_DIR, which the agent-true check does not model: give the CA as "
                              "one file (%s)" % (what, setting("server_ca_src")))

    def _check_dropin(self, text):
        if self.trust != "ca_file":
            return
        files = [line.split("=", 1)[1].strip().lstrip("-") for line in text.splitlines()
                 if line.strip().startswith("EnvironmentFile=")]
        if self.env_file() not in files:
            raise ConfigError("the systemd drop-in (%s) has no EnvironmentFile=%s: the agent would not get its "
                              "SSL_CERT_FILE" % (setting("agent_dropin_template"), self.env_file()))

    def render_env(self):
        return self.texts["env"]

    def render_ini(self):
        return self.texts["ini"]

    def render_dropin(self):
        return self.texts["dropin"]

    def wanted(self):
        """[(directory, name, bytes, agent_reads)] of every file this configuration manages."""
        files = [
            (self.identity_dir, self.config_name, self.render_ini(), False),
            (self.identity_dir, ENV, self.render_env(), True),
        ]
        if self.server_ca_content is not None:
            files.append((self.identity_dir, SERVER_CA, self.server_ca_content, True))
        if self.restart.how.needs_dropin:
            files.append((self.dropin_dir(), DROPIN_NAME, self.render_dropin(), True))
        return [(d, n, t.encode("utf-8"), reads) for d, n, t, reads in files]


def staged_name(name):
    return "." + name + ".new"


class SystemDir(DirFd):
    """A root-owned system directory (the systemd drop-in directory), opened without following
    a symbolic link below its parent (``/etc/systemd/system``); created 0755 when missing."""

    def __init__(self, path, create):
        self.path = path
        self.fd = None
        parent = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _O_CLOEXEC)
        try:
            name = os.path.basename(path)
            if create:
                try:
                    os.mkdir(name, 0o755, dir_fd=parent)
                except FileExistsError:
                    pass
            try:
                self.fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _O_CLOEXEC,
                                  dir_fd=parent)
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise FileSafetyError("refusing to use %s: it is a symbolic link or not a "
                                          "directory" % path) from None
                raise
            st = os.fstat(self.fd)
            if st.st_uid != 0 or st.st_mode & 0o022:
                raise FileSafetyError("refusing to use %s: it must be owned by root and writable "
                                      "by root only" % path)
        finally:
            os.close(parent)

    def read(self, name):
        if self.fd is None:
            return None
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | _O_CLOEXEC, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as handle:
            return handle.read(MAX_CA_SIZE + 1)

    def create(self, name, data, mode):
        self.unlink(name)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _O_CLOEXEC, mode,
                     dir_fd=self.fd)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def file_diff(path, before, after):
    """An ansible diff of one agent file (text: these files never hold key material)."""
    def text(data):
        return "" if data is None else data.decode("utf-8", "replace")

    return {"before_header": path, "after_header": path, "before": text(before), "after": text(after)}


def _mode_and_owner_ok(st, uid, gid):
    return st is not None and stat.S_IMODE(st.st_mode) == FILE_MODE and (st.st_uid, st.st_gid) == (uid, gid)


class Staging:
    """The difference between the live configuration and ``config``, staged and then either
    committed or aborted. ``idir`` is the open IdentityDir of the identity directory."""

    def __init__(self, idir, config, check_mode=False):
        self.idir = idir
        self.config = config
        self.check_mode = check_mode
        self.changed = []      # names whose content differs (staged)
        self.restart_needed = False  # a file the agent reads changed
        self.dropin_changed = False
        self.mode_fixes = []   # names whose content is right but mode/owner were not
        self.diffs = []        # ansible diffs (before/after text) of the changed files
        self._sysdir = None
        self._staged = []      # (dir handle, name)

    def _dir_for(self, directory, create):
        if directory == self.config.identity_dir:
            return self.idir
        if self._sysdir is None:
            if not create and not os.path.isdir(directory):
                return None
            if os.geteuid() != 0:
                raise ConfigError("writing the systemd drop-in %s needs root: run the task with "
                                  "become" % directory)
            self._sysdir = SystemDir(directory, create=create)
        return self._sysdir

    def prepare(self):
        """Find what differs; outside check mode, stage it. Returns the changed names."""
        for directory, name, data, agent_reads in self.config.wanted():
            handle = self._dir_for(directory, create=False)
            current, st = self._current(handle, name)
            # A file with a second name is replaced by a fresh one, never chmod-ed through the link.
            if current == data and (st is None or st.st_nlink == 1):
                if handle is self.idir and not _mode_and_owner_ok(st, self.idir.uid, self.idir.gid):
                    self.mode_fixes.append(name)
                continue
            self.changed.append(name)
            self.diffs.append(file_diff(os.path.join(directory, name), current, data))
            self.restart_needed = self.restart_needed or agent_reads
            self.dropin_changed = self.dropin_changed or name == DROPIN_NAME
            if not self.check_mode:
                handle = self._dir_for(directory, create=True)
                self._staged.append((handle, name))  # before the write: abort() removes a partial one
                handle.create(staged_name(name), data, FILE_MODE)
        return self.changed

    def _current(self, handle, name):
        if handle is None:
            return None, None
        if handle is self.idir:
            return self.idir.read(name)
        return handle.read(name), None

    def staged_server_ca(self):
        """The CA file a check of the staged configuration must trust (the staged copy when the
        CA changed), as a path on the device."""
        server_ca = self.config.server_ca
        if server_ca and os.path.basename(server_ca) in self.changed and \
                os.path.dirname(server_ca) == self.config.identity_dir:
            return os.path.join(self.config.identity_dir, staged_name(os.path.basename(server_ca)))
        return server_ca

    def commit(self):
        for handle, name in self._staged:
            handle.rename(staged_name(name), name)
        for handle in {id(entry[0]): entry[0] for entry in self._staged}.values():
            handle.fsync()
        self._staged = []
        if not self.check_mode:
            for name in self.mode_fixes:
                self.idir.fix_file(name, FILE_MODE)

    def abort(self):
        """Remove what was staged (also after a failure half-way through prepare)."""
        for handle, name in self._staged:
            handle.unlink(staged_name(name))
        self._staged = []

    def close(self):
        if self._sysdir is not None:
            self._sysdir.close()
