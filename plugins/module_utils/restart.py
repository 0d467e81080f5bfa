# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restarting the agent, and checking that a container agent really gets its files.

The agent reads its certificate once, at start: after a rotation the registry refuses the old
certificate, so the agent is restarted right after its own swap (the caller measures the time
in between as the blackout). Methods: ``docker`` (restart the agent's container, as the
upstream installer does), ``systemd`` (restart its unit, after a daemon-reload when the drop-in
changed), ``command`` (an operator's command, no shell), ``none``.

For ``docker`` the running container decides what the agent reads, not our files: it must
mount the identity directory read-only at ``<home>/.mtls`` and carry ``SSL_CERT_FILE`` when the
agent must trust a private CA. ``inspect_container`` compares and, when they differ, says
exactly which ``docker run`` flags to use.

The methods are a registry, ``METHODS``: one ``Method`` each, holding how it restarts, how it
inspects what the agent gets (docker's container check), whether the agent needs the systemd
drop-in, where the agent sees the identity directory's files, and what the documentation says
of it. A new method is one entry here: the option's choices and description follow
(option_table; tests/tools/option_docs.py rewrites the docs).
"""
from __future__ import annotations

import json
import os
import shlex
import time

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import IdentityError


class RestartError(IdentityError):
    """The agent could not be restarted, or its container does not get its files."""


class Outcome:
    def __init__(self, restarted, detail, seconds=0.0):
        self.restarted = restarted
        self.detail = detail
        self.seconds = seconds


class Restart:
    """How this device's agent is restarted: the method and its settings (options
    ``agent_restart``, ``agent_container``, ``agent_container_home``, ``docker_command``,
    ``agent_service``, ``agent_restart_command``)."""

    def __init__(self, *, method, container, container_home, docker, service, command):
        if method not in METHODS:
            raise RestartError("unknown restart method %r" % method)
        self.method = method
        self.how = METHODS[method]
        self.container = container
        self.container_home = container_home
        self.docker = docker
        self.service = service
        self.command = command

    def run(self, runner, daemon_reload=False):
        """Restart the agent; returns an Outcome. Raises RestartError when a restart failed."""
        start = time.monotonic()
        outcome = self.how.restart(self, runner, daemon_reload)
        outcome.seconds = time.monotonic() - start
        return outcome

    def inspect(self, runner, agent):
        """None when the agent gets the files it reads (``agent``: AgentConfig), else the problem."""
        return self.how.inspect(self, runner, agent) if self.how.inspect else None

    def path_for_agent(self, identity_dir, path):
        """``path`` as the agent sees it (a container sees the identity directory elsewhere)."""
        return self.how.agent_path(self, identity_dir, path) if self.how.agent_path else path


class Method:
    """One restart method: how to restart, how to inspect what the agent gets (or None), whether
    the agent needs the systemd drop-in, where it sees a file of the identity directory (or None:
    where it is)."""

    def __init__(self, *, name, doc, restart, inspect, needs_dropin, agent_path):
        self.name = name
        self.doc = doc  # what the option's documentation says of it (O(:option) names an option)
        self.restart = restart
        self.inspect = inspect
        self.needs_dropin = needs_dropin
        self.agent_path = agent_path


def _run(runner, argv):
    """(rc, stdout, stderr); rc None when the program does not exist."""
    try:
        return runner(argv)
    except FileNotFoundError:
        return None, "", ""
    except OSError as exc:
        raise RestartError("%s cannot be run: %s" % (argv[0], exc.strerror or exc)) from None


def subprocess_runner(argv):
    import subprocess  # only when no Ansible runner is given (tests, tools)

    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)  # noqa: S603
    return proc.returncode, proc.stdout, proc.stderr


def _restart_none(r, runner, daemon_reload):
    return Outcome(False, "mtls_agent_restart is none: the agent was not restarted")


def _restart_docker(r, runner, daemon_reload):
    rc, _out, err = _run(runner, [r.docker, "restart", r.container])
    if rc is None:
        return Outcome(False, "no %s command on this host, so no container %s to restart" % (r.docker, r.container))
    if rc != 0 and "no such container" in err.lower():
        return Outcome(False, "no container %s on this host: nothing restarted (the agent will read the new "
                       "identity when it starts)" % r.container)
    if rc != 0:
        raise RestartError("%s restart %s failed (rc %d): %s" % (r.docker, r.container, rc, _short(err)))
    return Outcome(True, "restarted (docker)")


def _restart_systemd(r, runner, daemon_reload):
    if daemon_reload:
        _must(runner, ["systemctl", "daemon-reload"], "systemctl daemon-reload")
    _must(runner, ["systemctl", "restart", r.service], "systemctl restart %s" % r.service)
    return Outcome(True, "restarted (systemd)")


def _restart_command(r, runner, daemon_reload):
    argv = shlex.split(r.command or "")
    if not argv:
        raise RestartError("mtls_agent_restart is command but mtls_agent_restart_command is empty")
    _must(runner, argv, "the restart command %s" % argv[0])
    return Outcome(True, "restarted (command)")


def _inspect_docker(r, runner, agent):
    return inspect_container(runner, r.container, agent.identity_dir, r.container_home,
                             agent.cert_file_for_agent(), docker=r.docker)


def _in_container(r, identity_dir, path):
    """The container sees the identity directory at <home>/.mtls (mounted read-only)."""
    if os.path.dirname(path) != identity_dir:
        return path
    return os.path.join(r.container_home, ".mtls", os.path.basename(path))


METHODS = {method.name: method for method in (
    Method(name="docker", doc="restarts O(:agent_container) and checks that it mounts the identity read-only at "
                              "C(<agent_container_home>/.mtls) with the right C(SSL_CERT_FILE)",
           restart=_restart_docker, inspect=_inspect_docker, needs_dropin=False, agent_path=_in_container),
    Method(name="systemd", doc="restarts O(:agent_service) (after a daemon-reload when its drop-in changed)",
           restart=_restart_systemd, inspect=None, needs_dropin=True, agent_path=None),
    Method(name="command", doc="runs O(:agent_restart_command) without a shell",
           restart=_restart_command, inspect=None, needs_dropin=False, agent_path=None),
    Method(name="none", doc="restarts nothing",
           restart=_restart_none, inspect=None, needs_dropin=False, agent_path=None),
)}


def _must(runner, argv, what):
    rc, _out, err = _run(runner, argv)
    if rc is None:
        raise RestartError("%s: %s not found" % (what, argv[0]))
    if rc != 0:
        raise RestartError("%s failed (rc %d): %s" % (what, rc, _short(err)))


def _short(text, limit=300):
    text = " ".join((text or "").split())
    return text[:limit] + ("..." if len(text) > limit else "")


def run_flags(identity_dir, home, cert_file):
    """The docker run flags that give a container agent its identity and trust."""
    flags = ["-v %s:%s:ro" % (identity_dir, os.path.join(home, ".mtls"))]
    if cert_file:
        flags.append("--env-file %s" % os.path.join(identity_dir, "agent.env"))
    return " ".join(flags)


def inspect_container(runner, container, identity_dir, home, cert_file, docker="docker"):
    """None when the container gets the identity directory and trust it needs (or does not
    exist); otherwise the problems, as one message ending with the flags to use."""
    rc, out, err = _run(runner, [docker, "inspect", "--type", "container", container])
    if rc is None or (rc != 0 and "no such" in (err + out).lower()):
        return None
    if rc != 0:
        raise RestartError("%s inspect %s failed (rc %d): %s" % (docker, container, rc, _short(err)))
    try:
        info = json.loads(out)[0]
    except (ValueError, IndexError, KeyError, TypeError):
        raise RestartError("%s inspect %s gave an answer that is not a container" % (docker, container)) from None
    problems = _mount_problems(info, identity_dir, os.path.join(home, ".mtls"))
    env = dict(item.split("=", 1) for item in (info.get("Config") or {}).get("Env") or [] if "=" in item)
    if cert_file and env.get("SSL_CERT_FILE") != cert_file:
        problems.append("its SSL_CERT_FILE is %s, not %s" % (env.get("SSL_CERT_FILE") or "unset", cert_file))
    if not cert_file and env.get("SSL_CERT_FILE"):
        problems.append("its SSL_CERT_FILE=%s replaces the default trust store it should use"
                        % env["SSL_CERT_FILE"])
    if not problems:
        return None
    return ("the agent container %s does not get what the agent reads: %s. Recreate it with: "
            "docker run %s ..." % (container, "; ".join(problems), run_flags(identity_dir, home, cert_file)))


def _mount_problems(info, identity_dir, target):
    for mount in info.get("Mounts") or []:
        if mount.get("Destination") != target:
            continue
        if os.path.realpath(mount.get("Source") or "") != os.path.realpath(identity_dir):
            return ["%s is mounted from %s, not %s" % (target, mount.get("Source"), identity_dir)]
        if mount.get("RW", True):
            return ["%s is mounted read-write (mount it read-only)" % target]
        return []
    return ["%s does not mount %s at %s" % ("it", identity_dir, target)]
