# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# fleet-mtls device-side helpers: the identity transaction, the provisioning API client,
# certificate building/parsing and safe file writing. Imported by library/mtls_identity*.py
# as ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.<name>.
