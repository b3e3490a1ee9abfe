"""``PostgresStorage``: sessions, labels and event logs in one PostgreSQL schema.

Every call runs psycopg's synchronous API in a trio worker thread holding a connection
from a ``psycopg_pool.ConnectionPool``; the pool's size and the thread limiter's are the
same, so a running worker never waits for a connection another worker holds. Every
method is one SQL statement in autocommit (one round trip, one snapshot, atomic), except
``delete``, which must see the events an append committed while it waited, and
``append(..., record=)``, whose events and record save are one transaction.

A lost connection (server restart, failover, a killed backend) is retried with backoff.
Reads are retried as they are; writes are conditional (on ``head_seq``, ``revision`` or
the id being free), so a retry cannot write twice: when the retry finds the condition
already consumed, the storage looks whether its own first attempt landed (the same
events at those seqs, the same record) and reports success, ``Conflict`` when another
writer's data is there, and ``StorageError`` when it cannot tell.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, TypeVar

import attrs
import psycopg
import trio
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

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
    WatchNotice,
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

from ._names import channel_name, valid_schema
from ._schema import migrate
from ._watch import Watch

__all__ = ["PostgresStorage", "channel_name", "valid_schema"]

T = TypeVar("T")
_CURSOR_TAG = "pg1"
# Connection-level failures: the statement may not have run, or its outcome is unknown.
_LOST_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})


class _Lost(Exception):
    """The connection failed under a call; the call may be retried."""


def _is_lost(exc: BaseException) -> bool:
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, pg_errors.QueryCanceled):  # the statement timeout: not a lost connection
        return False
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate
        return state is None or state.startswith("08") or state in _LOST_STATES
    return isinstance(exc, psycopg.InterfaceError)


def _text(value: str) -> str:
    """``value`` as PostgreSQL text holds it: a lone surrogate becomes its backslash
    escape (JSON written this way reads back unchanged)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode()
    return value


def _plain(value: str) -> str:
    """A label or agent name as an indexable text: one-to-one, without NUL (which
    PostgreSQL text refuses) or lone surrogates."""
    return _text(json.dumps(value, ensure_ascii=False)[1:-1])


def _json(payload: Any) -> str:
    return _text(dumps(payload))


def _record(text: str) -> SessionRecord:
    try:
        payload = loads(text)
    except ValueError as exc:
        raise StorageError("a session record in the PostgreSQL schema is not valid JSON") from exc
    return decode_record(payload)


def _events(rows: list[str]) -> list[Event]:
    with gc_paused(len(rows)):
        try:
            payloads = loads("[" + ",".join(rows) + "]")
        except ValueError as exc:
            raise StorageError("an event in the PostgreSQL log is not valid JSON") from exc
        return [decode_event(p) for p in payloads]


def _encode_cursor(created_at: float, session_id: str) -> str:
    import base64

    raw = json.dumps([_CURSOR_TAG, created_at, session_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    import base64
    import binascii

    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        tag, created_at, session_id = json.loads(raw)
        if tag != _CURSOR_TAG or not isinstance(session_id, str) or isinstance(created_at, bool):
            raise ValueError
        return float(created_at), session_id
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid cursor {cursor!r:.80}: pass back a next_cursor from this storage") from exc


class _Sql:
    """The statements, with the schema name quoted into them once."""

    def __init__(self, schema: str) -> None:
        def q(template: str) -> bytes:
            return sql.SQL(template).format(s=sql.Identifier(schema)).as_bytes(None)

        self.create = q(
            """
            WITH made AS (
                INSERT INTO {s}.sessions (id, agent, created_at, labels, revision, head_seq, incarnation, record)
                VALUES (%(id)s, %(agent)s, %(created)s, %(labels)s, %(revision)s, 0, %(inc)s, %(record)s)
                ON CONFLICT (id) DO NOTHING
                RETURNING id
            ), labelled AS (
                INSERT INTO {s}.session_labels (session_id, key, value, created_at)
                SELECT made.id, u.k, u.v, %(created)s FROM made, unnest(%(keys)s::text[], %(values)s::text[]) AS u(k, v)
                RETURNING 1
            )
            SELECT count(*), (SELECT count(*) FROM labelled) FROM made
            """
        )
        self.load = q("SELECT record FROM {s}.sessions WHERE id = %s")
        self.save = q(
            """
            WITH old AS (
                SELECT labels, created_at FROM {s}.sessions WHERE id = %(id)s
            ), moved AS (
                UPDATE {s}.sessions
                SET agent = %(agent)s, created_at = %(created)s, labels = %(labels)s,
                    revision = %(revision)s, record = %(record)s
                WHERE id = %(id)s AND revision = %(expected)s
                  AND (%(inc)s = '' OR incarnation = '' OR incarnation = %(inc)s)
                RETURNING id
            ), relabel AS (
                SELECT 1 FROM moved, old
                WHERE old.labels IS DISTINCT FROM %(labels)s OR old.created_at IS DISTINCT FROM %(created)s
            ), dropped AS (
                DELETE FROM {s}.session_labels
                WHERE session_id = %(id)s AND EXISTS (SELECT 1 FROM relabel) AND NOT (key = ANY(%(keys)s::text[]))
                RETURNING 1
            ), upserted AS (
                INSERT INTO {s}.session_labels (session_id, key, value, created_at)
                SELECT %(id)s, u.k, u.v, %(created)s FROM unnest(%(keys)s::text[], %(values)s::text[]) AS u(k, v)
                WHERE EXISTS (SELECT 1 FROM relabel)
                ON CONFLICT (session_id, key) DO UPDATE SET value = EXCLUDED.value, created_at = EXCLUDED.created_at
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM dropped), (SELECT count(*) FROM upserted)
            """
        )
        self.save_state = q("SELECT revision, incarnation, record FROM {s}.sessions WHERE id = %s")
        # The CAS, the events and the notice in one statement: one transaction, one round trip.
        self.append = q(
            """
            WITH moved AS (
                UPDATE {s}.sessions SET head_seq = %(last)s, change_xid = pg_current_xact_id()
                WHERE id = %(id)s AND head_seq = %(expected)s
                  AND (%(inc)s = '' OR incarnation = '' OR incarnation = %(inc)s)
                RETURNING id
            ), written AS (
                INSERT INTO {s}.events (session_id, seq, event)
                SELECT moved.id, u.seq, u.event FROM moved, unnest(%(seqs)s::bigint[], %(events)s::text[]) AS u(seq, event)
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM written), pg_notify(%(channel)s, json_build_array(moved.id, %(last)s::bigint)::text)
            FROM moved
            """
        )
        self.head = q("SELECT head_seq, incarnation FROM {s}.sessions WHERE id = %s")
        self.window = q("SELECT event FROM {s}.events WHERE session_id = %s AND seq > %s AND seq <= %s ORDER BY seq")
        self.read = q(
            """
            SELECT e.event FROM {s}.sessions s
            LEFT JOIN LATERAL (
                SELECT seq, event FROM {s}.events WHERE session_id = s.id AND seq > %(after)s ORDER BY seq LIMIT %(limit)s
            ) e ON true
            WHERE s.id = %(id)s ORDER BY e.seq
            """
        )
        self.last_seq = q("SELECT head_seq FROM {s}.sessions WHERE id = %s")
        self.delete_session = q("DELETE FROM {s}.sessions WHERE id = %s RETURNING id")
        self.delete_events = q("DELETE FROM {s}.events WHERE session_id = %s")
        self.delete_labels = q("DELETE FROM {s}.session_labels WHERE session_id = %s")
        self.notify = q("SELECT pg_notify(%s, json_build_array(%s::text, 0)::text)")
        self.schema = schema

    def listing(
        self, filter: SessionFilter, after: tuple[float, str] | None, limit: int, order: ListOrder = "created"
    ) -> tuple[bytes, list[Any]]:
        params: list[Any] = []
        where: list[str] = []
        labels = sorted(filter.labels.items())
        if labels:
            # The first label's index serves both the filter and the order.
            (key, value), rest = labels[0], labels[1:]
            order_created, order_id = "l.created_at", "l.session_id"
            source = "{s}.session_labels l JOIN {s}.sessions s ON s.id = l.session_id"
            where.append("l.key = %s AND l.value = %s")
            params += [_plain(key), _plain(value)]
            for key, value in rest:
                where.append(
                    "EXISTS (SELECT 1 FROM {s}.session_labels x WHERE x.session_id = s.id AND x.key = %s AND x.value = %s)"
                )
                params += [_plain(key), _plain(value)]
        else:
            order_created, order_id = "s.created_at", "s.id"
            source = "{s}.sessions s"
        if filter.agent is not None:
            where.append("s.agent = %s")
            params.append(_plain(filter.agent))
        # The metadata for people is read from the record itself (no column, no index):
        # records written before it existed have none, which reads as untagged, unpinned.
        for tag in sorted(filter.tags):
            where.append("EXISTS (SELECT 1 FROM json_array_elements_text(s.record::json -> 'tags') t WHERE t = %s)")
            params.append(_plain(tag))
        if filter.pinned is not None:
            where.append("COALESCE((s.record::json ->> 'pinned')::boolean, false) = %s")
            params.append(filter.pinned)
        # Sorting by updated_at: the cursor carries the value the server read, so the
        # next page compares it with the same parse of the same text.
        key = order_created if order == "created" else "(s.record::json ->> 'updated_at')::float8"
        if after is not None:
            where.append(f"({key}, {order_id}) < (%s, %s)")
            params += list(after)
        template = (
            f"SELECT s.record, {key} FROM {source}"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" ORDER BY {key} DESC, {order_id} DESC LIMIT %s"
        )
        statement = sql.SQL(template).format(s=sql.Identifier(self.schema)).as_bytes(None)
        return statement, [*params, limit + 1]


def _label_arrays(record: SessionRecord) -> tuple[list[str], list[str]]:
    items = sorted(record.labels.items())
    return [_plain(k) for k, _ in items], [_plain(v) for _, v in items]


class PostgresStorage(SessionStorage):
    """Session storage in one PostgreSQL schema, shared by any number of hosts.

    ``append`` and ``save`` compare and write in one statement (a row lock on the
    session serialises writers), so their compare-and-swap holds across processes and
    machines; ``watch`` announces appends through ``LISTEN``/``NOTIFY``.
    """

    capabilities: ClassVar[StorageCapabilities] = StorageCapabilities(
        cross_process_fencing=True, durable=True, watch=True, append_record=True
    )

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "harness_kernel",
        pool_size: int = 4,
        statement_timeout_ms: int = 30_000,
        connect_timeout_s: float = 10.0,
        retry_attempts: int = 8,
        retry_base_delay_ms: int = 50,
        retry_max_delay_ms: int = 2000,
        max_watches: int = 16,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if retry_attempts < 1:
            raise ValueError("retry_attempts must be at least 1")
        self.dsn = dsn
        self.schema = valid_schema(schema)
        self.channel = channel_name(schema)
        self.pool_size = pool_size
        self._statement_timeout_ms = int(statement_timeout_ms)
        self._connect_timeout = connect_timeout_s
        self._attempts = retry_attempts
        self._base_delay = retry_base_delay_ms / 1000
        self._max_delay = retry_max_delay_ms / 1000
        self._sql = _Sql(self.schema)
        self._limiter = trio.CapacityLimiter(pool_size)
        self._watch_limiter = trio.CapacityLimiter(max_watches)
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._migrated = False
        self._closed = False

    # -- connections ------------------------------------------------------------------

    def connect(self) -> psycopg.Connection:
        """A new autocommit connection with this storage's settings (not from the pool):
        for ``watch``, migrations and tests."""
        conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=max(1, round(self._connect_timeout)))
        self._configure(conn)
        return conn

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{self._statement_timeout_ms}ms",))

    def _get_pool(self) -> ConnectionPool:
        with self._lock:
            if self._closed:
                raise StorageError("the PostgreSQL storage is closed")
            if self._pool is None:
                pool = ConnectionPool(
                    self.dsn,
                    min_size=1,
                    max_size=self.pool_size,
                    kwargs={"autocommit": True, "connect_timeout": max(1, round(self._connect_timeout))},
                    configure=self._configure,
                    timeout=self._connect_timeout,
                    name="harness-kernel-postgres",
                    open=False,
                )
                pool.open(wait=False)
                self._pool = pool
            return self._pool

    def _call(self, fn: Callable[..., T], retried: bool, args: tuple[Any, ...]) -> T:
        pool = self._get_pool()
        try:
            with pool.connection() as conn:
                if not self._migrated:
                    with self._lock:
                        if not self._migrated:
                            migrate(conn, self.schema)
                            self._migrated = True
                return fn(self._sql, conn, retried, *args)
        except (psycopg.Error, PoolTimeout) as exc:
            if _is_lost(exc):
                pool.check()  # drop the other idle connections the same event broke
                raise _Lost(str(exc)) from exc
            if isinstance(exc, pg_errors.QueryCanceled):
                raise StorageError(
                    f"a PostgreSQL statement ran past statement_timeout ({self._statement_timeout_ms} ms)"
                ) from exc
            raise StorageError(f"PostgreSQL failed: {exc}") from exc

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        delay = self._base_delay
        for attempt in range(1, self._attempts + 1):
            if self._closed:
                raise StorageError("the PostgreSQL storage is closed")
            try:
                return await trio.to_thread.run_sync(
                    functools.partial(self._call, fn, attempt > 1, args), limiter=self._limiter
                )
            except _Lost as lost:
                if attempt == self._attempts:
                    raise StorageError(
                        f"lost the PostgreSQL connection {attempt} times in a row: {lost}"
                    ) from lost.__cause__
            await trio.sleep(delay)
            delay = min(delay * 2, self._max_delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the contract, one blocking function per method --------------------------------

    @staticmethod
    def _create(q: _Sql, conn: psycopg.Connection, retried: bool, record: SessionRecord) -> None:
        keys, values = _label_arrays(record)
        params = {
            "id": record.id, "agent": _plain(record.agent), "created": record.created_at,
            "labels": _json(dict(record.labels)), "revision": record.revision,
            "inc": _text(record.incarnation), "record": _json(encode_record(record)),
            "keys": keys, "values": values,
        }
        row = conn.execute(q.create, params).fetchone()
        if row is not None and row[0] == 1:
            return
        if retried:
            stored = conn.execute(q.load, (record.id,)).fetchone()
            if stored is not None and stored[0] == params["record"]:
                return  # the first attempt landed before its connection was lost
            raise StorageError(
                f"lost the connection while creating session '{record.id}'; it exists now, "
                "maybe created by that attempt, maybe by another writer"
            )
        raise SessionExists(f"session '{record.id}' already exists")

    @staticmethod
    def _load(q: _Sql, conn: psycopg.Connection, retried: bool, session_id: str) -> SessionRecord | None:
        row = conn.execute(q.load, (session_id,)).fetchone()
        return _record(row[0]) if row else None

    @staticmethod
    def _save(q: _Sql, conn: psycopg.Connection, retried: bool, record: SessionRecord, expected: int) -> None:
        keys, values = _label_arrays(record)
        encoded = _json(encode_record(record))
        params = {
            "id": record.id, "agent": _plain(record.agent), "created": record.created_at,
            "labels": _json(dict(record.labels)), "revision": record.revision, "record": encoded,
            "expected": expected, "inc": _text(record.incarnation), "keys": keys, "values": values,
        }
        row = conn.execute(q.save, params).fetchone()
        if row is not None and row[0] == 1:
            return
        state = conn.execute(q.save_state, (record.id,)).fetchone()
        if state is None:
            raise SessionNotFound(f"session '{record.id}' not found")
        revision, incarnation, stored = state
        if retried and revision == record.revision and stored == encoded:
            return  # the first attempt landed before its connection was lost
        check_incarnation(record.id, incarnation, record.incarnation)
        if retried and revision > expected:
            raise StorageError(
                f"lost the connection while saving session '{record.id}'; it is now at revision "
                f"{revision}: that attempt may have landed and been overwritten since"
            )
        raise Conflict(f"session '{record.id}' is at revision {revision}, not {expected}")

    @staticmethod
    def _append(
        q: _Sql, conn: psycopg.Connection, retried: bool, session_id: str, events: Sequence[Event],
        expected_seq: int, incarnation: str | None, channel: str, record: SessionRecord | None = None,
    ) -> None:
        if record is None:
            PostgresStorage._append_events(q, conn, retried, session_id, events, expected_seq, incarnation, channel)
            return
        # The events and the record in one transaction (the notice goes out at its commit).
        with conn.transaction():
            if PostgresStorage._append_events(q, conn, retried, session_id, events, expected_seq, incarnation, channel):
                PostgresStorage._save(q, conn, False, record, record.revision - 1)

    @staticmethod
    def _append_events(
        q: _Sql, conn: psycopg.Connection, retried: bool, session_id: str, events: Sequence[Event],
        expected_seq: int, incarnation: str | None, channel: str,
    ) -> bool:
        """The events' compare-and-swap append; False if a first attempt had landed them."""
        encoded = [_json(encode_event(e)) for e in events]
        last = expected_seq + len(events)
        params = {
            "id": session_id, "expected": expected_seq, "last": last, "inc": _text(incarnation or ""),
            "seqs": [e.seq for e in events], "events": encoded, "channel": channel,
        }
        try:
            row = conn.execute(q.append, params).fetchone()
        except pg_errors.UniqueViolation:
            # head_seq and the log disagree (a row lock makes this unreachable otherwise):
            # the key is the last word, and a duplicate key is a conflict, never a fork.
            raise Conflict(f"session '{session_id}' already has an event at one of seqs {expected_seq + 1}..{last}") from None
        if row is not None:
            return True
        state = conn.execute(q.head, (session_id,)).fetchone()
        if state is None:
            raise SessionNotFound(f"session '{session_id}' not found")
        head, stored_incarnation = state
        check_incarnation(session_id, stored_incarnation, incarnation)
        if retried and head >= last:
            window = [r[0] for r in conn.execute(q.window, (session_id, expected_seq, last)).fetchall()]
            if window == encoded:
                return False  # the first attempt landed before its connection was lost
        raise Conflict(f"session '{session_id}' is at seq {head}, not {expected_seq}")

    @staticmethod
    def _read(
        q: _Sql, conn: psycopg.Connection, retried: bool, session_id: str, after_seq: int, limit: int | None
    ) -> list[Event]:
        rows = conn.execute(
            q.read, {"id": session_id, "after": after_seq, "limit": None if limit is None else max(limit, 0)}
        ).fetchall()
        if not rows:
            raise SessionNotFound(f"session '{session_id}' not found")
        texts = [r[0] for r in rows if r[0] is not None]
        return _events(texts) if texts else []

    @staticmethod
    def _last_seq(q: _Sql, conn: psycopg.Connection, retried: bool, session_id: str) -> int:
        row = conn.execute(q.last_seq, (session_id,)).fetchone()
        if row is None:
            raise SessionNotFound(f"session '{session_id}' not found")
        return int(row[0])

    @staticmethod
    def _list(
        q: _Sql, conn: psycopg.Connection, retried: bool, filter: SessionFilter, limit: int,
        after: tuple[float, str] | None, order: ListOrder = "created",
    ) -> tuple[list[SessionRecord], bool, float | None]:
        statement, params = q.listing(filter, after, limit, order)
        rows = conn.execute(statement, params).fetchall()
        last_key = float(rows[limit - 1][1]) if len(rows) > limit else None
        return [_record(row[0]) for row in rows[:limit]], len(rows) > limit, last_key

    @staticmethod
    def _delete(q: _Sql, conn: psycopg.Connection, retried: bool, session_id: str, channel: str) -> bool:
        # Two statements: the events are deleted after the row lock is ours, in a fresh
        # snapshot that sees what an append holding the lock committed meanwhile.
        with conn.transaction():
            gone = conn.execute(q.delete_session, (session_id,)).fetchone() is not None
            if gone:
                conn.execute(q.delete_events, (session_id,))
                conn.execute(q.delete_labels, (session_id,))
                conn.execute(q.notify, (channel, session_id))
        return gone

    # -- async facade -----------------------------------------------------------------

    async def create(self, record: SessionRecord) -> None:
        validate_session_id(record.id)
        await self._run(self._create, record)

    async def load(self, session_id: str) -> SessionRecord | None:
        validate_session_id(session_id)
        return await self._run(self._load, session_id)

    async def save(self, record: SessionRecord, expected_revision: int) -> None:
        validate_session_id(record.id)
        if record.revision != expected_revision + 1:
            raise ValueError("record.revision must be expected_revision + 1")
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
        validate_session_id(session_id)
        events = list(events)
        check_batch(events, expected_seq)
        if record is not None:
            check_append_record(session_id, record)
        await self._run(self._append, session_id, events, expected_seq, incarnation, self.channel, record)

    async def read(self, session_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        validate_session_id(session_id)
        return await self._run(self._read, session_id, after_seq, limit)

    async def last_seq(self, session_id: str) -> int:
        validate_session_id(session_id)
        return await self._run(self._last_seq, session_id)

    async def list(
        self, filter: SessionFilter, limit: int = 50, cursor: str | None = None, *, order: ListOrder = "created"
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
        """Remove the session; ``True`` if it existed. Retried after a lost connection,
        a delete whose first attempt landed reports ``False``."""
        validate_session_id(session_id)
        return await self._run(self._delete, session_id, self.channel)

    def watch(
        self, session_ids: Collection[str] | None = None, *, after_seq: Mapping[str, int] | None = None
    ) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[WatchNotice]]:
        """Notices of appends by any host, from ``LISTEN`` on a connection of its own.

        See ``SessionStorage.watch``. Each watch holds one connection to the server
        while it is open (not one of the pool's).
        """
        if self._closed:
            raise StorageError("the PostgreSQL storage is closed")
        if session_ids is not None:
            session_ids = frozenset(validate_session_id(s) for s in session_ids)
        return Watch(
            connect=self.connect,
            schema=self.schema,
            channel=self.channel,
            session_ids=session_ids,
            after_seq=dict(after_seq or {}),
            limiter=self._watch_limiter,
            base_delay=self._base_delay,
            max_delay=self._max_delay,
        ).open()

    async def aclose(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            # A worker still running returns its connection to a closed pool, which closes it.
            await trio.to_thread.run_sync(functools.partial(pool.close, timeout=5.0))
