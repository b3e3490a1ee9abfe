"""Runs the service drives, and their events as server-sent events.

A run started over HTTP belongs to the service, not to the connection: it runs in
the service's nursery (``Runs``) and everything it streams is kept in a ``RunFeed``
while it lives. A client that goes away does not abort it (``POST .../abort`` does);
it reconnects to ``GET .../runs/{run_id}/events`` with ``Last-Event-ID``.

Every durable event goes out with ``id: <seq>``. A follower (``follow_run``) first
subscribes to the store, then reads the run's events back from storage and sends
those after ``Last-Event-ID``, then the live ones, skipping any seq it already sent:
the subscription began before the read, so nothing falls between them. Stream-only
items (text and tool-call deltas, display states) carry no id and ``"stream_only":
true``; a follower sends a delta only when it is caught up to where the delta
happened. Runs another process drives are followed by reading storage every
``POLL_INTERVAL`` seconds.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import structlog
import trio

from harness_kernel import Event, Message, RunResult, Session, SessionStore
from harness_kernel.codec import converter, encode_event
from harness_kernel.events import RunFinished

__all__ = ["POLL_INTERVAL", "RunFeed", "Runs", "event_data", "follow_run", "sse", "stream_data"]

POLL_INTERVAL: Final = 1.0
HEARTBEAT: Final = 15.0

log = structlog.get_logger("harness_kernel.server")


def event_data(event: Event) -> dict[str, Any]:
    """A durable event as JSON data (the persisted form: seq, type, at, run_id, data)."""
    return encode_event(event)


def stream_data(item: Any) -> dict[str, Any]:
    """A stream-only item (delta, display state) as JSON data, marked as such."""
    data: dict[str, Any] = converter.unstructure(item)
    return {"type": item.type, "stream_only": True, **data}


def sse(event: str, data: Any, seq: int | None = None) -> bytes:
    """One server-sent event."""
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class RunFeed:
    """What one run the service drives produced so far, each item with the seq of the
    last durable event before it."""

    def __init__(self, session_id: str, run_id: str) -> None:
        self.session_id = session_id
        self.run_id = run_id
        self.items: list[tuple[int, Any]] = []
        self.result: RunResult | None = None
        self.done = trio.Event()
        self._changed = trio.Event()
        self._last_seq = 0

    def push(self, item: Any) -> None:
        if isinstance(item, Event):
            self._last_seq = item.seq
        self.items.append((self._last_seq, item))
        self._changed.set()
        self._changed = trio.Event()

    def finish(self, result: RunResult | None) -> None:
        self.result = result
        self.done.set()
        self._changed.set()

    async def items_from(self, index: int) -> AsyncIterator[tuple[int, Any]]:
        """Every item from ``index`` on, waiting for new ones until the run ended."""
        while True:
            while index < len(self.items):
                yield self.items[index]
                index += 1
            if self.done.is_set():
                return
            await self._changed.wait()


class Runs:
    """The runs this service process drives, in the service's nursery."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._feeds: dict[str, RunFeed] = {}
        self._stops: set[trio.CancelScope] = set()

    def feed(self, run_id: str) -> RunFeed | None:
        return self._feeds.get(run_id)

    async def start(self, session: Session, message: str | Message, model: str | None) -> RunFeed:
        """Start a run on ``session``; its feed once the run began (errors raise here)."""
        feed: RunFeed = await self._nursery.start(self._drive, session, message, model)
        return feed

    async def _drive(
        self,
        session: Session,
        message: str | Message,
        model: str | None,
        task_status: trio.TaskStatus[RunFeed] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        feed: RunFeed | None = None
        try:
            async with session.stream(message, model=model) as events:
                feed = RunFeed(session.id, events.run_id)
                self._feeds[feed.run_id] = feed
                task_status.started(feed)
                # Cancelling this scope (shutdown) leaves the stream block normally,
                # which aborts the run and records its partial output.
                with trio.CancelScope() as stop:
                    self._stops.add(stop)
                    try:
                        async for item in events:
                            feed.push(item)
                    finally:
                        self._stops.discard(stop)
            feed.finish(events.result)
        except Exception as exc:
            if feed is None:
                raise  # before the run began: the request that started it reports it
            log.error("run_stream_failed", run_id=feed.run_id, error=f"{type(exc).__name__}: {exc}")
            feed.finish(None)
        finally:
            if feed is not None:
                self._feeds.pop(feed.run_id, None)

    def stop_all(self) -> None:
        """Abort every run this process drives (their partial output is recorded)."""
        for scope in list(self._stops):
            scope.cancel()


class _Sent:
    """How far a follower got: the last seq sent, and whether the run finished."""

    def __init__(self, last: int) -> None:
        self.last = last
        self.finished = False

    def done(self) -> bool:
        return self.finished


async def follow_run(
    store: SessionStore,
    runs: Runs,
    session: Session,
    run_id: str,
    after: int,
    send: Callable[[bytes], Awaitable[None]],
    reopen: Callable[[], Awaitable[Session]],
) -> None:
    """Send the run's events after seq ``after``, then follow it until it finishes.

    ``reopen`` loads the session again when the one followed was unloaded meanwhile
    (another request reloaded it, say)."""
    sent = _Sent(after)

    async def durable(event: Event) -> None:
        if event.seq <= sent.last or event.run_id != run_id:
            return
        sent.last = event.seq
        await send(sse(event.type, event_data(event), event.seq))
        if isinstance(event.payload, RunFinished):
            sent.finished = True

    async with store.subscribe(display=False) as subscription:
        for event in await session.run_events(run_id):
            await durable(event)
        if sent.done():
            return
        incoming, outgoing = trio.open_memory_channel[Any](math.inf)

        async def from_store() -> None:
            async for item in subscription:
                if item.kind == "event" and item.session_id == session.id:
                    incoming.send_nowait(item.event)

        async def from_feed(feed: RunFeed) -> None:
            async for position, item in feed.items_from(0):
                incoming.send_nowait(item if isinstance(item, Event) else (position, item))

        async def from_storage() -> None:
            followed = session
            while True:
                await trio.sleep(POLL_INTERVAL)
                try:
                    if followed.closed:
                        followed = await reopen()
                    for event in await followed.run_events(run_id):
                        incoming.send_nowait(event)
                except Exception as exc:  # the next poll tries again
                    log.debug("run_poll_failed", run_id=run_id, error=type(exc).__name__)

        async def heartbeat() -> None:
            while True:
                await trio.sleep(HEARTBEAT)
                incoming.send_nowait(None)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(from_store)
            nursery.start_soon(from_storage)
            nursery.start_soon(heartbeat)
            feed = runs.feed(run_id)
            if feed is not None:
                nursery.start_soon(from_feed, feed)
            async for item in outgoing:
                if item is None:
                    await send(b": keep-alive\n\n")
                elif isinstance(item, Event):
                    await durable(item)
                    if sent.done():
                        break
                else:
                    position, delta = item
                    if position == sent.last:
                        await send(sse(delta.type, stream_data(delta)))
            nursery.cancel_scope.cancel()
