"""Run library/mtls_identity.py as Ansible would on a device, without the controller.

Usage: python run_module.py ARGS_JSON_FILE  (the file holds {"ANSIBLE_MODULE_ARGS": {...}})

The module's own main() runs unchanged: AnsibleModule reads the arguments from the file
named by argv[1] and prints its JSON result on stdout.  The bundle's module_utils are made
importable under the name Ansible gives them
(ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils, from collections/);
$FLEET_FAULTS_CODE may name another tree holding library/, module_utils/ and collections/
(mutation checks). Fault hooks (sitecustomize.py next to this file) are active in this process when
their variables are set.
"""
import os
import runpy
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
# Mutation checks point this at a copy of library/ + module_utils/ with one protection removed.
REPO = os.environ.get("FLEET_FAULTS_CODE") or REPO
sys.path.insert(0, os.path.join(REPO, "collections"))

sys.argv = [sys.argv[0], sys.argv[1]]
MODULE = os.environ.get("FLEET_FAULTS_MODULE", "mtls_identity")
runpy.run_path(os.path.join(REPO, "library", MODULE + ".py"), run_name="__main__")
