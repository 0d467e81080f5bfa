"""Prove the fault matrix bites: remove one protection at a time and watch its cases fail.

    .venv/bin/python -m tests.faults.mutate [NAME ...]

Each mutation copies the collection's content (plugins/, roles/, playbooks/, meta/, galaxy.yml)
to a scratch directory, removes one protection there by a textual edit (the repository is never
touched), and runs the cases that guard it against the mutant: $FLEET_MTLS_SOURCE makes the
test session import the mutant in-process (tests/fixtures/collection.py), run it in the
module's own process (tests/fixtures/inject/run_module.py) and build and install it for every
Ansible run (tests/conftest.py). A mutation is "killed" when at least one of its cases fails.
A mutation whose text is no longer found is reported as "stale" (the code moved on).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
F = "tests/faults/"
API = "plugins/module_utils/api.py"
API_CLIENT = "plugins/module_utils/api_client.py"

MUTATIONS = {
    "size-cap": (
        "answers above 1 MiB refused without reading them",
        [
            ("plugins/module_utils/transport.py", "if length is not None and int(length) > MAX_BODY:", "if False:"),
            ("plugins/module_utils/transport.py", "if total > MAX_BODY:", "if False:"),
        ],
        [F + "test_network.py::test_oversized_answer_refused"],
    ),
    "retry-4xx": (
        "4xx answers are not retried",
        [("plugins/module_utils/transport.py", "if status == 429 or 500 <= status <= 599:", "if status >= 400:")],
        [
            F + "test_network.py::test_4xx_on_id_not_retried",
            F + "test_network.py::test_404_unknown_preassigned_id_not_retried",
        ],
    ),
    "ignore-retry-after": (
        "Retry-After honoured",
        [("plugins/module_utils/transport.py", "if retry_after is not None:", "if False:")],
        [F + "test_network.py::test_503_retry_after_honoured"],
    ),
    "accept-any-id": (
        "IDs validated against id_pattern and the safe-name rule",
        [
            ("plugins/module_utils/api.py", "ok = re.fullmatch(pattern, value) is not None", "ok = True"),
            (
                "plugins/module_utils/api.py",
                'if not ok or not _SAFE_ID.fullmatch(value) or ".." in value:',
                "if False:",
            ),
        ],
        [
            F + "test_network.py::test_hostile_id",
            F + "test_fuzz.py::test_answer_parser_never_crashes_and_accepts_only_safe_ids",
        ],
    ),
    "no-timeout": (
        "connect and read timeouts (and the per-attempt deadline)",
        [
            ("plugins/module_utils/transport.py", "timeout=self.timeout, stream=True", "timeout=None, stream=True"),
            (
                "plugins/module_utils/transport.py",
                "with _attempt_deadline(self.timeout * ATTEMPT_DEADLINE_FACTOR):\n                    return",
                "with contextlib.nullcontext():\n                    return",
            ),
        ],
        [F + "test_network.py::test_connect_timeout", F + "test_network.py::test_read_timeout_mid_body_on_id"],
    ),
    "no-deadline": (
        "a total deadline per attempt (a trickling server cannot hold a run)",
        [
            (
                "plugins/module_utils/transport.py",
                "with _attempt_deadline(self.timeout * ATTEMPT_DEADLINE_FACTOR):\n                    return",
                "with contextlib.nullcontext():\n                    return",
            )
        ],
        [F + "test_network.py::test_trickling_answer_is_bounded_by_the_timeout"],
    ),
    "no-tls-verify": (
        "server certificate verified",
        [
            (
                "plugins/module_utils/transport.py",
                "allow_redirects=False, verify=self.verify,",
                "allow_redirects=False, verify=False,",
            )
        ],
        [
            F + "test_tls.py::test_unknown_ca_refused_without_ca_path",
            F + "test_tls.py::test_bad_server_certificate_refused",
        ],
    ),
    "no-sanitize": (
        "server reasons stripped of secrets",
        [
            ("plugins/module_utils/reasons.py", 'text = text.replace(secret, "********")', "pass"),
            (
                "plugins/module_utils/reasons.py",
                '"[private key removed]", text)\n    text = re.sub(r"PRIVATE\\s+KEY", "[private key removed]", text)',
                '"[private key removed]", "") or text',
            ),
        ],
        [
            F + "test_network.py::test_reason_with_secrets_is_sanitized",
            F + "test_fuzz.py::test_server_reason_is_sanitized",
        ],
    ),
    "no-rollback": (
        "ambiguous rotation uploads the previous certificate again",
        [
            (
                "plugins/module_utils/identity/transaction.py",
                "if creating or not _can_roll_back(a, agent_id):",
                "if True:",
            )
        ],
        [F + "test_network.py::test_ambiguous_upload_on_rotation_rolls_back"],
    ),
    "no-journal": (
        "journal of an uncertain registry",
        [
            (
                "plugins/module_utils/identity/journal.py",
                "def write(idir, agent_id, operation, fingerprint=None, now=None):\n",
                "def write(idir, agent_id, operation, fingerprint=None, now=None):\n    return\n",
            )
        ],
        [
            F + "test_network.py::test_accept_then_garble_on_create_converges",
            F + "test_crash.py::test_kill_then_rerun_converges[upload-accepted-create-SIGKILL]",
        ],
    ),
    "keep-staged": (
        "staged files removed after a failure",
        [
            (
                "plugins/module_utils/identity/journal.py",
                "def drop_leftovers(idir):\n",
                "def drop_leftovers(idir):\n    return\n",
            )
        ],
        [
            F + "test_network.py::test_400_on_upload_rotation_not_retried",
            F + "test_network.py::test_connection_refused",
        ],
    ),
    "drop-on-interrupt": (
        "an interruption once the journal exists leaves the journal and the staged files",
        [
            (
                "plugins/module_utils/identity/transaction.py",
                "if not journaled:\n                journal.drop_leftovers(idir)  # nothing has left",
                "if True:\n                journal.drop(idir)\n                journal.drop_leftovers(idir)  #",
            )
        ],
        [
            F + "test_crash.py::test_kill_then_rerun_converges[upload-accepted-rotate-SIGINT]",
            F + "test_crash.py::test_ctrl_c_of_ansible_playbook_during_the_upload_converges[create]",
        ],
    ),
    "no-recover": (
        "a staged pair found at start is re-uploaded and swapped",
        [("plugins/module_utils/identity/engine.py", "recovered = tx.recover(a)", "recovered = None")],
        [
            F + "test_crash.py::test_interrupted_rotation_keeps_gate_access_until_rerun",
            F + "test_crash.py::test_kill_then_rerun_converges[between-renames-rotate-SIGKILL]",
        ],
    ),
    "no-lock": (
        "exclusive lock on the identity directory",
        [("plugins/module_utils/identity/engine.py", "idir.lock(timeout=s.lock_timeout)", "pass")],
        [F + "test_crash.py::test_two_concurrent_runs_one_identity"],
    ),
    "mint-new-device": (
        "an unreadable certificate is refused, never replaced by a new device",
        [
            (
                "plugins/module_utils/identity/plan.py",
                "return Plan(REKEY, _unusable_certificate(a, s, agent_id), agent_id, fixes,",
                "return Plan(REKEY if agent_id else CREATE, _unusable_certificate(a, s, agent_id), agent_id, fixes,",
            ),
            (
                "plugins/module_utils/identity/plan.py",
                "    if not agent_id:\n        raise StateError(\n            \"%s, so this device's",
                "    if False:\n        raise StateError(\n            \"%s, so this device's",
            ),
        ],
        [
            F + "test_device_state.py::test_corrupt_cert_refused_then_rekeyed_with_agent_id",
            F + "test_fuzz.py::test_decide_is_total_and_never_mints_a_device_that_has_a_cert",
        ],
    ),
    "repair-rekeys": (
        "wrong modes repaired without a new key",
        [
            (
                "plugins/module_utils/identity/plan.py",
                "plan.kind, plan.reason = REPAIR, ",
                "plan.kind, plan.reason = REKEY, ",
            )
        ],
        [F + "test_device_state.py::test_wrong_mode_repaired_without_new_key"],
    ),
    "keep-hard-linked-key": (
        "a hard-linked key is rotated, never chmod-ed through the link",
        [("plugins/module_utils/identity/plan.py", "    elif hard_linked(a.key.stat):", "    elif False:")],
        [F + "test_device_state.py::test_hard_linked_key_is_rotated_never_chmodded"],
    ),
    "chmod-hard-linked-cert": (
        "a hard-linked certificate is replaced by a fresh copy, never chmod-ed through the link",
        [("plugins/module_utils/identity/transaction.py", "if fix.hard_linked:", "if False:")],
        [F + "test_device_state.py::test_hard_linked_certificate_is_replaced_never_chmodded"],
    ),
    "ignore-clock": (
        "nothing is minted or rotated on a clock far from the API's",
        [("plugins/module_utils/identity/clock.py", "    if abs(skew) <= max_skew:", "    if True:")],
        [F + "test_time.py::test_skewed_clock_refuses_to_mint_or_rotate"],
    ),
    "nominal-lifetime": (
        "renewal follows the issued lifetime when the CA issues less than renew_before_days",
        [("plugins/module_utils/identity/plan.py", "    if info.self_signed or window < lifetime:", "    if True:")],
        [F + "test_time.py::test_ca_lifetime_shorter_than_the_renewal_window_does_not_reenrol_every_run"],
    ),
    "hide-identity-on-later-failure": (
        "a failure after the identity part still reports what it did",
        [("plugins/module_utils/provision.py", "def _identity_part(result, new_pair):\n    if not new_pair:",
          "def _identity_part(result, new_pair):\n    if True:")],
        [F + "test_device_state.py::test_disk_full_at_the_agent_config_reports_the_identity_part"],
    ),
    "follow-links": (
        "symlinks refused for the directory, key and certificate",
        [
            (
                "plugins/module_utils/safepath.py",
                "flags = (os.O_RDONLY if last else _O_SEARCH) | os.O_DIRECTORY | os.O_NOFOLLOW | _O_CLOEXEC",
                "flags = (os.O_RDONLY if last else _O_SEARCH) | os.O_DIRECTORY | _O_CLOEXEC",
            ),
            ("plugins/module_utils/fsutil.py", "flags | os.O_NOFOLLOW | os.O_NONBLOCK", "flags | os.O_NONBLOCK"),
        ],
        [
            F + "test_device_state.py::test_symlinked_file_refused",
            F + "test_device_state.py::test_symlinked_directory_refused",
        ],
    ),
    "follow-links-above": (
        "a symlink at any depth above the identity directory is refused (openat + O_NOFOLLOW)",
        [
            (
                "plugins/module_utils/safepath.py",
                "flags = (os.O_RDONLY if last else _O_SEARCH) | os.O_DIRECTORY | os.O_NOFOLLOW | _O_CLOEXEC",
                "flags = (os.O_RDONLY if last else _O_SEARCH) | os.O_DIRECTORY | _O_CLOEXEC",
            ),
        ],
        [
            F + "test_hostile_paths.py::test_symlink_above_the_directory_does_not_hand_roots_key_to_the_agent",
            "tests/unit/test_safepath.py::test_a_symlink_at_any_depth_is_refused_and_named",
        ],
    ),
    "trust-writable-parents": (
        "a directory on the path writable by others (no sticky bit) is refused",
        [("plugins/module_utils/safepath.py", "writers = _foreign_writers(st, fd, self.uid)", "writers = None")],
        [
            "tests/unit/test_safepath.py::test_world_writable_parent_without_sticky_bit_is_refused",
            "tests/module/test_safepath_accounts.py::test_group_writable_by_a_group_with_another_member_is_refused",
        ],
    ),
    "chown-roots-files": (
        "root's entries are never handed to another owner",
        [("plugins/module_utils/fsutil.py", "        if st.st_uid != self.uid:\n            if st.st_uid == 0:",
          "        if st.st_uid != self.uid and st.st_uid != 0:\n            if st.st_uid == 0:")],
        [
            F + "test_device_state.py::test_root_owned_identity_is_not_handed_to_another_owner",
            "tests/module/test_safepath_accounts.py::test_root_owned_entries_are_not_handed_to_another_owner",
        ],
    ),
    "chmod-through-links": (
        "a file with more than one link is never chmod-ed",
        [("plugins/module_utils/fsutil.py", "if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:", "if False:")],
        [
            F + "test_hostile_paths.py::test_hard_linked_identity_file_is_never_chmod_ed",
            "tests/unit/test_safepath.py::test_a_hard_linked_file_is_never_chmod_ed",
        ],
    ),
    "chmod-after-write": (
        "keys are 0600 from their first byte",
        [
            (
                "plugins/module_utils/fsutil.py",
                "_O_CLOEXEC, mode,\n            dir_fd=self.fd,",
                "_O_CLOEXEC, 0o666,\n            dir_fd=self.fd,",
            ),
            (
                "plugins/module_utils/fsutil.py",
                "            if stat.S_IMODE(st.st_mode) != mode:\n                os.fchmod(fd, mode)\n"
                "            write_all(fd, data)\n",
                "            write_all(fd, data)\n            os.fchmod(fd, mode)\n",
            ),
        ],
        [F + "test_secrets.py::test_no_key_file_ever_has_another_mode_than_0600"],
    ),
    "untrusted-owner": (
        "a directory owned by another user is refused",
        [("plugins/module_utils/safepath.py", "if st.st_uid not in (0, self.uid):", "if False:")],
        [
            F + "test_device_state.py::test_directory_owned_by_another_user_refused",
            "tests/module/test_safepath_accounts.py::test_a_directory_of_another_user_on_the_path_is_refused",
        ],
    ),
    "lenient-success": (
        "an upload answered 200 without the contract's success shape is not a success",
        [
            (API_CLIENT, '        if "statusCode" not in payload:\n', "        if False:\n"),
            (
                API_CLIENT,
                "if not isinstance(code, int) or isinstance(code, bool):\n            raise",
                "if not isinstance(code, int) or isinstance(code, bool):\n            code = 200\n"
                "        if False:\n            raise",
            ),
            (API_CLIENT, '        data = payload.get("data")\n', '        data = payload.get("data", payload)\n'),
            (
                API_CLIENT,
                'isinstance(payload.get("agent_id"), str):\n                raise',
                'isinstance(payload.get("agent_id"), str):\n                return status\n'
                "            if False:\n                raise",
            ),
        ],
        [
            F + "test_hostile_answers.py::test_hostile_200_on_rotation_rolls_back",
            F + "test_hostile_answers.py::test_hostile_200_on_creation_journals_then_converges",
        ],
    ),
    "id-field-fixed": (
        "a JSON upload sends agent_id unless id_field says otherwise",
        [(API_CLIENT, "self.id_field = flavor.id_field or ID_FIELDS[flavor.upload_format]",
          'self.id_field = flavor.id_field or "id"')],
        ["tests/module/test_api_contract.py::test_json_upload_sends_agent_id_when_id_field_is_not_given"],
    ),
    "contract-drift": (
        "the modules' defaults and their docs follow api.DEFAULTS",
        [("plugins/module_utils/api.py", '    "retries": 3,\n', '    "retries": 4,\n')],
        ["tests/unit/test_contract_defaults.py::test_argspec_and_documentation_defaults_equal_the_contracts"],
    ),
    "clock-hidden": (
        "a server certificate not valid at the device's clock is reported as a clock problem",
        [("plugins/module_utils/reasons.py", "    if code in _CLOCK_CODES:", "    if False:")],
        [
            "tests/module/test_api_contract.py::test_an_expired_server_certificate_is_a_clock_problem",
            "tests/module/test_api_contract.py::test_a_device_clock_two_years_off_is_named",
        ],
    ),
    "date-needs-right-clock": (
        "the server's Date is read even when the device's clock fails the certificate dates",
        [("plugins/module_utils/transport.py",
          "            session = self._clock_blind_session()\n        else:",
          "            session = self.session\n        else:")],
        ["tests/module/test_api_contract.py::test_a_device_clock_two_years_off_is_named"],
    ),
    "any-404-is-gone": (
        "only the registry's own unknown-ID answer counts as already deleted",
        [(API_CLIENT, "        if is_unknown_id_answer(status, body, agent_id):",
          "        if True:")],
        [
            "tests/module/test_api_contract.py::test_a_mistyped_deletion_endpoint_fails",
            "tests/playbook/test_playbook_decommission.py::test_mistyped_endpoint_404_keeps_the_identity",
        ],
    ),
    "wipe-before-confirm": (
        "the local identity is removed only once the server confirmed the deletion",
        [("plugins/module_utils/decommission.py",
          '            result["http_status"], deleted = delete(agent_id, path, check=check_mode)',
          '            try:\n'
          '                result["http_status"], deleted = delete(agent_id, path, check=check_mode)\n'
          '            except IdentityError:\n                result["http_status"], deleted = None, True')],
        [
            "tests/module/test_decommission.py::test_nothing_is_removed_unless_the_server_confirmed",
            "tests/playbook/test_playbook_decommission.py::test_server_error_keeps_the_identity",
        ],
    ),
    "any-2xx-is-deleted": (
        "a deletion is believed only on the contract's proof (data.id names the ID)",
        [(API_CLIENT, "            self._check_deletion_proof(path, status, body, agent_id)\n", "")],
        [F + "test_hostile_round.py::test_decommission_believes_only_the_proof_of_deletion"],
    ),
    "any-header-value": (
        "header values are RFC 9110 field values of visible ASCII, refused before any request",
        [("plugins/module_utils/headers.py", "        problem = _value_problem(value)\n",
          "        problem = None\n")],
        [
            F + "test_hostile_round.py::test_a_headers_file_on_the_device_names_itself_and_fails_the_identity_phase",
            F + "test_hostile_round.py::test_a_module_user_is_told_the_options_name",
        ],
    ),
    "headers-checked-on-the-device-only": (
        "headers and headers_src are checked on the controller, naming the variable the user set",
        [("plugins/plugin_utils/api_action.py",
          "        headers = controller.check_headers(headers_for_file(module_args.pop(\"headers\", None)),\n"
          "                                           names.setting(\"headers\"))\n",
          "        headers = headers_for_file(module_args.pop(\"headers\", None))\n")],
        [F + "test_hostile_round.py::test_a_non_ascii_token_is_refused_before_any_request_naming_the_role_variable"],
    ),
    "raw-controls-in-reports": (
        "control characters of report cells are written visibly (table, CSV, .prom, AWX artifact)",
        [("plugins/module_utils/visible.py", 'return _INVISIBLE.sub(_escape, "" if text is None else str(text))',
          'return "" if text is None else str(text)')],
        [
            F + "test_hostile_round.py::test_the_text_table_has_one_line_per_host",
            F + "test_hostile_round.py::test_the_printed_table_has_one_line_per_host",
            F + "test_hostile_round.py::test_the_prom_labels_carry_visible_names",
            F + "test_hostile_round.py::test_the_awx_artifact_carries_no_control_character",
        ],
    ),
    "csv-tab-cr-formulas": (
        "a CSV cell starting with TAB or CR is neutralised like = + - @ (OWASP)",
        [("plugins/module_utils/report.py", '_FORMULA_START = ("=", "+", "-", "@", "\\t", "\\r")',
          '_FORMULA_START = ("=", "+", "-", "@")')],
        [F + "test_hostile_round.py::test_the_csv_has_one_neutralised_row_per_host"],
    ),
    "ledger-strips-host-names": (
        "the ledger records a host under its inventory name, whatever its name",
        [("plugins/module_utils/ledger.py", 'host = "" if host is None else str(host)  # the inventory',
          'host = _text(host)  # the inventory')],
        [F + "test_hostile_round.py::test_the_json_report_and_the_ledger_keep_each_name_exactly"],
    ),
    "report-dir-follows-links": (
        "the report directory's files, locks and folders are opened through its fd with O_NOFOLLOW",
        [
            ("plugins/module_utils/statedir.py",
             "_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _O_CLOEXEC",
             "_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | _O_CLOEXEC"),
            ("plugins/module_utils/statedir.py",
             "return os.open(name, flags | os.O_NOFOLLOW | _O_CLOEXEC, mode, dir_fd=self.fd)",
             "return os.open(name, flags | _O_CLOEXEC, mode, dir_fd=self.fd)"),
        ],
        [F + "test_hostile_round.py::test_a_symlink_in_the_report_directory_is_refused_never_followed"],
    ),
    "backups-kept-forever": (
        "after a swap with backup, backups beyond backup_keep pairs are removed",
        [("plugins/module_utils/identity/transaction.py",
          "self.pruned = prune_backups(self.idir, self.s.backup_keep)", "self.pruned = []")],
        [F + "test_hostile_round.py::test_backups_beyond_backup_keep_pairs_are_removed_through_the_directory"],
    ),
    "prune-any-backup-name": (
        "only regular files with the backup pattern are pruned (a link or an operator's file stays)",
        [("plugins/module_utils/identity/transaction.py",
          "        if st is not None and stat.S_ISREG(st.st_mode):\n            pairs",
          "        if st is not None:\n            pairs")],
        [F + "test_hostile_round.py::test_backups_beyond_backup_keep_pairs_are_removed_through_the_directory"],
    ),
    "restore-loops-on-forgotten-id": (
        "a restore whose ledger ID the registry forgot converges under a new ID in the same run",
        [("plugins/module_utils/identity/transaction.py",
          "                if exc.status == 404 and exc.unknown_id:\n",
          "                if False:\n")],
        [F + "test_hostile_round.py::test_a_lost_device_whose_ledger_id_the_registry_forgot_converges_in_one_run"],
    ),
    "any-404-forgets-the-id": (
        "only the registry's own unknown-ID answer to an upload says the ID is gone",
        [(API_CLIENT, "unknown_id=is_unknown_id_answer(status, body, agent_id))", "unknown_id=True)")],
        [F + "test_hostile_round.py::test_only_the_registrys_own_answer_lets_a_restore_take_a_new_id"],
    ),
    "ledger-forgets-the-replacement": (
        "the ledger records the new ID as replacing the forgotten one (no orphan)",
        [("plugins/module_utils/ledger.py", "        if replaces and replaces != agent_id:\n",
          "        if False:\n")],
        [F + "test_hostile_round.py::test_a_lost_device_whose_ledger_id_the_registry_forgot_converges_in_one_run"],
    ),
    "permissive-default-id-pattern": (
        "the default id_pattern is the service's ID format: a lower-case ID is refused before a key is made",
        [(API, 'DEFAULT_ID_PATTERN = r"^[0-9A-F]{8}$"', 'DEFAULT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"')],
        [F + "test_hostile_round.py::test_an_id_answer_in_another_form_is_refused_before_any_key_or_upload"],
    ),
    "number-id-told-to-quote": (
        "an ID the API answers as a JSON number is refused as the API's fault, not the inventory's",
        [(API_CLIENT, "        if not isinstance(data[\"id\"], str):\n            # An ID is never converted",
          "        if False:\n            # An ID is never converted")],
        [F + "test_hostile_round.py::test_an_id_answer_in_another_form_is_refused_before_any_key_or_upload"],
    ),
    "empty-dir-after-refusal": (
        "a creation refused before anything was written leaves no directory this run made",
        [("plugins/module_utils/runner.py",
          "    if idir is None or idir.fd is None or not (idir.created or by_keygen_pass):\n        return",
          "    if True:\n        return")],
        [F + "test_hostile_round.py::test_a_creation_refused_for_the_clock_leaves_no_directory"],
    ),
    "rename-keeps-both-names": (
        "an ID recorded for a host moves from the host that held it, with a warning",
        [("plugins/module_utils/ledger.py",
          'for other in _take_from_others(hosts, held, host, after["agent_id"], now):', "for other in []:")],
        [F + "test_hostile_round.py::test_a_host_renamed_in_the_inventory_moves_its_id_with_a_warning"],
    ),
    "refused-without-rotation-hint": (
        "a refusal of a pair this run did not register says that a rotation heals it",
        [("plugins/module_utils/provision.py",
          'if kind == "refused" and status.get("action") not in NEW_PAIR_ACTIONS:', "if False:")],
        [F + "test_hostile_round.py::test_a_replaced_certificate_is_refused_naming_the_rotation_that_heals_it"],
    ),
}

# The identity ledger's pending records (plugins/module_utils/ledger.py): each host's record is a
# line appended, applied by every reader, written in once and never applied twice.
_LEDGER_CASES = "tests/unit/test_ledger_pending.py::"
MUTATIONS["ledger-append-rewrites"] = (
    "a host's own record appends a line and never reads or rewrites the fleet-sized ledger",
    [("plugins/module_utils/ledger.py", '        line = json.dumps({"time": self.clock(),',
      '        self.record(host, row)\n        line = json.dumps({"time": self.clock(),')],
    [_LEDGER_CASES + "test_an_append_never_parses_the_ledger"],
)
MUTATIONS["ledger-role-rewrites"] = (
    "in the role, each host's action appends its record; the role's last task writes the batch in",
    [("plugins/plugin_utils/api_action.py", "                the_ledger.append_status(host, row)",
      "                the_ledger.record_status(host, row)")],
    ["tests/playbook/test_role_ledger.py::test_the_role_alone_writes_its_batch_into_the_ledger_file"],
)
MUTATIONS["ledger-pending-unseen"] = (
    "every reader of the ledger applies the pending records",
    [("plugins/module_utils/ledger.py",
      "    _apply_rows(data, _not_folded(data, pending), LAST_SEEN_RESOLUTION if resolution is None else resolution,",
      "    _apply_rows(data, [], LAST_SEEN_RESOLUTION if resolution is None else resolution,")],
    [_LEDGER_CASES + "test_an_appended_record_leaves_the_ledger_file_as_it_was_and_every_reader_sees_it"],
)
MUTATIONS["ledger-pending-refolded"] = (
    "pending records already written into the ledger are never applied again",
    [("plugins/module_utils/ledger.py",
      "    return records[data.get(\"folded\", {}).get(pending_id, 0) if pending_id else 0:]",
      "    return records")],
    [_LEDGER_CASES + "test_a_stop_between_the_ledger_write_and_the_removal_applies_nothing_twice"],
)

# The agent check (plugins/module_utils/check.py, wsclient.py, verdicts.py): its protections,
# then each failure class, removed in turn. (name, what, file, old, new, cases)
_CHECK = "plugins/module_utils/"
_CHECK_CASES = "tests/module/test_check_"
MUTATIONS["check-no-deadline"] = (
    "the check has one total deadline (a trickling gate cannot hold it)",
    [
        (_CHECK + "wsclient.py", "remaining = self.deadline - time.monotonic()", "remaining = 10.0"),
        (_CHECK + "check.py", "job.deadline + GRACE)", "job.deadline + 3600)"),
    ],
    [_CHECK_CASES + "tls.py::test_trickling_server_cannot_hold_the_check_past_its_deadline"],
)
_CHECK_MUTATIONS = [
    ("check-no-kill", "a stuck check child is killed at the deadline", "check.py",
     "remaining = kill_at - time.monotonic()", "remaining = 3600.0",
     ["tls.py::test_a_stuck_child_is_killed_at_the_deadline_and_reaped"]),
    ("check-callers-trust", "the check does not inherit the caller's SSL_CERT_FILE/SSL_CERT_DIR", "check.py",
     "        os.environ.pop(name, None)", "        pass",
     ["tls.py::test_system_trust_ignores_the_callers_ssl_cert_file"]),
    ("check-no-setuid", "the check drops to the agent's user before reading its files", "check.py",
     "            os.setuid(uid)", "            pass",
     ["gate.py::test_run_as_drops_privileges_before_reading_the_key"]),
    ("check-any-accept", "a 101 needs the right Sec-WebSocket-Accept", "wsclient.py",
     'if response.header("sec-websocket-accept") != expected:', "if False:",
     ["protocols.py::test_websocket_wrong_accept_key_is_a_protocol_failure"]),
    ("class-refused-upgrade", "refused: 401/403 on the upgrade", "wsclient.py",
     '    if status in (401, 403):\n        return CheckError("refused", (',
     '    if False:\n        return CheckError("refused", (',
     ["protocols.py::test_websocket_upgrade_refused", "gate.py::test_rotated_out_certificate_is_refused"]),
    ("class-refused-44", "refused: 44 on Socket.IO CONNECT", "wsclient.py",
     'elif text.startswith("44"):', "elif False:",
     ["protocols.py::test_socketio_connect_error_is_refused_with_the_servers_message",
      "gate.py::test_rotated_out_certificate_is_refused"]),
    ("class-refused-alert", "refused: a certificate TLS alert", "verdicts.py",
     'if "ALERT" in reason.upper() and', "if False and",
     ["tls.py::test_certificate_alert_is_a_refusal"]),
    ("class-refused-nginx", "refused: nginx 400 The SSL certificate error", "wsclient.py",
     "return response.status == 400 and NGINX_CERT_ERROR in response.body", "return False",
     ["protocols.py::test_nginx_certificate_error_page_is_refused",
      "gate.py::test_front_end_refuses_a_certificate_not_for_client_auth"]),
    ("class-untrusted", "untrusted_server (with the advice)", "verdicts.py",
     'if job.trust == "system":\n        return CheckError("untrusted_server", (',
     'if job.trust == "system":\n        return CheckError("tls_protocol", (',
     ["tls.py::test_system_trust_does_not_trust_a_private_ca_and_says_how_to_fix_it"]),
    ("class-hostname", "hostname_mismatch", "verdicts.py", "if code in _VERIFY_HOSTNAME:", "if False:",
     ["tls.py::test_hostname_mismatch"]),
    ("class-server-expired", "server_cert_expired", "verdicts.py",
     "if code in (_VERIFY_EXPIRED, _VERIFY_NOT_YET_VALID):", "if False:",
     ["tls.py::test_expired_server_certificate"]),
    ("class-clock", "clock (the server's Date against the device clock)", "verdicts.py",
     "if server_now is None or abs(server_now - now) <= CLOCK_SKEW_LIMIT:", "if True:",
     ["tls.py::test_device_clock_off_by_two_years_is_told_as_such"]),
    ("class-client-expired", "client_cert_expired", "verdicts.py",
     'if cert["not_before"] <= now < cert["not_after"]:', "if True:",
     ["tls.py::test_expired_client_certificate"]),
    ("class-credentials", "client_credentials", "check.py",
     "except (ssl.SSLError, OSError) as exc:\n        mismatch", "except ZeroDivisionError as exc:\n        mismatch",
     ["tls.py::test_key_not_matching_the_certificate"]),
    ("class-tls-protocol", "tls_protocol", "verdicts.py",
     'return CheckError("tls_protocol", "TLS negotiation', 'return CheckError("connection", "TLS negotiation',
     ["tls.py::test_plain_http_port_is_a_tls_protocol_failure"]),
    ("class-connection", "connection", "check.py",
     "except (OSError, wsclient.ConnectionClosed) as exc:", "except wsclient.ConnectionClosed as exc:",
     ["tls.py::test_connection_refused", "tls.py::test_unresolvable_name"]),
    ("class-timeout", "timeout", "verdicts.py",
     'if isinstance(exc, socket.timeout):\n        return CheckError("timeout"',
     'if False:\n        return CheckError("timeout"',
     ["tls.py::test_silent_server_times_out_in_the_handshake"]),
    ("class-http-status", "http_status: a 401/403 on a plain GET is no certificate verdict", "wsclient.py",
     'raise CheckError("http_status", (\n            "HTTP %d from',
     'raise CheckError("refused", (\n            "HTTP %d from',
     ["protocols.py::test_https_403_is_an_http_status_never_a_refusal",
      "gate.py::test_get_answered_403_for_a_missing_api_key_is_not_a_certificate_refusal"]),
    ("class-protocol", "protocol: a 404/200 to the upgrade is no endpoint there", "wsclient.py",
     'return CheckError("protocol", (\n        "%s answered HTTP %d %s to the %s upgrade',
     'return CheckError("refused", (\n        "%s answered HTTP %d %s to the %s upgrade',
     ["protocols.py::test_websocket_upgrade_to_a_non_websocket_endpoint_is_a_protocol_failure"]),
    ("class-config", "config: an SSL_CERT_FILE the agent cannot use", "check.py",
     '    """OpenSSL silently ignores', '    return\n    """OpenSSL silently ignores',
     ["tls.py::test_ca_file_without_a_certificate_is_a_config_failure",
      "gate.py::test_ca_file_the_agent_cannot_read_is_a_config_failure"]),
]
for _name, _what, _file, _old, _new, _cases in _CHECK_MUTATIONS:
    MUTATIONS[_name] = (_what, [(_CHECK + _file, _old, _new)], [_CHECK_CASES + case for case in _cases])

# The role's protections, proven through ansible-playbook runs of the real role (the mutant's
# collection holds the mutated modules, module_utils and action plugins, and the real roles).
_R = "tests/playbook/test_role_"
_ROLE_MUTATIONS = [
    ("swap-unproven-config", "a staged configuration the check refused is never swapped in",
     "plugins/module_utils/provision.py", "if failure is not None:\n                staging.abort()",
     "if False:\n                staging.abort()",
     ["rollout.py::test_a_wrong_server_ca_is_refused_before_it_touches_any_agent"]),
    ("check-live-ca", "the staged configuration is checked with the staged CA, not the live one",
     "plugins/module_utils/provision.py", "failure = _check(job, status, ca_file=staging.staged_server_ca())",
     "failure = _check(job, status, ca_file=job.agent.server_ca)",
     ["rollout.py::test_a_wrong_server_ca_is_refused_before_it_touches_any_agent"]),
    ("no-restart-on-rotation", "the agent is restarted right after its own rotation",
     "plugins/module_utils/provision.py",
     "if (new_pair or staging.restart_needed or job.restart_owed) and not job.check_mode:",
     "if (staging.restart_needed or job.restart_owed) and not job.check_mode:",
     ["rollout.py::test_a_rotation_restarts_each_agent_once_and_reports_its_blackout"]),
    ("forget-failed-restart", "a failed restart is owed to the next run",
     "plugins/module_utils/provision.py", "        _owe_restart(job, exc.msg)\n", "",
     ["systemd.py::test_a_failed_restart_is_tried_again_by_the_next_run"]),
    ("audit-skips-due", "the audit checks a due or broken identity's live files",
     "plugins/module_utils/provision.py", 'would_change = job.check_mode and status.get("audit") == "missing"',
     'would_change = job.check_mode and status.get("audit") != "valid"',
     ["agent_true.py::test_the_audit_checks_a_due_identity_too"]),
    ("ignore-ledger-conflict", "two hosts with one agent ID are refused before any change",
     "plugins/module_utils/controller.py", 'if answer.get("conflict"):', "if False:",
     ["ledger.py::test_two_hosts_with_one_agent_id_are_both_refused_before_any_request"]),
    ("no-restore", "a lost identity gets its ledger ID back",
     "plugins/module_utils/identity/plan.py", 'if not s.ledger_id or s.lost_identity == "new":', "if True:",
     ["ledger.py::test_a_lost_identity_gets_its_id_back_with_a_warning"]),
    ("headers-world-readable", "the headers file is 0600 from its first byte",
     "plugins/module_utils/controller.py", "    return ('umask 077 && mkdir -p %s", "    return ('mkdir -p %s",
     ["headers.py::test_the_headers_file_is_0600_from_its_first_byte"]),
    ("stale-headers-kept", "a headers file an interrupted run left is removed by the next run",
     "plugins/module_utils/controller.py", '    return ("find %s -maxdepth 2',
     '    return "true" or ("find %s -maxdepth 2',
     ["headers.py::test_a_headers_file_an_interrupted_run_left_is_removed"]),
]
for _name, _what, _file, _old, _new, _cases in _ROLE_MUTATIONS:
    MUTATIONS[_name] = (_what, [(_file, _old, _new)], [_R + case for case in _cases])
# Two layers keep a refused run from leaving a directory: the decision before creating it, and
# the removal of a directory this run created when nothing was written (empty-dir-after-refusal
# removes the second alone, which a refusal the decision cannot foresee, the clock, catches).
MUTATIONS["dir-before-decision"] = (
    "a refused run leaves no directory behind",
    [("plugins/module_utils/identity/engine.py",
      "        a = assess(idir, self.now)\n",
      "        if idir is None and not self.check_mode:\n            idir = self.idir = open_locked(s, create=True)\n"
      "        a = assess(idir, self.now)\n"),
     ("plugins/module_utils/runner.py",
      "    if idir is None or idir.fd is None or not (idir.created or by_keygen_pass):\n        return",
      "    if True:\n        return")],
    [_R + "ledger.py::test_lost_identity_fail_stops_before_any_change"],
)

# The key made in the background (issue 22, identity/prekey.py and keygen_process.py), proven by
# tests/faults/test_background_keygen.py (and the role's condition by the task count).
_BG = F + "test_background_keygen.py::"
_PREKEY = "plugins/module_utils/identity/prekey.py"
_KEYGEN_PROCESS = "plugins/module_utils/identity/keygen_process.py"
_PREKEY_MUTATIONS = [
    ("prekey-not-taken", "the identity takes the key made in the background (no second keygen)",
     "plugins/module_utils/identity/transaction.py", "prekey.new_key(idir, s, self.warn, self.keygen)",
     "s.key_profile.generate(s.key_size)",
     ["test_the_identity_takes_the_key_made_in_the_background"]),
    ("prekey-no-wait", "a key still being made is waited for, never made a second time",
     _PREKEY, "        state = _wait(idir, s, state, clock, sleep)\n", "        pass\n",
     ["test_the_identity_waits_for_a_key_still_being_made"]),
    ("prekey-unbounded-wait", "the wait for a key being made ends at keygen_timeout",
     _PREKEY, "if clock() >= deadline:", "if False:",
     ["test_a_device_slower_than_the_bound_fails_clearly_and_the_next_run_converges"]),
    ("prekey-dead-process-trusted", "what a dead background process left is removed, not waited for",
     _PREKEY, "    if record is not None and record.alive():\n", "    if record is not None:\n",
     ["test_an_abandoned_background_keygen_is_removed_and_the_run_converges"]),
    ("prekey-pid-only", "a live process the record does not prove ours (start time) is never waited for",
     _PREKEY, "and facts[1] == self.start", "",
     ["test_an_abandoned_background_keygen_is_removed_and_the_run_converges"]),
    ("prekey-lean-off", "where Ansible pipelines, the pass runs without AnsiballZ (no ansible.module_utils.basic)",
     "plugins/action/mtls_prekey.py", "if not lean_run.usable(self, wrap_async):", "if True:",
     ["test_where_ansible_pipelines_the_pass_runs_without_ansiballz"]),
    ("prekey-lean-paths-kept", "the lean pass expands its path options on the device, as AnsibleModule does",
     "plugins/module_utils/lean.py", "params[name] = os.path.expanduser(os.path.expandvars(params[name]))",
     "params[name] = params[name]", ["test_where_ansible_pipelines_the_pass_runs_without_ansiballz"]),
    ("prekey-key-during-run", "the background key is made only once the run that started it has ended",
     _KEYGEN_PROCESS, "            _after_the_run(run_read)\n", "            os.close(run_read)\n",
     ["test_the_background_key_is_made_once_the_run_that_started_it_has_ended"]),
    ("prekey-record-any-uid", "a record naming another user's live process is never waited for nor signalled",
     _PREKEY, "        elif record.uid != uid:  # the owner's", "        elif False:  # the owner's",
     ["test_a_record_naming_another_users_live_process_is_never_signalled_nor_waited_for"]),
    ("prekey-any-mode", "a staged key with another mode than 0600 is removed, never used",
     _PREKEY, "if mode is not None and stat.S_IMODE(st.st_mode) != mode:", "if False:",
     ["test_a_foreign_file_in_place_of_the_staged_key_is_removed_never_used"]),
    ("prekey-write-follows-link", "the background writes its key O_EXCL|O_NOFOLLOW (a link is never followed)",
     _KEYGEN_PROCESS, "os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _O_CLOEXEC",
     "os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC",
     ["test_a_symlink_put_where_the_key_is_being_written_is_never_followed"]),
    ("prekey-check-mode-starts", "check mode starts no background keygen and writes nothing",
     _PREKEY, '    if check_mode:\n        return _result("would start"',
     '    if False:\n        return _result("would start"',
     ["test_check_mode_starts_nothing"]),
    ("prekey-no-preflight", "the first pass checks the identity's options (the one preflight) before it creates "
     "anything", "plugins/module_utils/preflight.py", "    agent = options.agent_config(p, where.path, templates)",
     "    agent = None",
     ["test_an_option_the_identity_refuses_starts_nothing_and_creates_nothing"]),
    ("prekey-survives-decommission", "decommissioning stops a background keygen before it wipes",
     "plugins/module_utils/decommission.py", "        prekey.stop_running(idir, uid)", "        pass",
     ["test_decommissioning_stops_a_background_keygen_before_it_wipes"]),
    ("prekey-unneeded-kept", "a key made for a run that needs none is stopped and removed",
     "plugins/module_utils/identity/transaction.py", "        if not plan.new_key:\n            prekey.discard",
     "        if False:\n            prekey.discard",
     ["test_a_key_made_for_a_run_that_needs_none_is_stopped_and_removed"]),
    ("prekey-refused-dir-kept", "a creation refused after the pass made the directory leaves neither it nor "
     "the keygen", "plugins/module_utils/runner.py",
     "        by_keygen_pass = (idir is not None and not check_mode and _holds_only_ours(idir)\n",
     "        by_keygen_pass = False and (idir is not None and not check_mode and _holds_only_ours(idir)\n",
     ["test_a_creation_refused_after_the_pass_leaves_no_directory_and_no_keygen"]),
    ("prekey-any-dir-removed", "a directory there before the first pass is never removed; its key is kept",
     _PREKEY, "    made = idir.created or (state.record", "    made = True or (state.record",
     ["test_a_directory_there_before_the_pass_keeps_its_key_for_the_next_run"]),
    ("prekey-made-dir-forgotten", "a pass restarting an abandoned keygen keeps the record that a pass made "
     "the directory", _PREKEY, "    made = idir.created or (state.record is not None and state.record.made_directory)",
     "    made = idir.created", ["test_a_creation_refused_after_the_pass_leaves_no_directory_and_no_keygen"]),
    ("prekey-ended-between-looks", "a key staged by a process that ended while the identity run looked is "
     "taken, not abandoned", _PREKEY, "    if state.kind == ABANDONED and state.record is not None:\n"
     "        state = _inspect(idir, uid)\n", "", ["test_a_key_staged_while_the_identity_run_looked_is_taken"]),
    ("prekey-failed-start-dir-kept", "a start that fails leaves no directory a pass made for it",
     _PREKEY, "        if made:  # made for this key only", "        if False:  # made for this key only",
     ["test_a_start_that_fails_leaves_no_directory_the_pass_made"]),
    ("lean-pass-not-handed-over", "the lean pass answers before the device decides, and decides away from "
     "the session", "plugins/plugin_utils/lean_run.py", "    answer = None if check_mode or module not in HANDED_OVER",
     "    answer = None if True or module not in HANDED_OVER",
     ["test_the_lean_pass_answers_before_the_device_decides"]),
    ("prekey-pass-notes-lost", "what a lean pass removed, nobody hearing it, the identity run tells",
     _PREKEY, "    _tell_notes(state, warn)\n    began = clock()\n", "    began = clock()\n",
     ["test_what_a_lean_pass_removed_the_identity_run_tells"]),
    ("prekey-making-time-of-the-wait", "the report's keygen_ms is the background's making, not the wait",
     _PREKEY, "keygen_ms=_ms(making)", "keygen_ms=_ms(waited)",
     ["test_the_identity_waits_for_a_key_still_being_made"]),
    ("keygen-columns-dropped", "the status row says how the new key was made",
     "plugins/module_utils/provision.py", '    status.update(result.pop("keygen_made", None) or {})\n',
     '    result.pop("keygen_made", None)\n',
     ["test_a_key_made_inline_is_reported_so"]),
]
for _name, _what, _file, _old, _new, _cases in _PREKEY_MUTATIONS:
    MUTATIONS[_name] = (_what, [(_file, _old, _new)], [_BG + case for case in _cases])
MUTATIONS["lean-built-per-worker"] = (
    "a batch of forks asking at once builds the lean run's sources once, the others wait for it",
    [("plugins/plugin_utils/lean_run.py", "        fcntl.flock(lock, fcntl.LOCK_EX)\n", "")],
    ["tests/unit/test_lean_run.py::test_a_batch_of_workers_builds_the_sources_once"],
)
_LEAN_ID = "tests/faults/test_lean_identity.py::"
MUTATIONS["identity-lean-off"] = (
    "where Ansible pipelines, the identity runs without AnsiballZ (no ansible.module_utils.basic)",
    [("plugins/action/mtls_identity.py", "if lean_run.usable(self, wrap_async) and not lean_run.carries_secret(",
      "if False and not lean_run.carries_secret(")],
    [_LEAN_ID + "test_a_lean_run_answers_as_the_module"],
)
MUTATIONS["lean-unmasked"] = (
    "a lean run masks the API headers' values it read in all it returns, as AnsibleModule does",
    [("plugins/module_utils/lean.py", "        result = mask(result, module.no_log_values)\n", "")],
    [_LEAN_ID + "test_a_run_with_the_api_headers_is_lean_and_masks_them_as_ansiblemodule_does",
     "tests/unit/test_lean_module.py::test_emit_masks_the_result_and_the_warnings"],
)
MUTATIONS["lean-mask-substrings-kept"] = (
    "a secret inside a longer string is replaced by ******** there, as remove_values does",
    [("plugins/module_utils/lean.py", '            value = value.replace(secret, "*" * 8)\n', "            pass\n")],
    ["tests/unit/test_lean_module.py::test_the_mask_is_ansiblemodules"],
)
MUTATIONS["lean-command-unexpanded"] = (
    "a lean run's commands get their arguments' variables expanded, as AnsibleModule.run_command does",
    [("plugins/module_utils/lean.py",
      "        argv = [os.path.expanduser(os.path.expandvars(arg)) for arg in argv if arg is not None]\n", "")],
    [_LEAN_ID + "test_the_restart_command_runs_as_ansiblemodule_runs_it"],
)
MUTATIONS["lean-command-stdin-inherited"] = (
    "a lean run's commands read /dev/null, not the module's standard input",
    [("plugins/module_utils/lean.py", "stdin=subprocess.DEVNULL, ", "")],
    [_LEAN_ID + "test_the_restart_command_runs_as_ansiblemodule_runs_it"],
)
MUTATIONS["prekey-lean-rebuilt"] = (
    "the lean pass's sources are built once per run (shared by its workers), not once per host",
    [("plugins/plugin_utils/lean_run.py", "json.loads(_cached(path, sorted(set(ENTRIES.values()))))",
      "json.loads(_build(sorted(set(ENTRIES.values()))))")],
    ["tests/unit/test_lean_run.py::test_the_sources_are_built_once_per_run"],
)
# The lean runs' compiled code kept on the device (module_utils/lean_cache.py).
_CACHE = "plugins/module_utils/lean_cache.py"
_CACHE_TESTS = "tests/unit/test_lean_cache.py::"
MUTATIONS["lean-cache-unused"] = (
    "a lean run takes the code the device kept and reads no source",
    [("plugins/plugin_utils/lean_run.py", "bundle = Bundle(cache.load(KEY))", "bundle = Bundle({})")],
    [_LEAN_ID + "test_a_later_run_takes_the_code_the_device_kept",
     _CACHE_TESTS + "test_the_script_keeps_its_code_outside_check_mode_and_then_reads_no_source"],
)
MUTATIONS["lean-cache-in-check-mode"] = (
    "a lean run in check mode writes nothing on the device, not even its compiled code",
    [("plugins/plugin_utils/lean_run.py", "if bundle.fresh and not %(check_mode)r:", "if bundle.fresh:")],
    [_CACHE_TESTS + "test_the_script_keeps_its_code_outside_check_mode_and_then_reads_no_source"],
)
MUTATIONS["lean-cache-foreign-trusted"] = (
    "kept code is run only from a file only the user could write (0600, the user's, one link)",
    [(_CACHE, "if not _own_file(st) or st.st_size > MAX_SIZE:", "if st.st_size > MAX_SIZE:")],
    [_CACHE_TESTS + "test_what_is_not_the_users_own_is_never_read"],
)
MUTATIONS["lean-cache-loose-directory"] = (
    "kept code is read only from a 0700 directory of the user's own",
    [(_CACHE, "if st.st_uid != uid or st.st_mode & loose:", "if st.st_uid != uid:")],
    [_CACHE_TESTS + "test_what_is_not_the_users_own_is_never_read"],
)
MUTATIONS["lean-cache-unchecked"] = (
    "a torn or altered file of kept code is not used",
    [(_CACHE, "        if int(data[len(MAGIC):head - 1], 16) != zlib.crc32(payload):\n            return {}\n", "")],
    [_CACHE_TESTS + "test_a_torn_or_altered_file_is_not_used"],
)
MUTATIONS["prekey-every-host"] = (
    "an unchanged run starts nothing: the background pass is skipped on the controller where no key is due",
    [("roles/mtls_identity/tasks/main.yml", "    - (mtls_rotate | default('auto')) == 'always' or",
      "    - true or (mtls_rotate | default('auto')) == 'always' or")],
    ["tests/playbook/test_role_task_count.py::test_tasks_per_host"],
)
# The controller's token reaches a device only for a run that uses it (tests/playbook/test_token_on_demand.py).
_TOKEN = "tests/playbook/test_token_on_demand.py::"
MUTATIONS["token-always-sent"] = (
    "a re-run the identity ledger expects to need no request keeps the controller's token off the device",
    [("plugins/action/mtls_identity.py", "        if self._task.check_mode:\n            return True\n        answer",
      "        return False\n        answer")],
    [_TOKEN + "test_an_unchanged_run_keeps_the_token_on_the_controller"],
)
MUTATIONS["token-withheld-ignored"] = (
    "a run without the token that needs the API changes nothing and asks for it",
    [("plugins/module_utils/identity/engine.py",
      "        if self.headers_withheld:\n            raise HeadersNeeded(why)", "        return"),
     ("plugins/module_utils/runner.py",
      '    if p["headers_withheld"]:\n        raise HeadersNeeded(why)', "    return")],
    [_TOKEN + "test_a_device_that_needs_the_api_gets_the_token_on_a_second_run"],
)
MUTATIONS["token-engine-check-off"] = (
    "without the headers, a run that needs the API stops at its decision: before a directory, a key or a request",
    [("plugins/module_utils/identity/engine.py",
      "        if self.headers_withheld:\n            raise HeadersNeeded(why)", "        return")],
    ["tests/module/test_headers_withheld.py::test_a_creation_stops_before_the_directory_exists"],
)
MUTATIONS["token-withheld-on-rotate-always"] = (
    "mtls_rotate=always sends the token at once (no run without it first)",
    [("plugins/action/mtls_identity.py", 'return module_args.get("rotate") != "always" and not device_asks',
      "return not device_asks")],
    [_TOKEN + "test_a_forced_rotation_sends_the_token_at_once"],
)
# A batch-wide skip (run_once templated per batch) only where no host of the batch needs the task.
_COUNT = "tests/playbook/test_role_task_count.py::"
MUTATIONS.update({
    "prekey-skip-whole-batch": (
        "the keygen pass is skipped for the whole batch only when the ledger expects no new key in it",
        [("roles/mtls_identity/tasks/main.yml", "and not (mtls_ledger_keygen_hosts | default([]))",
          "and true")],
        [_COUNT + "test_tasks_per_host"],
    ),
    "prekey-skip-ignores-host-rotate": (
        "a host set to rotate always by its own variables keeps the batch's keygen pass",
        [("plugins/action/mtls_ledger.py", 'if said["new_key"] or rotates_always(host)', 'if said["new_key"]')],
        [_COUNT + "test_a_host_that_rotates_by_its_own_variable_still_gets_the_pass"],
    ),
    "final-fail-skipped-for-batch": (
        "the playbook's final fail is skipped for the batch only when the report found no failed host",
        [("playbooks/provision.yml", "__mtls_report.failing_hosts is defined and not __mtls_report.failing_hosts",
          "true")],
        ["tests/playbook/test_role_report_truth.py::test_each_failure_is_printed_once_per_host"],
    ),
})
MUTATIONS["prekey-own-autogroup-priority"] = (
    "the background keygen's session (an autogroup of its own) is scheduled last, not as any session",
    [("plugins/module_utils/identity/keygen_process.py", 'autogroup.write("19")', "pass")],
    [F + "test_keygen_priority.py::test_the_background_keygen_is_last_in_its_autogroup_and_as_a_group"],
)
MUTATIONS["keygen-checks-new-key"] = (
    "a key OpenSSL just made is not checked again (a sixth of its CPU with Debian 12's library)",
    [("plugins/module_utils/keys.py", "    with _rsa_check_skipped(backend):\n        return rsa.generate_private_key",
      "    with contextlib.nullcontext():\n        return rsa.generate_private_key")],
    ["tests/module/test_device_keygen.py::test_a_new_key_is_not_checked_again_but_a_key_read_back_is"],
)
# An unchanged run builds no transaction, except to tidy what a keygen pass left (issue 21).
MUTATIONS["unchanged-ignores-keygen-files"] = (
    "an unchanged identity still stops and removes a key the keygen pass is making for nothing",
    [("plugins/module_utils/identity/engine.py",
      "return any(idir.lstat(name) is not None for name in KEYGEN_FILES)", "return False")],
    [F + "test_background_keygen.py::test_a_key_made_for_a_run_that_needs_none_is_stopped_and_removed"],
)
MUTATIONS["unchanged-builds-transaction"] = (
    "an unchanged run loads no writing code",
    [("plugins/module_utils/identity/engine.py",
      "if writes and tx is None and _writes_anything(idir, plan):", "if writes and tx is None:")],
    ["tests/module/test_unchanged_run_imports.py::test_an_unchanged_run_imports_no_writing_code"],
)
MUTATIONS["preflight-builds-client"] = (
    "the preflight checks the client's options without making the client (an unchanged run loads none)",
    [("plugins/module_utils/preflight.py",
      'options.check_client(p, p["ca_path"] if p["ca_content"] is None else None, api_flavor)',
      'options.client(p, {}, p["ca_path"] if p["ca_content"] is None else None, api_flavor).close()')],
    ["tests/module/test_unchanged_run_imports.py::test_an_unchanged_run_imports_no_writing_code"],
)
_CERTINFO = "tests/unit/test_certinfo.py::"
MUTATIONS["certinfo-through-library"] = (
    "an unchanged run reads its certificate without loading cryptography",
    [("plugins/module_utils/certinfo.py", "        return _read_plain(data, now)\n", "        raise ValueError\n")],
    ["tests/module/test_unchanged_run_imports.py::test_an_unchanged_run_imports_no_writing_code"],
)
MUTATIONS["certinfo-trusts-signature"] = (
    "the standard-library reader calls a certificate self-signed only when its signature verifies",
    [("plugins/module_utils/certinfo.py", "    if pow(value, e, n).to_bytes(size, \"big\") != encoded:",
      "    if False:")],
    [_CERTINFO + "test_a_broken_self_signature_is_left_to_the_library"],
)
MUTATIONS["certinfo-any-oid"] = (
    "the standard-library reader refuses what cryptography cannot parse (an OID's encoding)",
    [("plugins/module_utils/certinfo.py", "    if element[0] != der.OBJECT_IDENTIFIER or not raw or raw[-1] & 0x80",
      "    if element[0] != der.OBJECT_IDENTIFIER or not raw")],
    [_CERTINFO + "test_corrupted_certificates_read_plainly_read_the_same"],
)
# The cloud's confirmation of the running agent and the takeover refusal (issues 20, 18).
_CONFIRM = "tests/module/test_confirm.py::"
MUTATIONS.update({
    "confirm-no-uptime": (
        "an active agent older than the swap is not confirmed (uptime compared with the time since it)",
        [("plugins/module_utils/confirm.py", "    if hb.uptime > since_s:\n", "    if False:\n")],
        [_CONFIRM + "test_an_agent_not_restarted_fails_with_the_clouds_view_and_the_next_run_heals_it"],
    ),
    "confirm-404-ok": (
        "the heartbeat route's 404 (never seen) is no confirmation",
        [("plugins/module_utils/confirm.py", '        return Verdict("unseen", hb,',
          '        return Verdict("confirmed", hb,')],
        [_CONFIRM + "test_an_agent_that_never_connects_is_404_never_seen"],
    ),
    "no-takeover-check": (
        "a pre-assigned ID a device holds is refused before any key or upload",
        [("plugins/module_utils/identity/transaction.py", "        if not plan.claims:\n            return",
          "        if True:\n            return")],
        [F + "test_takeover.py::test_an_id_whose_agent_is_active_is_refused_before_any_key_or_upload"],
    ),
    "upload-lapsed-reservation": (
        "a reservation lapsed before the upload is replaced, never uploaded against",
        [("plugins/module_utils/identity/transaction.py",
          "if reservation is None or not reservation.lapsed():", "if True:")],
        [F + "test_network.py::test_a_reservation_lapsed_before_the_upload_is_replaced_once"],
    ),
    "reserve-before-key": (
        "the key is made before an ID is reserved (an interrupted keygen reserves none)",
        [("plugins/module_utils/identity/transaction.py",
          "return self._new_identity(a, plan, plan.agent_id, creating=True)",
          "return self._new_identity(a, plan, plan.agent_id or self.client.reserve().agent_id, creating=True)")],
        [F + "test_crash.py::test_kill_then_rerun_converges[staged-key-create-SIGTERM]"],
    ),
    "confirm-in-check-mode": (
        "check mode asks the cloud nothing",
        [("plugins/module_utils/provision.py", "    if job.check_mode and not (c.audit and c.by == \"controller\"):\n"
          "        return False", "    if False:\n        return False"),
         ("plugins/plugin_utils/cloud.py", "if not headers or (check_mode and not audit):", "if not headers:")],
        [_CONFIRM + "test_check_mode_asks_nothing"],
    ),
    "audit-token-on-device": (
        "an audit keeps the token on the controller, which asks the cloud; the device asks nothing",
        [("plugins/action/mtls_identity.py",
          '        return not boolean(module_args.get("audit") or False, strict=False)', "        return True"),
         ("plugins/module_utils/provision.py", 'if job.check_mode and not (c.audit and c.by == "controller"):',
          "if job.check_mode and not c.audit:")],
        [_CONFIRM + "test_an_audit_has_the_controller_ask_and_sends_the_device_no_token"],
    ),
    "no-heal": (
        "an unchanged run restarts an agent the cloud shows on an identity older than the last swap",
        [("plugins/module_utils/confirm.py", 'return ("fail" if audit else "heal"),',
          'return ("fail" if audit else "ok"),')],
        [_CONFIRM + "test_an_agent_not_restarted_fails_with_the_clouds_view_and_the_next_run_heals_it"],
    ),
    "audit-no-silence": (
        "the audit fails agents silent longer than mtls_confirm_stale_minutes, or never seen",
        [("plugins/module_utils/confirm.py", "        silent = silence(hb, stale_minutes, now)\n",
          "        silent = None\n")],
        ["tests/playbook/test_role_confirm.py::test_the_audit_shows_the_clouds_view_and_flags_silent_agents"],
    ),
    "deleted-but-active-hidden": (
        "a deleted ID whose agent is still active is reported",
        [("plugins/modules/mtls_deregister.py", "            still_active(module, clients[0], result)\n",
          "            pass\n")],
        [_CONFIRM + "test_a_deleted_id_whose_agent_is_still_active_is_reported"],
    ),
    "restarted-nothing-ok": (
        "with confirm=none, a restart method that restarted nothing fails a rotation",
        [("plugins/module_utils/provision.py",
          'elif not job.confirm.enabled and r.method != "none" and result.get("action") != "created":',
          "elif False:")],
        ["tests/playbook/test_role_restart.py::"
         "test_device_without_docker_is_provisioned_but_a_rotation_it_cannot_restart_fails"],
    ),
})

# A device's files can name any ID: never uploaded for, nor recorded, without proof.
MUTATIONS.update({
    "rekey-any-cn": (
        "a certificate naming another ID than the ledger's is never re-keyed nor uploaded again",
        [("plugins/module_utils/identity/plan.py",
          "    if plan.kind in (REKEY, REUPLOAD) and s.not_this_hosts(cn):",
          "    if False:")],
        [F + "test_hostile_round.py::test_a_certificate_naming_another_id_than_the_ledgers_is_never_uploaded"],
    ),
    "journal-any-id": (
        "a journal naming another ID than the ledger's for this host is not reused (lost_identity decides)",
        [("plugins/module_utils/identity/plan.py",
          '    if journal_id is not None and s.not_this_hosts(journal_id) and s.lost_identity != "new":',
          "    if False:")],
        [F + "test_hostile_round.py::test_a_planted_interrupted_run_for_another_id_never_takes_it_over"],
    ),
    "recover-any-id": (
        "a staged pair for another ID than the ledger's for this host is removed, never uploaded",
        [("plugins/module_utils/identity/transaction.py",
          '        if s.not_this_hosts(cn) and s.lost_identity != "new":',
          "        if False:")],
        [F + "test_hostile_round.py::test_a_planted_interrupted_run_for_another_id_never_takes_it_over"],
    ),
    "lost-cert-new-id": (
        "a device that lost only its certificate is re-keyed under the ledger's ID, never a new one",
        [("plugins/module_utils/identity/plan.py",
          '        return REKEY, "certificate missing: re-keying %s" % agent_id, [], agent_id',
          '        return REKEY, "certificate missing: re-keying %s" % agent_id, [], None')],
        [F + "test_hostile_round.py::test_a_device_that_lost_only_its_certificate_is_rekeyed_under_the_ledgers_id"],
    ),
    "decommission-all-any-id": (
        "confirm=all deletes on the server only the ID the ledger holds for the host",
        [("plugins/module_utils/decommission.py",
          "        if ledger_id and agent_id is not None and agent_id != ledger_id:", "        if False:")],
        ["tests/playbook/test_playbook_decommission.py::"
         "test_confirm_all_never_deletes_an_id_the_ledger_does_not_hold_for_the_host"],
    ),
    "deregister-without-ledger": (
        "the decommission's action plugin hands the module the ID the ledger holds for the host",
        [("plugins/action/mtls_deregister.py", '            if entry and entry.get("agent_id"):',
          "            if False:")],
        ["tests/playbook/test_playbook_decommission.py::"
         "test_confirm_all_never_deletes_an_id_the_ledger_does_not_hold_for_the_host"],
    ),
    "ledger-adopts-unproven-id": (
        "the ledger records another ID for a host only when the run assigned it or the cloud accepted it",
        [("plugins/module_utils/ledger.py", "        if unproven:  # the entry stays as it is",
          "        if False:  # the entry stays as it is")],
        ["tests/unit/test_ledger.py::test_another_id_nothing_proves_is_not_recorded_and_takes_from_nobody"],
    ),
})

# What a mutant holds: the collection's content (built by the test session like the repository).
CONTENT = ("plugins", "roles", "playbooks", "meta", "galaxy.yml", "README.md", "LICENSE")


def make_mutant(root: pathlib.Path, edits) -> str | None:
    for name in CONTENT:
        source = REPO / name
        if source.is_dir():
            skip = shutil.ignore_patterns("__pycache__", "molecule")
            shutil.copytree(source, root / name, symlinks=True, ignore=skip)
        else:
            shutil.copy2(source, root / name)
    for rel, old, new in edits:
        path = root / rel
        text = path.read_text()
        if old not in text:
            return f"stale: {old[:60]!r} not found in {rel}"
        path.write_text(text.replace(old, new, 1))
    return None


def run(name: str) -> tuple[str, float, str]:
    what, edits, tests = MUTATIONS[name]
    with tempfile.TemporaryDirectory(prefix=f"mutant-{name}-") as tmp:
        root = pathlib.Path(tmp)
        stale = make_mutant(root, edits)
        if stale:
            return "stale", 0.0, stale
        env = dict(os.environ, FLEET_MTLS_SOURCE=str(root))
        started = time.monotonic()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-x",
                "-q",
                "-p",
                "no:cacheprovider",
                "--timeout=120",
                *tests,
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.monotonic() - started
        last = (proc.stdout.strip().splitlines() or [""])[-1]
        if proc.returncode in (4, 5):  # a case id that names no test (moved or renamed) proves nothing
            return "stale", elapsed, (proc.stderr.strip().splitlines() or [last])[-1]
        return ("killed" if proc.returncode != 0 else "SURVIVED"), elapsed, last


def main(argv: list[str]) -> int:
    names = argv or list(MUTATIONS)
    proven_nothing = 0
    for name in names:
        verdict, elapsed, detail = run(name)
        proven_nothing += verdict != "killed"  # a stale mutation proves no more than a survivor
        print(f"{name:20} {verdict:9} {elapsed:6.1f}s  {MUTATIONS[name][0]}  [{detail}]", flush=True)
    return 1 if proven_nothing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
