"""The one command that hands the controller's headers to a device, run by a real ``/bin/sh``.

It makes a private directory under the remote temporary one (``~`` expanded by the device's
shell, as Ansible's own), prints it, removes headers files that interrupted runs left there,
and writes its standard input to the headers file, 0600: the module then deletes the file and
the emptied directory (plugins/module_utils/headers.py), so a run with the token costs one
round trip more than the module.
"""

from __future__ import annotations

import os
import stat
import subprocess
import time

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import controller
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.headers import (
    HEADERS_FILE_NAME,
    remove_transfer_dir,
)

NAME = "ansible-tmp-1796590637.65-24260-168653926234233"
DATA = b'{"Authorization": "Bearer not-a-real-token"}'


def sh(cmd, home, data=DATA):
    return subprocess.run(["/bin/sh", "-c", cmd], input=data, capture_output=True, env={"HOME": str(home), "PATH":
                          os.environ["PATH"]}, check=False, umask=0o022)


def test_one_command_makes_the_directory_and_writes_the_file_0600(tmp_path):
    run = sh(controller.headers_dir_command("~/.ansible/tmp", NAME), tmp_path)
    assert run.returncode == 0, run.stderr
    made = controller.made_dir(run.stdout.decode(), NAME)
    assert made == str(tmp_path / ".ansible" / "tmp" / NAME)
    headers = os.path.join(made, HEADERS_FILE_NAME)
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(headers).st_mode) == 0o600
    with open(headers, "rb") as handle:
        assert handle.read() == DATA
    assert b"Bearer" not in run.stdout + run.stderr
    # The module's side: the file deleted once read, then the emptied directory.
    os.unlink(headers)
    assert remove_transfer_dir(headers) and not os.path.exists(made)


def test_stale_headers_files_go_and_fresh_ones_stay(tmp_path):
    base = tmp_path / "remote-tmp"
    stale, fresh = base / "ansible-tmp-old", base / "ansible-tmp-busy"
    for directory in (stale, fresh):
        directory.mkdir(parents=True)
        (directory / HEADERS_FILE_NAME).write_bytes(DATA)
    old = time.time() - (controller.STALE_HEADERS_MINUTES + 5) * 60
    os.utime(stale / HEADERS_FILE_NAME, (old, old))
    run = sh(controller.headers_dir_command(str(base), NAME), tmp_path)
    assert run.returncode == 0, run.stderr
    assert not (stale / HEADERS_FILE_NAME).exists()
    assert (fresh / HEADERS_FILE_NAME).exists(), "another run's file, still in use"


def test_a_directory_that_exists_already_stops_the_command_before_any_write(tmp_path):
    base = tmp_path / "remote-tmp"
    (base / NAME).mkdir(parents=True)
    run = sh(controller.headers_dir_command(str(base), NAME), tmp_path)
    assert run.returncode != 0
    assert controller.made_dir(run.stdout.decode(), NAME) is None
    assert list((base / NAME).iterdir()) == []


def test_no_standard_input_fails_but_names_the_directory(tmp_path):
    # A connection that gives commands no standard input: the action plugin then transfers
    # the file into the directory the command printed.
    run = sh(controller.headers_dir_command(str(tmp_path / "remote-tmp"), NAME), tmp_path, data=b"")
    assert run.returncode != 0
    assert controller.made_dir(run.stdout.decode(), NAME) == str(tmp_path / "remote-tmp" / NAME)


def test_only_the_action_plugins_emptied_directory_is_removed(tmp_path):
    other = tmp_path / "not-ours"
    other.mkdir()
    assert not remove_transfer_dir(str(other / HEADERS_FILE_NAME))
    busy = tmp_path / "ansible-tmp-busy"
    busy.mkdir()
    (busy / "AnsiballZ_mtls_identity.py").write_text("")  # not pipelined: the module lies there
    assert not remove_transfer_dir(str(busy / HEADERS_FILE_NAME)) and busy.exists()
    target = tmp_path / "ansible-tmp-target"
    target.mkdir()
    link = tmp_path / "ansible-tmp-link"
    link.symlink_to(target)
    assert not remove_transfer_dir(str(link / HEADERS_FILE_NAME)) and target.exists()
