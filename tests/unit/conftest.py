"""tests/unit holds pure tests: no network and no child process. While a test of this directory
is set up, runs and is torn down, connecting, binding or resolving a socket and starting a
process (subprocess, fork, exec, spawn) raise ``ImpureUnitTest``; a test that needs one of them
belongs in tests/module. A socket pair (a connected pair inside this process, no address) stays
allowed: the wire-protocol tests speak over one.

``ImpureUnitTest`` derives from BaseException so that code under test catching ``Exception`` cannot
swallow it and let the test pass by accident."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest


class ImpureUnitTest(BaseException):
    """A unit test used the network or started a process."""


# (owner, attribute) pairs replaced for the duration of each phase of a unit test.
BLOCKED = (
    (socket.socket, "connect"),
    (socket.socket, "connect_ex"),
    (socket.socket, "bind"),
    (socket.socket, "sendto"),
    (socket, "getaddrinfo"),
    (subprocess.Popen, "_execute_child"),  # every subprocess.run/Popen/check_output
    (os, "fork"),
    (os, "forkpty"),
    (os, "posix_spawn"),
    (os, "posix_spawnp"),
    (os, "system"),
    (os, "execv"),
    (os, "execve"),
)


def _refuse(name):
    def refused(*_args, **_kwargs):
        raise ImpureUnitTest(f"a unit test called {name}: move it to tests/module")

    return refused


def _guarded():
    """A hook wrapper installing the refusals around one phase (setup, call, teardown)."""

    @pytest.hookimpl(hookwrapper=True)
    def phase(item):
        saved = [(owner, name, getattr(owner, name)) for owner, name in BLOCKED if hasattr(owner, name)]
        for owner, name, _ in saved:
            setattr(owner, name, _refuse(f"{getattr(owner, '__name__', owner)}.{name}"))
        try:
            yield
        finally:
            for owner, name, original in saved:
                setattr(owner, name, original)

    return phase


# Called through the item's own hooks: these apply to tests under tests/unit only.
pytest_runtest_setup = _guarded()
pytest_runtest_call = _guarded()
pytest_runtest_teardown = _guarded()
