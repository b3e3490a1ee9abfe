"""``watch``: appends announced through ``LISTEN``/``NOTIFY`` on a connection of its own.

Every append sends ``NOTIFY <channel>, '["<session id>", <last seq>]'`` in its own
transaction, so a notice is delivered exactly when its events are committed, in commit
order. The watcher:

1. connects, ``LISTEN``s, then reads where the watched sessions are (the ``after_seq``
   catch-up), in that order, so nothing commits unseen between the two;
2. waits for the socket on the trio loop (no thread is parked while nothing happens)
   and drains notices without blocking;
3. after a lost connection, reconnects with backoff, ``LISTEN``s again and catches up:
   for named sessions it reads their ``head_seq``; for every session it reads the
   sessions whose ``change_xid`` (the transaction that last moved them) is not older
   than the oldest transaction still running when it last looked, so an append that
   committed while it was away is found even if it started long before.

Per session a notice is passed on only if it is past the last one passed on, so catch-up
and late deliveries never make ``last_seq`` go back; 0 (a delete) resets it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import trio
from psycopg import sql

from harness_kernel.contracts import WatchNotice
from harness_kernel.errors import StorageError

__all__ = ["WATCH_APPLICATION", "Watch"]

_BUFFER = 256
WATCH_APPLICATION = "harness-kernel-watch"
"""The ``application_name`` of watch connections."""


class Watch:
    """One watch: its connection, what it has passed on, and the catch-up watermark."""

    def __init__(
        self,
        *,
        connect: Callable[[], psycopg.Connection],
        schema: str,
        channel: str,
        session_ids: frozenset[str] | None,
        after_seq: dict[str, int],
        limiter: trio.CapacityLimiter,
        base_delay: float,
        max_delay: float,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._ids = session_ids
        self._after = after_seq
        self._limiter = limiter
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._reported: dict[str, int] = {}
        self._watermark: str | None = None  # an xid8, as text
        self._listen = sql.SQL("LISTEN {}").format(sql.Identifier(channel)).as_bytes(None)
        s = sql.Identifier(schema)
        self._heads = sql.SQL("SELECT id, head_seq FROM {}.sessions WHERE id = ANY(%s)").format(s).as_bytes(None)
        self._changed = (
            sql.SQL(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text,"
                " (SELECT coalesce(json_agg(json_build_array(id, head_seq)), '[]')::text"
                "  FROM {}.sessions WHERE change_xid >= %s::xid8)"
            )
            .format(s)
            .as_bytes(None)
        )
        self._xmin = b"SELECT pg_snapshot_xmin(pg_current_snapshot())::text"

    @asynccontextmanager
    async def open(self) -> AsyncIterator[trio.MemoryReceiveChannel[WatchNotice]]:
        send, receive = trio.open_memory_channel[WatchNotice](_BUFFER)
        conn, heads = await self._subscribe_in_thread(True)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, conn, heads, send)
                async with receive:
                    yield receive
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self._thread(self._close_current)

    # -- on the trio loop ---------------------------------------------------------------

    async def _pump(
        self, conn: psycopg.Connection, heads: list[tuple[str, int, bool]], send: trio.MemorySendChannel[WatchNotice]
    ) -> None:
        async with send:
            try:
                while True:
                    for session_id, seq, caught_up in heads:
                        for notice in self._accept(session_id, seq, caught_up):
                            await send.send(notice)
                    heads = []
                    try:
                        for session_id, seq in self._drain(conn):
                            for notice in self._accept(session_id, seq, False):
                                await send.send(notice)
                        await trio.lowlevel.wait_readable(conn.pgconn.socket)
                        continue
                    except (psycopg.Error, OSError, ValueError):
                        pass  # the connection is gone: below
                    conn, heads = await self._reconnect()
            except trio.BrokenResourceError:
                return  # the consumer left

    def _accept(self, session_id: str, seq: int, caught_up: bool) -> list[WatchNotice]:
        if self._ids is not None and session_id not in self._ids:
            return []
        have = self._reported.get(session_id)
        if seq == 0:
            if have == 0 and caught_up:
                return []
            self._reported[session_id] = 0
            return [WatchNotice(session_id, 0)]
        if have is None or seq > have:
            self._reported[session_id] = seq
            return [WatchNotice(session_id, seq)]
        if caught_up and seq < have:
            # Deleted and created again while the connection was down.
            self._reported[session_id] = seq
            return [WatchNotice(session_id, 0), WatchNotice(session_id, seq)]
        return []

    async def _reconnect(self) -> tuple[psycopg.Connection, list[tuple[str, int, bool]]]:
        delay = self._base_delay
        while True:
            await self._thread(self._close_current)
            try:
                return await self._subscribe_in_thread(False)
            except StorageError:
                await trio.sleep(delay)
                delay = min(delay * 2, self._max_delay)

    async def _subscribe_in_thread(self, first: bool) -> tuple[psycopg.Connection, list[tuple[str, int, bool]]]:
        return await trio.to_thread.run_sync(self._subscribe, first, limiter=self._limiter)

    async def _thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    # -- in worker threads --------------------------------------------------------------

    _conn: psycopg.Connection | None = None

    def _close_current(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _subscribe(self, first: bool) -> tuple[psycopg.Connection, list[tuple[str, int, bool]]]:
        """Connect, LISTEN, then read where things are; the ``bool`` of each head says it
        comes from a catch-up (not from a notice)."""
        try:
            conn = self._connect()
        except psycopg.Error as exc:
            raise StorageError(f"watch cannot connect to PostgreSQL: {exc}") from exc
        try:
            # Named, so an operator sees the watches in pg_stat_activity.
            conn.execute("SELECT set_config('application_name', %s, false)", (WATCH_APPLICATION,))
            conn.execute(self._listen)
            heads: list[tuple[str, int, bool]] = []
            if self._ids is not None:
                found: dict[str, int] = dict(conn.execute(self._heads, (sorted(self._ids),)).fetchall())
                for session_id in sorted(self._ids):
                    head = int(found.get(session_id, 0))
                    if first and session_id not in self._after:
                        self._reported[session_id] = head  # announce only what comes next
                    else:
                        self._reported.setdefault(session_id, self._after.get(session_id, 0))
                        heads.append((session_id, head, True))
            else:
                if self._watermark is None:
                    row = conn.execute(self._xmin).fetchone()
                    assert row is not None
                    self._watermark = row[0]
                    if self._after:
                        after: dict[str, int] = dict(conn.execute(self._heads, (sorted(self._after),)).fetchall())
                        for session_id, seen in self._after.items():
                            self._reported[session_id] = seen
                            heads.append((session_id, int(after.get(session_id, 0)), True))
                else:
                    row = conn.execute(self._changed, (self._watermark,)).fetchone()
                    assert row is not None
                    self._watermark = row[0]
                    heads = [(str(s), int(n), True) for s, n in json.loads(row[1])]
        except psycopg.Error as exc:
            conn.close()
            raise StorageError(f"watch lost its PostgreSQL connection: {exc}") from exc
        self._conn = conn
        return conn, heads

    def _drain(self, conn: psycopg.Connection) -> list[tuple[str, int]]:
        """The notices already received, without waiting (non-blocking: safe on the loop)."""
        out = []
        for notify in conn.notifies(timeout=0.0):
            session_id, seq = json.loads(notify.payload)
            out.append((str(session_id), int(seq)))
        if conn.broken or conn.closed:
            raise psycopg.OperationalError("the watch connection is broken")
        return out
