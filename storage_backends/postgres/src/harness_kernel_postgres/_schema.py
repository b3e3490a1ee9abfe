"""The schema and its forward migrations.

``MIGRATIONS[n]`` takes a schema at version ``n`` to ``n + 1``; each statement is a
format string whose ``{s}`` is the quoted schema name. The first storage call of a
process upgrades the schema inside one transaction holding an advisory lock, so hosts
starting together against an old schema migrate it exactly once. A schema newer than
this code is refused instead of being misread.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from harness_kernel.errors import StorageError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "schema_version"]

MIGRATIONS: list[tuple[str, ...]] = [
    # 0 -> 1: sessions, their labels and their event logs. Ids sort as Python sorts
    # them (COLLATE "C": code point order), as the listing contract needs.
    (
        """
        CREATE TABLE {s}.sessions (
            id          text COLLATE "C" PRIMARY KEY,
            agent       text NOT NULL,
            created_at  double precision NOT NULL,
            labels      text NOT NULL,              -- JSON object, to notice relabelling on save
            revision    bigint NOT NULL,            -- the save CAS token
            head_seq    bigint NOT NULL DEFAULT 0,  -- the log's last seq: the append CAS token
            incarnation text NOT NULL DEFAULT '',
            record      text NOT NULL               -- codec.encode_record as JSON
        )
        """,
        "CREATE INDEX sessions_by_created ON {s}.sessions (created_at DESC, id DESC)",
        "CREATE INDEX sessions_by_agent ON {s}.sessions (agent, created_at DESC, id DESC)",
        """
        CREATE TABLE {s}.session_labels (
            session_id  text COLLATE "C" NOT NULL,
            key         text NOT NULL,
            value       text NOT NULL,
            created_at  double precision NOT NULL,  -- copied so one index serves filter and order
            PRIMARY KEY (session_id, key)
        )
        """,
        "CREATE INDEX labels_by_value ON {s}.session_labels (key, value, created_at DESC, session_id DESC)",
        """
        CREATE TABLE {s}.events (
            session_id  text COLLATE "C" NOT NULL,
            seq         bigint NOT NULL,
            event       text NOT NULL,              -- codec.encode_event as JSON
            PRIMARY KEY (session_id, seq)
        )
        """,
    ),
    # 1 -> 2: the change feed behind watch's catch-up: the transaction that last moved a
    # session's log, so a watcher back from a dropped connection finds what moved.
    (
        "ALTER TABLE {s}.sessions ADD COLUMN change_xid xid8",
        "CREATE INDEX sessions_by_change ON {s}.sessions (change_xid)",
    ),
]

SCHEMA_VERSION = len(MIGRATIONS)


def _statement(template: str, schema: str) -> sql.Composed:
    return sql.SQL(template).format(s=sql.Identifier(schema))


def schema_version(conn: psycopg.Connection, schema: str) -> int:
    """The version a schema is at (0: no tables of ours yet)."""
    row = conn.execute(
        "SELECT to_regclass(format('%%I.schema_version', %s::text)) IS NOT NULL", (schema,)
    ).fetchone()
    if not row or not row[0]:
        return 0
    found = conn.execute(_statement("SELECT coalesce(max(version), 0) FROM {s}.schema_version", schema)).fetchone()
    return int(found[0]) if found else 0


def migrate(conn: psycopg.Connection, schema: str, *, target: int = SCHEMA_VERSION) -> int:
    """Bring ``schema`` to ``target`` (default: the latest); returns the version it was at.

    ``conn`` is in autocommit mode; the upgrade is one transaction.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"harness_kernel_postgres:{schema}",))
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        if not exists:
            # Only when missing: CREATE SCHEMA needs the CREATE privilege on the database,
            # which a role given an existing schema does not have.
            conn.execute(_statement("CREATE SCHEMA {s}", schema))
        conn.execute(_statement("CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer NOT NULL)", schema))
        found = schema_version(conn, schema)
        if found > SCHEMA_VERSION:
            raise StorageError(
                f"the PostgreSQL schema {schema!r} has schema version {found}; this "
                f"harness-kernel-postgres knows up to {SCHEMA_VERSION}: upgrade it"
            )
        for version in range(found, target):
            for statement in MIGRATIONS[version]:
                conn.execute(_statement(statement, schema))
        if found < target:
            conn.execute(_statement("DELETE FROM {s}.schema_version", schema))
            conn.execute(_statement("INSERT INTO {s}.schema_version (version) VALUES (%s)", schema), (target,))
    return found
