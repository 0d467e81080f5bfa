"""Run one module task through real Ansible (ansible-playbook, local connection) from the
repository root, so ansible.cfg wires library/ and module_utils/ as for a user."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
VENV_PYTHON = str(BIN / "python")


@dataclass
class TaskRun:
    rc: int
    stdout: str
    stderr: str
    seconds: float
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed"))

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def ansible_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "PATH": str(BIN) + os.pathsep + env.get("PATH", ""),
    })
    env.update(extra)
    return env


def task_command(
    tmp_path: pathlib.Path,
    module: str,
    args: dict[str, Any],
    *,
    check: bool = False,
    diff: bool = False,
    verbosity: int = 0,
    python: str = VENV_PYTHON,
) -> tuple[list[str], pathlib.Path]:
    """The ansible-playbook command that runs ``module`` with ``args`` on localhost, and the
    file its registered result is written to.

    A second task (never in check mode) writes the registered result as JSON for the test,
    so no callback plugin outside ansible-core is needed; the first task's failure is kept in
    the result (``failed``) rather than stopping the play."""
    stamp = time.monotonic_ns()
    result_file = tmp_path / f"result-{stamp}.json"
    play = [{
        "name": "Run one module",
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {"name": "Run the module", module: args, "register": "__result", "ignore_errors": True},
            {"name": "Save the result", "ansible.builtin.copy": {
                "content": "{{ __result | to_json }}", "dest": str(result_file), "mode": "0600"},
             "check_mode": False, "diff": False},
        ],
    }]
    playbook = tmp_path / f"play-{stamp}.yml"
    playbook.write_text(json.dumps(play))  # JSON is YAML: types are kept exactly
    cmd = [
        str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
        "-e", json.dumps({"ansible_python_interpreter": python}), str(playbook),
    ]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    if verbosity:
        cmd.append("-" + "v" * verbosity)
    return cmd, result_file


def run_task(tmp_path: pathlib.Path, module: str, args: dict[str, Any], *, timeout: float = 180,
             **options: Any) -> TaskRun:
    """Run ``module`` with ``args`` on localhost and return its registered result (``options``:
    those of ``task_command``)."""
    cmd, result_file = task_command(tmp_path, module, args, **options)
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=ansible_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)
    run = TaskRun(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
    try:
        run.result = json.loads(result_file.read_text())
    except (OSError, ValueError) as exc:
        raise AssertionError(f"no task result (rc={proc.returncode}): {exc}\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}") from None
    return run
