"""plugins/module_utils/fsutil.py against another process: the identity directory's lock
(tests/unit/test_fsutil.py tests the file operations in this process)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import LockError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.fsutil import IdentityDir

HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_lock_times_out_while_another_process_holds_it(tmp_path):
    (tmp_path / "d").mkdir(mode=0o700)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "d"), "30"],
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        with IdentityDir.open(str(tmp_path / "d"), os.geteuid(), os.getegid(), create=True) as d:
            started = time.monotonic()
            with pytest.raises(LockError, match="another run holds the lock"):
                d.lock(timeout=0.3)
            assert time.monotonic() - started >= 0.3
    finally:
        holder.kill()
        holder.wait()
