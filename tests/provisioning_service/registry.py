"""The SQLite registry (WAL mode): reserved IDs, current certificates, history, enrollments.

One connection guarded by a lock: every read-check-write sequence is atomic.

Tables
- ``ids``: every ID ever reserved (never reissued, deleted ones included).
- ``certificates``: the current certificate of each ID (last upload wins).
- ``history``: certificates replaced by a later upload/enrollment or removed by a deletion.
- ``enrollments``: every certificate issued by the enrollment CA.
- ``deletions``: decommissioned IDs.
"""

from __future__ import annotations

import dataclasses
import pathlib
import secrets
import sqlite3
import threading
import time

from tests.provisioning_service.validation import Refusal

SCHEMA = """
CREATE TABLE IF NOT EXISTS ids (
    id TEXT PRIMARY KEY,
    reserved_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    registered_at REAL,
    deleted_at REAL
);
CREATE TABLE IF NOT EXISTS certificates (
    id TEXT PRIMARY KEY REFERENCES ids(id),
    pem TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    not_after REAL NOT NULL,
    source TEXT NOT NULL,
    uploaded_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    pem TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    source TEXT NOT NULL,
    uploaded_at REAL NOT NULL,
    replaced_at REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_id ON history(id);
CREATE TABLE IF NOT EXISTS enrollments (
    serial TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    pem TEXT NOT NULL,
    issued_at REAL NOT NULL,
    not_after REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deletions (
    id TEXT PRIMARY KEY,
    deleted_at REAL NOT NULL
);
"""


@dataclasses.dataclass(frozen=True)
class IdRecord:
    id: str
    reserved_at: float
    expires_at: float
    registered_at: float | None
    deleted_at: float | None


@dataclasses.dataclass(frozen=True)
class CertRecord:
    id: str
    pem: str
    fingerprint: str
    not_after: float
    source: str
    uploaded_at: float


class Registry:
    def __init__(self, path: pathlib.Path, reservation_ttl: float) -> None:
        self.path = path
        self.ttl = reservation_ttl
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- IDs ------------------------------------------------------------------------------
    def reserve(self, fixed: str | None = None) -> IdRecord:
        """Reserve a fresh random ID (or ``fixed``, which must never have been reserved)."""
        now = time.time()
        with self._lock:
            for _ in range(1000):
                candidate = fixed or secrets.token_hex(4).upper()
                try:
                    self._db.execute(
                        "INSERT INTO ids (id, reserved_at, expires_at) VALUES (?, ?, ?)",
                        (candidate, now, now + self.ttl),
                    )
                except sqlite3.IntegrityError:
                    if fixed:
                        raise Refusal(409, f"ID {fixed} was already reserved once") from None
                    continue
                return IdRecord(candidate, now, now + self.ttl, None, None)
        raise RuntimeError("could not find a free ID")

    def lookup(self, agent_id: str) -> IdRecord | None:
        with self._lock:
            return self._lookup(agent_id)

    def _lookup(self, agent_id: str) -> IdRecord | None:
        row = self._db.execute(
            "SELECT id, reserved_at, expires_at, registered_at, deleted_at FROM ids WHERE id = ?",
            (agent_id,),
        ).fetchone()
        return IdRecord(*row) if row else None

    def _check_usable(self, agent_id: str, now: float) -> IdRecord:
        rec = self._lookup(agent_id)
        if rec is None:
            raise Refusal(404, f"unknown ID {agent_id}: reserve one with /generate-orchestrator-id")
        if rec.deleted_at is not None:
            raise Refusal(410, f"ID {agent_id} was decommissioned")
        if rec.registered_at is None and now > rec.expires_at:
            raise Refusal(410, f"the reservation of ID {agent_id} expired; reserve a new ID")
        return rec

    def check_usable(self, agent_id: str) -> IdRecord:
        """Raise :class:`Refusal` (404/410) unless certificates may be registered for the ID."""
        with self._lock:
            return self._check_usable(agent_id, time.time())

    # -- certificates ---------------------------------------------------------------------
    def register(self, agent_id: str, pem: str, fingerprint: str, not_after: float, source: str) -> None:
        """Make ``pem`` the current certificate of ``agent_id``; keep the previous one."""
        now = time.time()
        with self._lock:
            self._check_usable(agent_id, now)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._retire(agent_id, now, "replaced", skip_fingerprint=fingerprint)
                self._db.execute(
                    "INSERT OR REPLACE INTO certificates"
                    " (id, pem, fingerprint, not_after, source, uploaded_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (agent_id, pem, fingerprint, not_after, source, now),
                )
                self._db.execute(
                    "UPDATE ids SET registered_at = COALESCE(registered_at, ?) WHERE id = ?",
                    (now, agent_id),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _retire(self, agent_id: str, now: float, reason: str, skip_fingerprint: str | None = None) -> None:
        row = self._db.execute(
            "SELECT pem, fingerprint, source, uploaded_at FROM certificates WHERE id = ?",
            (agent_id,),
        ).fetchone()
        if row is None or row[1] == skip_fingerprint:
            return
        self._db.execute(
            "INSERT INTO history (id, pem, fingerprint, source, uploaded_at, replaced_at, reason)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (agent_id, row[0], row[1], row[2], row[3], now, reason),
        )
        self._db.execute("DELETE FROM certificates WHERE id = ?", (agent_id,))

    def record_enrollment(self, agent_id: str, serial: int, pem: str, fingerprint: str, not_after: float) -> None:
        """Remember a certificate issued by the enrollment CA and make it current."""
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO enrollments (serial, id, fingerprint, pem, issued_at, not_after)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (format(serial, "x"), agent_id, fingerprint, pem, now, not_after),
            )
        self.register(agent_id, pem, fingerprint, not_after, "enroll")

    def current(self, agent_id: str) -> CertRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, pem, fingerprint, not_after, source, uploaded_at FROM certificates WHERE id = ?",
                (agent_id,),
            ).fetchone()
        return CertRecord(*row) if row else None

    def delete(self, agent_id: str) -> None:
        now = time.time()
        with self._lock:
            rec = self._lookup(agent_id)
            if rec is None:
                raise Refusal(404, f"unknown ID {agent_id}")
            if rec.deleted_at is not None:
                raise Refusal(410, f"ID {agent_id} was already decommissioned")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._retire(agent_id, now, "deleted")
                self._db.execute("UPDATE ids SET deleted_at = ? WHERE id = ?", (now, agent_id))
                self._db.execute("INSERT INTO deletions (id, deleted_at) VALUES (?, ?)", (agent_id, now))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
