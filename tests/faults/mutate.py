"""Prove the fault matrix bites: remove one protection at a time and watch its cases fail.

    .venv/bin/python -m tests.faults.mutate [NAME ...]

Each mutation copies library/ and module_utils/ to a scratch directory, removes one
protection there by a textual edit (the repository is never touched), and runs the cases
that guard it against the mutant: through $FLEET_FAULTS_CODE for the module's own process,
ANSIBLE_LIBRARY/ANSIBLE_MODULE_UTILS for runs through Ansible, and a path hook for the
in-process property tests. A mutation is "killed" when at least one of its cases fails.
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

MUTATIONS = {
    "size-cap": (
        "answers above 1 MiB refused without reading them",
        [
            ("module_utils/fleet_mtls/api.py", "if length is not None and int(length) > MAX_BODY:", "if False:"),
            ("module_utils/fleet_mtls/api.py", "if total > MAX_BODY:", "if False:"),
        ],
        [F + "test_network.py::test_oversized_answer_refused"],
    ),
    "retry-4xx": (
        "4xx answers are not retried",
        [("module_utils/fleet_mtls/api.py", "if status == 429 or 500 <= status <= 599:", "if status >= 400:")],
        [
            F + "test_network.py::test_4xx_on_id_not_retried",
            F + "test_network.py::test_404_unknown_preassigned_id_not_retried",
        ],
    ),
    "ignore-retry-after": (
        "Retry-After honoured",
        [("module_utils/fleet_mtls/api.py", "if retry_after is not None:", "if False:")],
        [F + "test_network.py::test_503_retry_after_honoured"],
    ),
    "accept-any-id": (
        "IDs validated against id_pattern and the safe-name rule",
        [
            ("module_utils/fleet_mtls/api.py", "ok = re.fullmatch(pattern, value) is not None", "ok = True"),
            (
                "module_utils/fleet_mtls/api.py",
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
            ("module_utils/fleet_mtls/api.py", "timeout=self.timeout, stream=True", "timeout=None, stream=True"),
            (
                "module_utils/fleet_mtls/api.py",
                "with _attempt_deadline(self.timeout * ATTEMPT_DEADLINE_FACTOR):",
                "with contextlib.nullcontext():",
            ),
        ],
        [F + "test_network.py::test_connect_timeout", F + "test_network.py::test_read_timeout_mid_body_on_id"],
    ),
    "no-deadline": (
        "a total deadline per attempt (a trickling server cannot hold a run)",
        [
            (
                "module_utils/fleet_mtls/api.py",
                "with _attempt_deadline(self.timeout * ATTEMPT_DEADLINE_FACTOR):",
                "with contextlib.nullcontext():",
            )
        ],
        [F + "test_network.py::test_trickling_answer_is_bounded_by_the_timeout"],
    ),
    "no-tls-verify": (
        "server certificate verified",
        [
            (
                "module_utils/fleet_mtls/api.py",
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
            ("module_utils/fleet_mtls/api.py", 'text = text.replace(secret, "********")', "pass"),
            (
                "module_utils/fleet_mtls/api.py",
                '"[private key removed]", text, flags=re.DOTALL)',
                '"[private key removed]", "", flags=re.DOTALL) or text',
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
                "module_utils/fleet_mtls/identity/transaction.py",
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
                "module_utils/fleet_mtls/identity/journal.py",
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
                "module_utils/fleet_mtls/identity/journal.py",
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
                "module_utils/fleet_mtls/identity/transaction.py",
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
        [("module_utils/fleet_mtls/identity/engine.py", "recovered = tx.recover(a)", "recovered = None")],
        [
            F + "test_crash.py::test_interrupted_rotation_keeps_gate_access_until_rerun",
            F + "test_crash.py::test_kill_then_rerun_converges[between-renames-rotate-SIGKILL]",
        ],
    ),
    "no-lock": (
        "exclusive lock on the identity directory",
        [("module_utils/fleet_mtls/identity/engine.py", "idir.lock(timeout=s.lock_timeout)", "pass")],
        [F + "test_crash.py::test_two_concurrent_runs_one_identity"],
    ),
    "mint-new-device": (
        "an unreadable certificate is refused, never replaced by a new device",
        [
            (
                "module_utils/fleet_mtls/identity/plan.py",
                "return Plan(REKEY, _unusable_certificate(a, s), s.agent_id,",
                "return Plan(REKEY if s.agent_id else CREATE, _unusable_certificate(a, s), s.agent_id,",
            ),
            (
                "module_utils/fleet_mtls/identity/plan.py",
                "    if not s.agent_id:\n        raise StateError(\n            \"%s, so this device's",
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
                "module_utils/fleet_mtls/identity/plan.py",
                "plan.kind, plan.reason = REPAIR, ",
                "plan.kind, plan.reason = REKEY, ",
            )
        ],
        [F + "test_device_state.py::test_wrong_mode_repaired_without_new_key"],
    ),
    "keep-hard-linked-key": (
        "a hard-linked key is rotated, never chmod-ed through the link",
        [("module_utils/fleet_mtls/identity/plan.py", "    elif hard_linked(a.key.stat):", "    elif False:")],
        [F + "test_device_state.py::test_hard_linked_key_is_rotated_never_chmodded"],
    ),
    "chmod-hard-linked-cert": (
        "a hard-linked certificate is replaced by a fresh copy, never chmod-ed through the link",
        [("module_utils/fleet_mtls/identity/transaction.py", "if fix.hard_linked:", "if False:")],
        [F + "test_device_state.py::test_hard_linked_certificate_is_replaced_never_chmodded"],
    ),
    "ignore-clock": (
        "nothing is minted or rotated on a clock far from the API's",
        [("module_utils/fleet_mtls/identity/clock.py", "    if abs(skew) <= max_skew:", "    if True:")],
        [F + "test_time.py::test_skewed_clock_refuses_to_mint_or_rotate"],
    ),
    "nominal-lifetime": (
        "renewal follows the issued lifetime when the CA issues less than renew_before_days",
        [("module_utils/fleet_mtls/identity/plan.py", "    if info.self_signed or window < lifetime:", "    if True:")],
        [F + "test_time.py::test_ca_lifetime_shorter_than_the_renewal_window_does_not_reenrol_every_run"],
    ),
    "hide-identity-on-later-failure": (
        "a failure after the identity part still reports what it did",
        [("library/mtls_identity.py", "    if identity_result is None:", "    if True:")],
        [F + "test_device_state.py::test_disk_full_at_the_agent_config_reports_the_identity_part"],
    ),
    "follow-links": (
        "symlinks refused for the directory, key and certificate",
        [
            ("module_utils/fleet_mtls/fsutil.py", "if stat.S_ISLNK(st.st_mode):", "if False:"),
            (
                "module_utils/fleet_mtls/fsutil.py",
                "os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW",
                "os.O_RDONLY | os.O_DIRECTORY",
            ),
            ("module_utils/fleet_mtls/fsutil.py", "flags | os.O_NOFOLLOW | os.O_NONBLOCK", "flags | os.O_NONBLOCK"),
        ],
        [
            F + "test_device_state.py::test_symlinked_file_refused",
            F + "test_device_state.py::test_symlinked_directory_refused",
        ],
    ),
    "chmod-after-write": (
        "keys are 0600 from their first byte",
        [
            (
                "module_utils/fleet_mtls/fsutil.py",
                "_O_CLOEXEC, mode,\n            dir_fd=self.fd,",
                "_O_CLOEXEC, 0o666,\n            dir_fd=self.fd,",
            ),
            (
                "module_utils/fleet_mtls/fsutil.py",
                "            if stat.S_IMODE(st.st_mode) != mode:\n                os.fchmod(fd, mode)\n"
                "            view = memoryview(data)\n            while view:\n"
                "                written = os.write(fd, view)\n                view = view[written:]\n",
                "            view = memoryview(data)\n            while view:\n"
                "                written = os.write(fd, view)\n                view = view[written:]\n"
                "            os.fchmod(fd, mode)\n",
            ),
        ],
        [F + "test_secrets.py::test_no_key_file_ever_has_another_mode_than_0600"],
    ),
    "untrusted-owner": (
        "a directory owned by another user is refused",
        [("module_utils/fleet_mtls/fsutil.py", "if st.st_uid not in trusted:", "if False:")],
        [F + "test_device_state.py::test_directory_owned_by_another_user_refused"],
    ),
}

PLUGIN = '''"""pytest plugin: the mutant's module_utils first, for in-process tests."""
import ansible.module_utils
ansible.module_utils.__path__.insert(0, {path!r})
'''


def make_mutant(root: pathlib.Path, edits) -> str | None:
    for sub in ("library", "module_utils"):
        shutil.copytree(REPO / sub, root / sub, symlinks=True)
    for rel, old, new in edits:
        path = root / rel
        text = path.read_text()
        if old not in text:
            return f"stale: {old[:60]!r} not found in {rel}"
        path.write_text(text.replace(old, new, 1))
    (root / "mutant_path.py").write_text(PLUGIN.format(path=str(root / "module_utils")))
    return None


def run(name: str) -> tuple[str, float, str]:
    what, edits, tests = MUTATIONS[name]
    with tempfile.TemporaryDirectory(prefix=f"mutant-{name}-") as tmp:
        root = pathlib.Path(tmp)
        stale = make_mutant(root, edits)
        if stale:
            return "stale", 0.0, stale
        env = dict(
            os.environ,
            FLEET_FAULTS_CODE=str(root),
            PYTHONPATH=str(root),
            ANSIBLE_LIBRARY=str(root / "library"),
            ANSIBLE_MODULE_UTILS=str(root / "module_utils"),
        )
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
                "-p",
                "mutant_path",
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
        return ("killed" if proc.returncode != 0 else "SURVIVED"), elapsed, last


def main(argv: list[str]) -> int:
    names = argv or list(MUTATIONS)
    survived = 0
    for name in names:
        verdict, elapsed, detail = run(name)
        survived += verdict == "SURVIVED"
        print(f"{name:20} {verdict:9} {elapsed:6.1f}s  {MUTATIONS[name][0]}  [{detail}]", flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
