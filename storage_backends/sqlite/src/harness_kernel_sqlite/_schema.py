"""The schema and its forward migrations.

``MIGRATIONS[n]`` takes a database at version ``n`` to ``n + 1``. A database is upgraded
inside one ``BEGIN IMMEDIATE`` transaction the first time a storage opens it, so two
processes opening an old file at once migrate it exactly once. A database newer than
this code is refused instead of being misread.
"""

from __future__ import annotations

import sqlite3
from typing import Literal, TypeAlias

from harness_kernel.errors import StorageError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Synchronous", "migrate"]

Synchronous: TypeAlias = Literal["off", "normal", "full", "extra"]

MIGRATIONS: list[tuple[str, ...]] = [
    # 0 -> 1: sessions, their labels and their event logs.
    (
        """
        CREATE TABLE sessions (
            id          TEXT PRIMARY KEY,
            agent       TEXT NOT NULL,
            created_at  REAL NOT NULL,
            labels      TEXT NOT NULL,             -- JSON object, to notice relabelling on save
            revision    INTEGER NOT NULL,
            head_seq    INTEGER NOT NULL DEFAULT 0, -- the log's last seq: the append CAS token
            record      TEXT NOT NULL               -- codec.encode_record as JSON
        )
        """,
        "CREATE INDEX sessions_by_created ON sessions (created_at DESC, id DESC)",
        "CREATE INDEX sessions_by_agent ON sessions (agent, created_at DESC, id DESC)",
        """
        CREATE TABLE session_labels (
            session_id  TEXT NOT NULL,
            key         TEXT NOT NULL,
            value       TEXT NOT NULL,
            created_at  REAL NOT NULL,              -- copied so one index serves filter and order
            PRIMARY KEY (session_id, key)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX labels_by_value ON session_labels (key, value, created_at DESC, session_id DESC)",
        """
        CREATE TABLE events (
            session_id  TEXT NOT NULL,
            seq         INTEGER NOT NULL,
            event       TEXT NOT NULL,              -- codec.encode_event as JSON
            PRIMARY KEY (session_id, seq)
        ) WITHOUT ROWID
        """,
    ),
    # 1 -> 2: each session's incarnation, so an append checks it in the same statement.
    ("ALTER TABLE sessions ADD COLUMN incarnation TEXT NOT NULL DEFAULT ''",),
]

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to ``SCHEMA_VERSION``; returns the version it was at."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        (found,) = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        if found > SCHEMA_VERSION:
            raise StorageError(
                f"the SQLite database has schema version {found}; this harness-kernel-sqlite "
                f"knows up to {SCHEMA_VERSION}: upgrade it"
            )
        for version in range(found, SCHEMA_VERSION):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        if found < SCHEMA_VERSION:
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(found)
