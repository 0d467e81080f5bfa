#!/usr/bin/env python3
"""What the reference provisioning service has on record, as JSON (runs on the controller).

Reads the service's SQLite registry (MTLS_TEST_STATE_DIR/registry.sqlite3) read-only, so the
molecule verifiers compare the devices with what the service reports:

    {"ids": [...every ID handed out...],
     "certificates": {id: {"fingerprint": hex, "source": upload|agent|enroll}},
     "history": {id: [previous fingerprints, oldest first]},
     "enrollments": {id: [fingerprints of certificates the enrollment CA issued]},
     "deleted": [...]}

    registry.py STATE_DIR
"""

import json
import pathlib
import sqlite3
import sys


def main() -> None:
    db_path = pathlib.Path(sys.argv[1]) / "registry.sqlite3"
    if not db_path.is_file():
        sys.exit(f"registry.py: no registry at {db_path}")
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        ids = [row[0] for row in db.execute("SELECT id FROM ids ORDER BY reserved_at, rowid")]
        certificates = {
            row[0]: {"fingerprint": row[1], "source": row[2]}
            for row in db.execute("SELECT id, fingerprint, source FROM certificates")
        }
        history: dict[str, list[str]] = {}
        for agent_id, fp in db.execute("SELECT id, fingerprint FROM history ORDER BY seq"):
            history.setdefault(agent_id, []).append(fp)
        enrollments: dict[str, list[str]] = {}
        for agent_id, fp in db.execute("SELECT id, fingerprint FROM enrollments ORDER BY issued_at"):
            enrollments.setdefault(agent_id, []).append(fp)
        deleted = [row[0] for row in db.execute("SELECT id FROM deletions ORDER BY deleted_at")]
    finally:
        db.close()
    json.dump(
        {"ids": ids, "certificates": certificates, "history": history, "enrollments": enrollments, "deleted": deleted},
        sys.stdout,
        sort_keys=True,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
