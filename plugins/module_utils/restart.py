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
"""
from __future__ import annotations

import json
import os
import shlex
import time

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import IdentityError

METHODS = ("docker", "systemd", "command", "none")


class RestartError(IdentityError):
    """The agent could not be restarted, or its container does not get its files."""


class Outcome:
    def __init__(self, restarted, detail, seconds=0.0):
        self.restarted = restarted
        self.detail = detail
        self.seconds = seconds


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


def restart_agent(method, runner, container="orchestrator_agent", service="orchestrator-agent",
                  command="", docker="docker", daemon_reload=False):
    """Restart the agent; returns an Outcome. Raises RestartError when a restart failed."""
    start = time.monotonic()
    if method == "none":
        return Outcome(False, "mtls_agent_restart is none: the agent was not restarted")
    if method == "docker":
        rc, _out, err = _run(runner, [docker, "restart", container])
        if rc is None:
            return Outcome(False, "no %s command on this host, so no container %s to restart"
                           % (docker, container))
        if rc != 0 and "no such container" in err.lower():
            return Outcome(False, "no container %s on this host: nothing restarted (the agent will "
                           "read the new identity when it starts)" % container)
        if rc != 0:
            raise RestartError("%s restart %s failed (rc %d): %s" % (docker, container, rc, _short(err)))
    elif method == "systemd":
        if daemon_reload:
            _must(runner, ["systemctl", "daemon-reload"], "systemctl daemon-reload")
        _must(runner, ["systemctl", "restart", service], "systemctl restart %s" % service)
    elif method == "command":
        argv = shlex.split(command or "")
        if not argv:
            raise RestartError("mtls_agent_restart is command but mtls_agent_restart_command is empty")
        _must(runner, argv, "the restart command %s" % argv[0])
    else:
        raise RestartError("unknown restart method %r" % method)
    return Outcome(True, "restarted (%s)" % method, time.monotonic() - start)


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
