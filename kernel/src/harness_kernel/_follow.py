"""A store following other hosts' appends, where the storage announces them (``watch``).

A loaded, idle session that another host moved on catches up at once; the events of
sessions not loaded here reach the store's subscribers. Nothing here runs for a storage
without ``capabilities.watch``.
"""

from __future__ import annotations

import trio

from ._records import Event
from ._runtime import Runtime, StoreEvent
from .contracts import WatchNotice
from .errors import HarnessError, SessionNotFound, SessionReplaced

__all__ = ["follow_other_hosts"]


async def follow_other_hosts(
    runtime: Runtime, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Where the storage announces appends: a loaded session that another host moved on
    catches up at once, and the events of sessions not loaded here reach subscribers,
    so ``subscribe()`` shows every host's events."""
    hub = runtime.hub
    published: dict[str, int] = {}  # the last seq subscribers got, per session
    loaded: set[str] = set()  # sessions loaded here at their last notice
    started = False
    try:
        async with runtime.storage.watch(None) as notices:
            task_status.started()  # the store opens once every later append is heard
            started = True
            hub.listening = True
            async for notice in notices:
                hub.announce(notice)
                sid = notice.session_id
                entry = hub.sessions.get(sid)
                if entry is None:
                    loaded.discard(sid)
                    await _publish_remote(runtime, published, notice)
                    continue
                log = entry.runner.log
                seen = published.get(sid)
                if (
                    sid not in loaded
                    and seen is not None
                    and seen < log.last_seq
                    and hub.has_subscribers
                ):  # loaded here since the last notice: subscribers get what it loaded
                    await _publish_events(runtime, sid, seen, log.last_seq)
                loaded.add(sid)
                try:
                    if entry.runner.active is None and (
                        not notice.last_seq or notice.last_seq > log.last_seq
                    ):  # not this store's own append, nor its run's (whose watcher reads it)
                        await log.sync()
                except SessionReplaced:
                    await entry.runner.unload("replaced")
                except HarnessError as exc:
                    runtime.log.warning("watch_catch_up_failed", session_id=sid, error=str(exc))
                published[sid] = log.last_seq
    except (NotImplementedError, HarnessError) as exc:
        hub.listening = False
        runtime.log.warning("watch_unavailable", error=str(exc) or type(exc).__name__)
        if not started:
            task_status.started()


FIRST_SIGHT_WINDOW = 64
"""Events read back for a session first announced here, to find the append announced."""


async def _publish_remote(runtime: Runtime, published: dict[str, int], notice: WatchNotice) -> None:
    """Hand subscribers the events another host appended to a session not loaded here.

    For a session this store has followed, that is every event after the last one it
    published. For one first announced now, it is the append announced (the trailing
    events that share the last one's timestamp: one append writes them together).
    """
    hub, sid = runtime.hub, notice.session_id
    if notice.last_seq == 0:  # deleted: a session created again starts from seq 1
        published.pop(sid, None)
        return
    seen = published.get(sid)
    if seen is not None and notice.last_seq <= seen:
        return
    if len(published) >= MAX_FOLLOWED and seen is None:
        published.pop(next(iter(published)))
    if not hub.has_subscribers:
        published[sid] = notice.last_seq
        return
    after = seen if seen is not None else max(0, notice.last_seq - FIRST_SIGHT_WINDOW)
    announced = notice.last_seq if seen is None else None
    events = await _publish_events(runtime, sid, after, None, announced=announced)
    if events is None:
        published.pop(sid, None)
    elif events:
        published[sid] = max(notice.last_seq, events[-1].seq)


async def _publish_events(
    runtime: Runtime, sid: str, after: int, upto: int | None, *, announced: int | None = None
) -> list[Event] | None:
    """Publish the stored events of ``sid`` after ``after`` (up to ``upto``). For a
    session first seen, from the append ``announced`` on: the events up to that seq
    that share its timestamp (one append writes them together). ``None`` when the
    session is gone."""
    try:
        events = await runtime.storage.read(
            sid, after_seq=after, limit=None if upto is None else upto - after
        )
    except SessionNotFound:
        return None
    except HarnessError as exc:
        runtime.log.warning("watch_read_failed", session_id=sid, error=str(exc))
        return []
    if announced is not None:
        first = sum(1 for e in events if e.seq <= announced)
        end = first
        while first and events[first - 1].at == events[end - 1].at:
            first -= 1
        events = events[first:]
    for event in events:
        runtime.hub.publish(StoreEvent("event", sid, event))
    return events


MAX_FOLLOWED = 100_000
"""Sessions not loaded here whose published seq a store remembers (oldest forgotten)."""
