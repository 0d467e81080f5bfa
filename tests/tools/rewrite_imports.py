"""Move a tree (a branch) to the collection autonomy_edge.fleet_mtls: one mechanical rewrite.

    python3 tests/tools/rewrite_imports.py [--check] [PATH ...]

PATHs default to library/ module_utils/ action_plugins/ tests/ bench/ roles/ playbooks/ of the
repository holding this file. What it rewrites (and prints, one line per change):

- Python (*.py): every ``ansible.module_utils.fleet_mtls`` (imports, strings naming modules,
  import hooks) becomes ``ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils``;
  then ``ruff check --fix --select I`` on the changed files re-sorts and re-wraps the imports
  (the new name is 34 characters longer).
- YAML (*.yml, *.yaml): tasks calling the bundle's modules by short name, and roles imported as
  ``mtls_identity``/``mtls_report`` (or molecule's ``fleet_mtls.mtls_identity``), get the FQCN.

It also lists, without touching them, the lines that made the old name importable by extending
``ansible.module_utils.__path__``: replace them by hand with ``<repo>/collections`` on
``sys.path`` (see tests/conftest.py). Running it again changes nothing. With --check it only
reports and exits 1 when something would change.
"""
from __future__ import annotations

import argparse
import pathlib
import re
import shutil
import subprocess
import sys

SELF = pathlib.Path(__file__).resolve()
REPO = SELF.parents[2]
DEFAULT_PATHS = ("library", "module_utils", "action_plugins", "tests", "bench", "roles", "playbooks")
SKIP_DIRS = {".venv", ".git", "collections", "__pycache__", ".state", ".cache"}

OLD_PACKAGE = re.compile(r"\bansible\.module_utils\.fleet_mtls\b")
NEW_PACKAGE = "ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils"
OLD_PATH_HOOK = re.compile(r"module_utils\.__path__|__path__\.(?:append|insert)\(")

COLLECTION = "autonomy_edge.fleet_mtls"
MODULES = ("mtls_identity", "mtls_identity_info", "mtls_check", "mtls_deregister", "mtls_report_write")
TASK_KEY = re.compile(r"^(\s*(?:- )?)(%s):(\s*)$" % "|".join(MODULES))
ROLE_NAME = re.compile(r"^(\s+(?:- )?name: )(?:fleet_mtls\.)?(mtls_identity|mtls_report)(\s*)$")


def rewrite_python(line: str) -> str:
    return OLD_PACKAGE.sub(NEW_PACKAGE, line)


def rewrite_yaml(line: str) -> str:
    line = TASK_KEY.sub(lambda m: "%s%s.%s:%s" % (m[1], COLLECTION, m[2], m[3]), line)
    return ROLE_NAME.sub(lambda m: "%s%s.%s%s" % (m[1], COLLECTION, m[2], m[3]), line)


def files_under(paths):
    for path in paths:
        if path.is_file():
            yield path
            continue
        for found in sorted(path.rglob("*")):
            if found.is_file() and not found.is_symlink() and not SKIP_DIRS.intersection(found.parts):
                if found.resolve() != SELF:  # its own docstring names the old package
                    yield found


def rewrite_file(path: pathlib.Path, check: bool) -> tuple[bool, list[str]]:
    """Rewrite one file; return (changed, the lines still needing a hand edit)."""
    if path.suffix == ".py":
        rewrite = rewrite_python
    elif path.suffix in (".yml", ".yaml"):
        rewrite = rewrite_yaml
    else:
        return False, []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    changed = False
    by_hand = []
    for number, line in enumerate(lines, 1):
        new = rewrite(line)
        if new != line:
            changed = True
            print("%s:%d: %s\n%s    -> %s" % (relative(path), number, line.strip(), " " * len(relative(path)),
                                                new.strip()))
            lines[number - 1] = new
        if path.suffix == ".py" and OLD_PATH_HOOK.search(new):
            by_hand.append("%s:%d: %s" % (relative(path), number, new.strip()))
    if changed and not check:
        path.write_text("".join(lines), encoding="utf-8")
    return changed, by_hand


def relative(path: pathlib.Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def sort_imports(paths: list[pathlib.Path]) -> None:
    """Re-sort and re-wrap the imports the rewrite lengthened, as the repository's ruff does."""
    ruff = REPO / ".venv" / "bin" / "ruff"
    ruff = str(ruff) if ruff.exists() else shutil.which("ruff")
    if ruff is None:
        print("ruff not found: run `ruff check --fix --select I` on the files above yourself")
        return
    proc = subprocess.run([ruff, "check", "--no-cache", "--fix", "--select", "I", *map(str, paths)],
                          cwd=REPO, capture_output=True, text=True, check=False)
    print("ruff --fix --select I:", (proc.stdout.strip().splitlines() or ["(no output)"])[-1])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="report only; exit 1 when something would change")
    parser.add_argument("paths", nargs="*", type=pathlib.Path)
    args = parser.parse_args(argv)
    paths = args.paths or [REPO / p for p in DEFAULT_PATHS if (REPO / p).exists()]
    changed, by_hand = [], []
    for path in files_under(paths):
        file_changed, file_by_hand = rewrite_file(path, args.check)
        if file_changed:
            changed.append(path)
        by_hand += file_by_hand
    python_changed = [p for p in changed if p.suffix == ".py"]
    if python_changed and not args.check:
        sort_imports(python_changed)
    print("%s %d file(s)" % ("would rewrite" if args.check else "rewrote", len(changed)))
    if by_hand:
        print("to edit by hand (put <repo>/collections on sys.path instead):")
        print("\n".join("  " + line for line in by_hand))
    return 1 if args.check and (changed or by_hand) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
