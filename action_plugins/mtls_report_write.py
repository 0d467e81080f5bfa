# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side action: write the fleet report (JSON, CSV, text table) in one step.
Documented by library/mtls_report_write.py (a documentation-only module).

An action plugin rather than copy/template tasks: the report lives on the controller, so
writing it needs no module round trip (three copy/template tasks cost six module runs).
"""
from __future__ import annotations

import csv
import datetime
import io
import json
import os
import re
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

COLUMNS = (
    "host", "agent_id", "action", "reason", "fingerprint_sha256", "not_after", "days_left",
    "verify", "verify_failure", "tls_version", "error", "failed_task",
)
TABLE = (
    ("HOST", "host"), ("AGENT ID", "agent_id"), ("ACTION", "action"), ("FINGERPRINT", "fingerprint_sha256"),
    ("NOT AFTER", "not_after"), ("DAYS", "days_left"), ("VERIFY", "verify"), ("ERROR", "error"),
)
_KEY_MATERIAL = re.compile(r"PRIVATE KEY|BEGIN [A-Z ]*KEY-----")
_FORMULA_START = ("=", "+", "-", "@")


def _text(value):
    if value is None:
        return ""
    return " ".join(str(value).split())


def _csv_cell(value):
    text = _text(value)
    # A cell starting like a formula is data, not a formula, in a spreadsheet.
    if text.startswith(_FORMULA_START) and not re.fullmatch(r"-?[0-9]+", text):
        text = "'" + text
    return text


def _table_cell(row, key):
    value = row.get(key)
    if key == "fingerprint_sha256" and value:
        return str(value)[:16] + "..."
    if key == "not_after" and value:
        return str(value)[:10]
    if key == "verify" and row.get("verify_failure"):
        return "%s (%s)" % (value, row["verify_failure"])
    text = _text(value)
    if key == "error" and len(text) > 120:
        text = text[:117] + "..."
    return text or "-"


def table_lines(name, rows):
    cells = [[_table_cell(row, key) for _, key in TABLE] for row in rows]
    headers = [title for title, _ in TABLE]
    widths = [max([len(headers[i])] + [len(c[i]) for c in cells]) for i in range(len(headers))]

    def line(values):
        return "  ".join(v.ljust(widths[i]) for i, v in enumerate(values)).rstrip()

    return ["fleet-mtls report %s: %d host(s)" % (name, len(rows)), line(headers)] + [line(c) for c in cells]


def summary(rows):
    actions = {}
    for row in rows:
        actions[row.get("action") or ""] = actions.get(row.get("action") or "", 0) + 1
    return {
        "hosts": len(rows),
        "actions": actions,
        "verified": sum(1 for r in rows if r.get("verify") == "ok"),
        "verify_failed": sum(1 for r in rows if r.get("verify") == "failed"),
        "errors": sum(1 for r in rows if r.get("error")),
    }


def _write_atomic(directory, filename, text):
    path = os.path.join(directory, filename)
    fd, tmp = tempfile.mkstemp(prefix="." + filename + ".", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("rows", "dir", "name", "playbook"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(
            argument_spec={
                "rows": {"type": "list", "elements": "dict", "required": True},
                "dir": {"type": "path", "required": True},
                "name": {"type": "str", "required": True},
                "playbook": {"type": "str", "default": ""},
            }
        )
        name = args["name"]
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise AnsibleActionFail("report name %r must be a plain file name" % name)
        rows = [{key: row.get(key) for key in COLUMNS} for row in args["rows"]]
        report = {
            "report": name,
            "playbook": args["playbook"],
            "generated_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "summary": summary(rows),
            "hosts": rows,
        }
        json_text = json.dumps(report, indent=2, sort_keys=False, default=str) + "\n"
        if _KEY_MATERIAL.search(json_text):
            raise AnsibleActionFail("refusing to write a report that contains key material")
        buffer = io.StringIO()
        writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_csv_cell(row[key]) for key in COLUMNS])
        lines = table_lines(name, rows)

        directory = args["dir"]
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
            files = [
                _write_atomic(directory, name + ".json", json_text),
                _write_atomic(directory, name + ".csv", buffer.getvalue()),
                _write_atomic(directory, name + ".txt", "\n".join(lines) + "\n"),
            ]
        except OSError as exc:
            raise AnsibleActionFail("cannot write the report in %s: %s" % (directory, exc.strerror or exc))
        result.update(changed=False, files=files, table=lines, summary=report["summary"])
        return result
