"""Run library/mtls_identity.py as Ansible would on a device, without the controller.

Usage: python run_module.py ARGS_JSON_FILE  (the file holds {"ANSIBLE_MODULE_ARGS": {...}})

The module's own main() runs unchanged: AnsibleModule reads the arguments from the file
named by argv[1] and prints its JSON result on stdout.  The bundle's module_utils are made
importable under the name Ansible gives them (ansible.module_utils.fleet_mtls);
$FLEET_FAULTS_CODE may name another tree holding library/ and module_utils/ (mutation
checks). Fault hooks (sitecustomize.py next to this file) are active in this process when
their variables are set.
"""
import os
import runpy
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
# Mutation checks point this at a copy of library/ + module_utils/ with one protection removed.
REPO = os.environ.get("FLEET_FAULTS_CODE") or REPO

import ansible.module_utils  # noqa: E402

if os.path.join(REPO, "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(os.path.join(REPO, "module_utils"))

sys.argv = [sys.argv[0], sys.argv[1]]
MODULE = os.environ.get("FLEET_FAULTS_MODULE", "mtls_identity")
runpy.run_path(os.path.join(REPO, "library", MODULE + ".py"), run_name="__main__")
