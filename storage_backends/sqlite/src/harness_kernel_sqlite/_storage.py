"""``SqliteStorage``: sessions, labels and event logs in one SQLite database.

Every blocking call runs in a trio worker thread holding a connection of its own from a
small pool; the pool and the thread limiter have the same size, so each running worker
has exactly one connection and no connection is used by two threads at once.
``":memory:"`` is a single private database served by one connection.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import attrs
import trio

from harness_kernel import Event, SessionRecord, validate_session_id
from harness_kernel.codec import (
    decode_event,
    decode_record,
    dumps,
    encode_event,
    encode_record,
    loads,
)
from harness_kernel.contracts import (
    ListOrder,
    Page,
    SessionFilter,
    SessionStorage,
    StorageCapabilities,
)
from harness_kernel.errors import Conflict, SessionExists, SessionNotFound, StorageError
from harness_kernel.storage import (
    check_append_record,
    check_batch,
    check_incarnation,
    decode_cursor,
    encode_cursor,
    gc_paused,
)

from ._schema import Synchronous, migrate

__all__ = ["SqliteStorage", "Synchronous"]

T = TypeVar("T")
_CURSOR_TAG = "sq1"




def _text(value: str) -> str:
    """``value`` as SQLite can store it: a lone surrogate (valid in a Python str, not in
    UTF-8) becomes its backslash escape. JSON written this way reads back unchanged."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode()
    return value


def _json(payload: Any) -> str:
    return _text(dumps(payload))


def _record(text: str) -> SessionRecord:
    try:
        payload = loads(text)
    except ValueError as exc:
        raise StorageError("a session record in the SQLite database is not valid JSON") from exc
    return decode_record(payload)


def _encode_cursor(created_at: float, session_id: str) -> str:
    raw = json.dumps([_CURSOR_TAG, created_at, session_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        tag, created_at, session_id = json.loads(raw)
        if tag != _CURSOR_TAG or not isinstance(session_id, str) or isinstance(created_at, bool):
            raise ValueError
        return float(created_at), session_id
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid cursor {cursor!r:.80}: pass back a next_cursor from this storage") from exc


@contextmanager
def _transaction(conn: sqlite3.Connection, *, write: bool) -> Iterator[None]:
    """One transaction; writers take the write lock up front (``BEGIN IMMEDIATE``) so a
    read-then-write never fails to upgrade, and wait up to the busy timeout for it."""
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class SqliteStorage(SessionStorage):
    """Session storage in one SQLite database file (WAL mode), or ``":memory:"``.

    ``append`` and ``save`` check and write inside one ``BEGIN IMMEDIATE`` transaction,
    so their compare-and-swap holds between threads and processes sharing the file.
    """

    capabilities: ClassVar[StorageCapabilities] = StorageCapabilities(
        cross_process_fencing=True, durable=True, append_record=True
    )

    def __init__(
        self,
        path: str,
        *,
        busy_timeout_ms: int = 5000,
        synchronous: Synchronous = "full",
        max_connections: int = 4,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if synchronous not in ("off", "normal", "full", "extra"):
            raise ValueError(f"synchronous must be off, normal, full or extra, not {synchronous!r}")
        self.path = path
        self.memory = path == ":memory:"
        self._busy_timeout_ms = busy_timeout_ms
        self._synchronous = synchronous
        size = 1 if self.memory else max_connections
        self._limiter = trio.CapacityLimiter(size)
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._migrated = False
        self._closed = False

    # -- connections ------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if not self.memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            if not self.memory:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
            if not self._migrated:
                migrate(conn)
                self._migrated = True
        except BaseException:
            conn.close()
            raise
        return conn

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        with self._pool_lock:
            if self._closed:
                raise StorageError("the SQLite storage is closed")
            conn = self._idle.pop() if self._idle else None
        try:
            if conn is None:
                conn = self._connect()
            return fn(conn, *args)
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite failed: {exc}") from exc
        except OSError as exc:
            raise StorageError(f"cannot open the SQLite database: {exc.strerror or exc}") from exc
        finally:
            if conn is not None:
                with self._pool_lock:
                    closing = self._closed
                    if not closing:
                        self._idle.append(conn)
                if closing:
                    conn.close()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StorageError("the SQLite storage is closed")
        return await trio.to_thread.run_sync(functools.partial(self._call, fn, *args), limiter=self._limiter)

    # -- the contract, one blocking function per method --------------------------------

    @staticmethod
    def _create(conn: sqlite3.Connection, record: SessionRecord) -> None:
        validate_session_id(record.id)
        with _transaction(conn, write=True):
            try:
                conn.execute(
                    "INSERT INTO sessions (id, agent, created_at, labels, revision, head_seq, record, incarnation)"
                    " VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
                    (record.id, _text(record.agent), record.created_at, _json(dict(record.labels)),
                     record.revision, _json(encode_record(record)), _text(record.incarnation)),
                )
            except sqlite3.IntegrityError:
                raise SessionExists(f"session '{record.id}' already exists") from None
            conn.executemany(
                "INSERT INTO session_labels (session_id, key, value, created_at) VALUES (?, ?, ?, ?)",
                [(record.id, _text(k), _text(v), record.created_at) for k, v in record.labels.items()],
            )

    @staticmethod
    def _load(conn: sqlite3.Connection, session_id: str) -> SessionRecord | None:
        validate_session_id(session_id)
        row = conn.execute("SELECT record FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return _record(row[0]) if row else None

    @staticmethod
    def _save(conn: sqlite3.Connection, record: SessionRecord, expected_revision: int) -> None:
        validate_session_id(record.id)
        if record.revision != expected_revision + 1:
            raise ValueError("record.revision must be expected_revision + 1")
        with _transaction(conn, write=True):
            SqliteStorage._write_record(conn, record, expected_revision)

    @staticmethod
    def _write_record(conn: sqlite3.Connection, record: SessionRecord, expected_revision: int) -> None:
        """The compare-and-swap save, inside the caller's write transaction."""
        labels = _json(dict(record.labels))
        row = conn.execute(
            "SELECT revision, labels, created_at, incarnation FROM sessions WHERE id = ?", (record.id,)
        ).fetchone()
        if row is None:
            raise SessionNotFound(f"session '{record.id}' not found")
        check_incarnation(record.id, row[3], record.incarnation)
        if row[0] != expected_revision:
            raise Conflict(f"session '{record.id}' is at revision {row[0]}, not {expected_revision}")
        conn.execute(
            "UPDATE sessions SET agent = ?, created_at = ?, labels = ?, revision = ?, record = ? WHERE id = ?",
            (_text(record.agent), record.created_at, labels, record.revision, _json(encode_record(record)), record.id),
        )
        if row[1] != labels or row[2] != record.created_at:
            conn.execute("DELETE FROM session_labels WHERE session_id = ?", (record.id,))
            conn.executemany(
                "INSERT INTO session_labels (session_id, key, value, created_at) VALUES (?, ?, ?, ?)",
                [(record.id, _text(k), _text(v), record.created_at) for k, v in record.labels.items()],
            )

    @staticmethod
    def _append(
        conn: sqlite3.Connection,
        session_id: str,
        events: Sequence[Event],
        expected_seq: int,
        incarnation: str | None,
        record: SessionRecord | None = None,
    ) -> None:
        validate_session_id(session_id)
        check_batch(events, expected_seq)
        expected_revision = check_append_record(session_id, record) if record is not None else 0
        rows = [(session_id, e.seq, _json(encode_event(e))) for e in events]
        wanted = incarnation or ""
        with _transaction(conn, write=True):
            moved = conn.execute(
                "UPDATE sessions SET head_seq = ? WHERE id = ? AND head_seq = ?"
                " AND (? = '' OR incarnation = '' OR incarnation = ?)",
                (expected_seq + len(events), session_id, expected_seq, wanted, wanted),
            ).rowcount
            if moved == 0:
                row = conn.execute("SELECT head_seq, incarnation FROM sessions WHERE id = ?", (session_id,)).fetchone()
                if row is None:
                    raise SessionNotFound(f"session '{session_id}' not found")
                check_incarnation(session_id, row[1], incarnation)
                raise Conflict(f"session '{session_id}' is at seq {row[0]}, not {expected_seq}")
            conn.executemany("INSERT INTO events (session_id, seq, event) VALUES (?, ?, ?)", rows)
            if record is not None:  # the same transaction: one commit for both
                SqliteStorage._write_record(conn, record, expected_revision)

    @staticmethod
    def _read(conn: sqlite3.Connection, session_id: str, after_seq: int, limit: int | None) -> list[str]:
        validate_session_id(session_id)
        with _transaction(conn, write=False):  # one snapshot for the existence check and the rows
            if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
                raise SessionNotFound(f"session '{session_id}' not found")
            if limit is not None and limit <= 0:
                return []
            rows = conn.execute(
                "SELECT event FROM events WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (session_id, after_seq, -1 if limit is None else limit),
            ).fetchall()
        return [row[0] for row in rows]

    @staticmethod
    def _last_seq(conn: sqlite3.Connection, session_id: str) -> int:
        validate_session_id(session_id)
        row = conn.execute("SELECT head_seq FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise SessionNotFound(f"session '{session_id}' not found")
        return int(row[0])

    @staticmethod
    def _list(
        conn: sqlite3.Connection,
        filter: SessionFilter,
        limit: int,
        after: tuple[float, str] | None,
        order: ListOrder = "created",
    ) -> tuple[list[SessionRecord], bool, float | None]:
        params: list[Any] = []
        where: list[str] = []
        labels = sorted(filter.labels.items())
        if labels:
            # The first label's index serves both the filter and the order.
            (key, value), rest = labels[0], labels[1:]
            order_created, order_id = "l.created_at", "l.session_id"
            source = "session_labels l JOIN sessions s ON s.id = l.session_id"
            where.append("l.key = ? AND l.value = ?")
            params += [_text(key), _text(value)]
            for key, value in rest:
                where.append(
                    "EXISTS (SELECT 1 FROM session_labels x WHERE x.session_id = s.id AND x.key = ? AND x.value = ?)"
                )
                params += [_text(key), _text(value)]
        else:
            order_created, order_id = "s.created_at", "s.id"
            source = "sessions s"
        if filter.agent is not None:
            where.append("s.agent = ?")
            params.append(_text(filter.agent))
        # The metadata for people is read from the record itself (no column, no index):
        # records written before it existed have none, which reads as untagged, unpinned.
        for tag in sorted(filter.tags):
            where.append("EXISTS (SELECT 1 FROM json_each(s.record, '$.tags') t WHERE t.value = ?)")
            params.append(_text(tag))
        if filter.pinned is not None:
            where.append("COALESCE(json_extract(s.record, '$.pinned'), 0) = ?")
            params.append(int(filter.pinned))
        # Sorting by updated_at: the cursor carries the value SQLite read, so the next
        # page compares it with the same parse of the same text.
        key = order_created if order == "created" else "json_extract(s.record, '$.updated_at')"
        if after is not None:
            where.append(f"({key}, {order_id}) < (?, ?)")
            params += list(after)
        sql = (
            f"SELECT s.record, {key} FROM {source}"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" ORDER BY {key} DESC, {order_id} DESC LIMIT ?"
        )
        rows = conn.execute(sql, [*params, limit + 1]).fetchall()
        last_key = float(rows[limit - 1][1]) if len(rows) > limit else None
        return [_record(row[0]) for row in rows[:limit]], len(rows) > limit, last_key

    @staticmethod
    def _delete(conn: sqlite3.Connection, session_id: str) -> bool:
        validate_session_id(session_id)
        with _transaction(conn, write=True):
            conn.execute("DELETE FROM events WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM session_labels WHERE session_id = ?", (session_id,))
            return conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0

    # -- async facade -----------------------------------------------------------------

    async def create(self, record: SessionRecord) -> None:
        await self._run(self._create, record)

    async def load(self, session_id: str) -> SessionRecord | None:
        return await self._run(self._load, session_id)

    async def save(self, record: SessionRecord, expected_revision: int) -> None:
        await self._run(self._save, record, expected_revision)

    async def append(
        self,
        session_id: str,
        events: Sequence[Event],
        expected_seq: int,
        *,
        incarnation: str | None = None,
        record: SessionRecord | None = None,
    ) -> None:
        await self._run(self._append, session_id, list(events), expected_seq, incarnation, record)

    async def read(self, session_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        rows = await self._run(self._read, session_id, after_seq, limit)
        if not rows:
            return []
        return await trio.to_thread.run_sync(_decode_events, rows, limiter=self._limiter)

    async def last_seq(self, session_id: str) -> int:
        return await self._run(self._last_seq, session_id)

    async def list(
        self,
        filter: SessionFilter,
        limit: int = 50,
        cursor: str | None = None,
        *,
        order: ListOrder = "created",
    ) -> Page:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if order == "created":
            after = _decode_cursor(cursor) if cursor is not None else None
        else:
            after = decode_cursor(cursor, order) if cursor is not None else None
        records, more, last_key = await self._run(self._list, filter, limit, after, order)
        next_cursor = None
        if more and order == "created":
            next_cursor = _encode_cursor(records[-1].created_at, records[-1].id)
        elif more and last_key is not None:
            next_cursor = encode_cursor(attrs.evolve(records[-1], updated_at=last_key), order)
        return Page(tuple(records), next_cursor)

    async def delete(self, session_id: str) -> bool:
        return await self._run(self._delete, session_id)

    async def aclose(self) -> None:
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        # A worker still running closes its own connection when it returns.
        if idle:
            await trio.to_thread.run_sync(_close_all, idle)


def _decode_events(rows: list[str]) -> list[Event]:
    with gc_paused(len(rows)):
        try:
            payloads = loads("[" + ",".join(rows) + "]")
        except ValueError as exc:
            raise StorageError("an event in the SQLite log is not valid JSON") from exc
        return [decode_event(p) for p in payloads]


def _close_all(connections: list[sqlite3.Connection]) -> None:
    for conn in connections:
        conn.close()
