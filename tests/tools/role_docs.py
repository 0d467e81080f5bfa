#!/usr/bin/env python3
"""Generate the variable tables of the roles' READMEs from their meta/argument_specs.yml.

argument_specs.yml is the one place role variables are documented (Ansible also validates
them against it before the role runs); the README tables are written from it, between the
markers ``<!-- BEGIN GENERATED VARIABLES -->`` and ``<!-- END GENERATED VARIABLES -->``.

    tests/tools/role_docs.py          rewrite the tables
    tests/tools/role_docs.py --check  exit 1 (and say which) when a README is stale
"""
from __future__ import annotations

import argparse
import pathlib
import re
import sys

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
BEGIN = "<!-- BEGIN GENERATED VARIABLES -->"
END = "<!-- END GENERATED VARIABLES -->"
_MARKUP = re.compile(r"\b([CIOV])\(([^)]*)\)")


def plain(text):
    """Ansible doc markup to Markdown: C(x), O(x), V(x) as code, I(x) as emphasis."""
    return _MARKUP.sub(lambda m: ("*%s*" if m.group(1) == "I" else "`%s`") % m.group(2), text)


def cell(text):
    return " ".join(str(text).split()).replace("|", "\\|")


def default_of(spec):
    if "default" not in spec:
        return "**required**" if spec.get("required") else ""
    value = spec["default"]
    if value == "" or value is None:
        return '`""`' if value == "" else "`null`"
    if isinstance(value, (dict, list)):
        return "`%s`" % yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return "`%s`" % (str(value).lower() if isinstance(value, bool) else value)


def type_of(spec):
    kind = spec.get("type", "str")
    if kind == "list" and spec.get("elements"):
        kind = "list of %s" % spec["elements"]
    if spec.get("choices"):
        kind += ": " + ", ".join("`%s`" % c for c in spec["choices"])
    return kind


def table(entry_point, spec):
    lines = ["### Entry point `%s`" % entry_point, ""]
    if spec.get("short_description"):
        lines += [plain(spec["short_description"]) + ".", ""]
    lines += ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, option in (spec.get("options") or {}).items():
        description = option.get("description", "")
        if isinstance(description, list):
            description = " ".join(description)
        lines.append("| `%s` | %s | %s | %s |" % (
            name, cell(type_of(option)), cell(default_of(option)), cell(plain(description))))
    return "\n".join(lines)


def generated(specs_path):
    specs = yaml.safe_load(specs_path.read_text())["argument_specs"]
    return "\n\n".join(table(name, spec) for name, spec in specs.items())


def render(readme_text, body):
    if BEGIN not in readme_text or END not in readme_text:
        raise SystemExit("markers %s ... %s missing" % (BEGIN, END))
    head, rest = readme_text.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    return "%s%s\n%s\n%s%s" % (head, BEGIN, body, END, tail)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether a README is stale")
    args = parser.parse_args(argv)
    wanted = {}
    for specs in sorted(REPO.glob("roles/*/meta/argument_specs.yml")):
        readme = specs.parent.parent / "README.md"
        if readme.exists():  # a role without a README of its own has no table to keep
            wanted[readme] = render(readme.read_text(), generated(specs))
    return sync(wanted, args.check, "stale variable tables (run tests/tools/role_docs.py)")


def sync(wanted, check, stale_message):
    """Write each {path: text} that differs (or, with ``check``, only say which): 1 when stale."""
    stale = []
    for path, text in wanted.items():
        if not path.exists() or path.read_text() != text:
            stale.append(path.relative_to(REPO))
            if not check:
                path.write_text(text)
    if check and stale:
        print("%s: %s" % (stale_message, ", ".join(map(str, stale))))
        return 1
    for path in stale:
        print("rewrote %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
