"""Shared pytest setup: make the bundle's module_utils importable as Ansible ships them."""
from __future__ import annotations

import pathlib

import ansible.module_utils

REPO = pathlib.Path(__file__).resolve().parent.parent

# Modules import `ansible.module_utils.fleet_mtls.*`; AnsiballZ bundles them on the device.
# Extending the package path gives the tests the very same import names.
if str(REPO / "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(REPO / "module_utils"))
