"""The session store: create, get, hydrate, list, close, delete, clear, aclose, subscribe."""

from __future__ import annotations

import pytest
import trio

from harness_kernel import MemoryStorage, StoreEvent
from harness_kernel.errors import (
    InvalidArgument,
    InvalidSessionId,
    SessionExists,
    StoreClosed,
)

from .helpers import open_store

HOSTILE_IDS = ["../x", "a/b", "/etc/passwd", "nul\x00byte", "x" * 10_000, "", ".hidden", "a b", "ünï", "a\\b", "-flag"]


@pytest.mark.parametrize("bad", HOSTILE_IDS, ids=lambda s: repr(s)[:20])
async def test_hostile_session_ids_are_refused_with_a_clear_error(bad: str) -> None:
    """Unsafe ids never reach storage; the error says what ids may contain."""
    storage = MemoryStorage()
    async with open_store(storage=storage) as store:
        for call in (store.create(bad), store.get_or_create(bad), store.send(bad, "hi"), store.delete(bad)):
            with pytest.raises(InvalidSessionId, match=r"invalid session id|must be a string"):
                await call
    assert storage._entries == {}


async def test_create_get_and_get_or_create() -> None:
    """create makes a session once; get only sees loaded ones; get_or_create reuses them."""
    async with open_store() as store:
        session = await store.create("s1", tenant_id="acme", principal="ann")
        assert store.get("s1") is session
        assert dict(session.labels) == {"tenant_id": "acme", "principal": "ann"}
        with pytest.raises(SessionExists):
            await store.create("s1")
        assert await store.get_or_create("s1") is session
        generated = await store.create()
        assert generated.id.startswith("ses_")
        assert store.get("never") is None


async def test_get_or_create_hydrates_a_persisted_session() -> None:
    """A session closed in one store comes back from storage, with its history."""
    storage = MemoryStorage()
    async with open_store(storage=storage) as store:
        await store.send("s1", "hello", tenant_id="acme")
    async with open_store(storage=storage) as store:
        assert store.get("s1") is None
        session = await store.get_or_create("s1", tenant_id="ignored-for-existing")
        assert [m.text for m in await session.history()] == ["hello", "hello"]
        assert dict(session.labels) == {"tenant_id": "acme"}


async def test_concurrent_get_or_create_loads_one_session_object() -> None:
    """Two tasks hydrating the same id at once get the same Session."""
    storage = MemoryStorage()
    async with open_store(storage=storage) as store:
        await store.send("s1", "x")
    async with open_store(storage=storage) as store:
        found = []
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(lambda: _append_session(store, found))
        assert len({id(s) for s in found}) == 1


async def _append_session(store, found) -> None:
    found.append(await store.get_or_create("s1"))


async def test_bad_labels_are_refused() -> None:
    """Label names and values are validated when a session is created: an
    ``InvalidArgument``, which is also a ``ValueError``."""
    async with open_store() as store:
        with pytest.raises(InvalidArgument, match="label name 'Bad-Key'") as bad:
            await store.create("s", **{"Bad-Key": "v"})
        assert isinstance(bad.value, ValueError)
        with pytest.raises(InvalidArgument, match="label 'tenant_id' must be a string"):
            await store.create("s", tenant_id="x" * 600)


async def test_list_pages_with_cursor_and_filters_in_stable_order() -> None:
    """Pages cover every session once, newest first; labels and agent filter."""
    async with open_store() as store:
        for i in range(7):
            await store.create(f"s{i}", tenant_id="a" if i % 2 else "b")
        seen, cursor = [], None
        while True:
            page = await store.list(limit=3, cursor=cursor)
            seen.extend(r.id for r in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert sorted(seen) == [f"s{i}" for i in range(7)]
        assert len(seen) == 7
        tenant_a = await store.list(tenant_id="a")
        assert sorted(r.id for r in tenant_a.items) == ["s1", "s3", "s5"]
        assert (await store.list(agent="someone-else")).items == ()
        assert [r.id for r in (await store.list(limit=50)).items] == seen
        with pytest.raises(ValueError, match="limit"):
            await store.list(limit=0)


async def test_close_unloads_and_keeps_data_delete_removes_it() -> None:
    """close keeps the session in storage; delete removes it entirely."""
    async with open_store() as store:
        await store.send("s1", "hello")
        session = store.get("s1")
        assert await store.close("s1") is True
        assert store.get("s1") is None
        assert session.closed
        assert await store.close("s1") is False
        again = await store.get_or_create("s1")
        assert len(await again.history()) == 2
        assert await store.delete("s1") is True
        assert store.get("s1") is None
        assert await store.storage.load("s1") is None
        assert await store.delete("s1") is False


async def test_clear_unloads_every_session() -> None:
    """clear closes every loaded session but deletes nothing."""
    async with open_store() as store:
        for name in ("a", "b", "c"):
            await store.send(name, "hi")
        await store.clear()
        assert [store.get(n) for n in ("a", "b", "c")] == [None, None, None]
        assert len((await store.list()).items) == 3


async def test_after_aclose_every_call_fails_fast_with_store_closed() -> None:
    """A closed store refuses everything with StoreClosed."""
    async with open_store() as store:
        pass
    with pytest.raises(StoreClosed):
        await store.send("s", "hi")
    with pytest.raises(StoreClosed):
        await store.create("s")
    with pytest.raises(StoreClosed):
        store.get("s")
    with pytest.raises(StoreClosed):
        await store.list()
    await store.aclose()  # idempotent


async def test_subscribe_delivers_store_events_in_order() -> None:
    """A subscriber sees sessions created, their durable events, closed and deleted."""
    async with open_store() as store:
        received: list[StoreEvent] = []
        async with store.subscribe() as events:
            await store.send("s1", "hi")
            await store.close("s1")
            await store.delete("s1")
            await store.clear()
            while True:
                try:
                    received.append(events.receive_nowait())
                except trio.WouldBlock:
                    break
    kinds = [e.kind if e.kind != "event" else e.event.type for e in received if e.kind != "display_state_changed"]
    # Display states are coalesced to one per tick: far fewer than the 6 changes (5
    # durable events and the streamed delta), and the last one shows the run ended.
    displays = [e.display for e in received if e.kind == "display_state_changed"]
    assert 1 <= len(displays) < 6
    assert displays[-1].open_run is None
    assert displays[-1].current_message == ""
    assert kinds == [
        "session.created", "run.started", "message.added", "usage.recorded", "message.added",
        "run.finished", "session.closed", "session.deleted", "session.cleared",
    ]
    seqs = [e.event.seq for e in received if e.event is not None]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_a_subscriber_that_falls_behind_is_dropped_without_blocking_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs never wait for subscribers: one that overflows its buffer is disconnected."""
    import harness_kernel._runtime as runtime_module

    monkeypatch.setattr(runtime_module, "SUBSCRIBER_BUFFER", 3)
    async with open_store() as store:
        async with store.subscribe() as events:
            for i in range(3):
                result = await store.send("s", f"m{i}")
                assert result.status == "completed"
            drained = [event async for event in events]
        assert len(drained) == 3  # what fit in the buffer, then the iteration ended
