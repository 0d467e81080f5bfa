"""Stand-in for ansible-test's pip bootstrap script (get-pip.py), for machines that reach PyPI
but not ci-files.testing.ansible.com.

ansible-test --venv creates each virtualenv without pip, then runs its cached bootstrap script
(~/.ansible/test/cache/get_pip_<version>.py) in it with pip-install arguments such as
``--disable-pip-version-check pip==24.2 --no-setuptools --no-wheel``. Like get-pip.py, this runs
pip from a pip wheel - the one tests/sanity.sh downloads from PyPI next to this file - to install
the packages asked for (pip itself), from that directory only; get-pip.py's own
--no-setuptools/--no-wheel mean "nothing more".
"""

from __future__ import annotations

import glob
import os
import runpy
import sys


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    wheels = sorted(glob.glob(os.path.join(here, "pip-*-py3-none-any.whl")))
    if not wheels:
        sys.exit("get_pip_offline: no pip wheel in %s (tests/sanity.sh downloads it)" % here)
    args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
    sys.path.insert(0, wheels[-1])
    # Only from the wheel's directory: no network needed for the bootstrap itself.
    sys.argv = ["pip", "install", "--no-cache-dir", "--no-index", "--find-links", here, *args]
    runpy.run_module("pip", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
