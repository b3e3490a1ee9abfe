"""Hydration: a stored session comes back from its record's snapshot plus the events
after it; history is read only when needed; a snapshot that cannot be trusted is
repaired by folding the log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from harness_kernel import Event, MemoryLogSink, MemoryStorage, SessionRecord

from .test_core_bugs import store_on


class CountingReads(MemoryStorage):
    """Memory storage that records each ``read`` call as ``(after_seq, limit)``."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[int, int | None]] = []

    async def read(self, session_id: str, after_seq: int = 0, limit: int | None = None) -> Sequence[Event]:
        self.reads.append((after_seq, limit))
        return await super().read(session_id, after_seq, limit)


async def _build(storage: MemoryStorage) -> None:
    """A session with history, a grant, state, a parked run and a queued follow-up."""
    async with store_on(storage) as store:
        session = await store.create("s1", tenant_id="t1")
        await session.send("one", model="scripted/other")
        await session.approve(session.pending_approvals[0].approval_id, remember="tool")
        await session.revoke("write")
        await session.set_model("scripted/other")
        await session.send("two")
        await session.follow_up("three")


async def _view(storage: MemoryStorage, **kwargs: Any) -> dict[str, Any]:
    """Everything a host can read of s1 after loading it in a new store."""
    async with store_on(storage, **kwargs) as store:
        session = await store.get_or_create("s1")
        return {
            "labels": dict(session.labels),
            "mode": session.mode,
            "model": session.model_override,
            "usage": session.usage,
            "grants": session.grants,
            "state": session.state,
            "pending": [(h.approval_id, h.tool, dict(h.arguments), h.run_id) for h in session.pending_approvals],
            "queued": [m.text for m in session.queued_follow_ups],
            "current_run": session.current_run,
            "display": session.display_state,
            "last_seq": session.last_seq,
            "history": [(m.role, m.text) for m in await session.history()],
            "runs": [(r.run_id, r.status, r.steps, r.model) for r in await session.runs()],
        }


async def test_get_or_create_reads_the_record_and_the_tail_only() -> None:
    """Loading reads from the snapshot's last event on; the history is read once, when
    someone asks for it, and then kept."""
    storage = CountingReads()
    await _build(storage)
    record = await storage.load("s1")
    assert record is not None
    assert record.snapshot is not None
    storage.reads.clear()
    async with store_on(storage) as store:
        session = await store.get_or_create("s1")
        assert storage.reads == [(record.last_seq - 1, None)]
        assert [h.tool for h in session.pending_approvals] == ["write"]
        first = await session.history()
        second = await session.history()
        assert first == second
        assert first[0].text == "one"
        assert storage.reads[1:] == [(0, record.last_seq)]


CORRUPTIONS = {
    "missing": lambda snap, record: {"snapshot": None},
    "older version": lambda snap, record: {"snapshot": {**snap, "version": 0}},
    "garbage": lambda snap, record: {"snapshot": {**snap, "pending": "not a list", "usage": 7}},
    "of another seq": lambda snap, record: {"snapshot": {**snap, "last_seq": snap["last_seq"] - 2}},
    "ahead of the log": lambda snap, record: {
        "snapshot": {**snap, "last_seq": snap["last_seq"] + 5},
        "last_seq": record.last_seq + 5,
    },
    "of another session": lambda snap, record: {
        "snapshot": {**snap, "pending": [{**h, "session_id": "other"} for h in snap["pending"]]}
    },
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
async def test_a_snapshot_that_cannot_be_trusted_is_repaired_from_the_log(kind: str) -> None:
    """Whatever is wrong with the snapshot, the session loads as the log says, the
    repair is logged, and the record gets a good snapshot again."""
    storage = MemoryStorage()
    await _build(storage)
    expected = await _view(storage)
    record = await storage.load("s1")
    assert record is not None
    assert record.snapshot is not None
    changes = CORRUPTIONS[kind](dict(record.snapshot), record)
    await storage.save(attrs.evolve(record, revision=record.revision + 1, **changes), expected_revision=record.revision)
    sink = MemoryLogSink()
    assert await _view(storage, logging={"sinks": [sink]}) == expected
    if changes.get("snapshot") is not None:
        assert any(r["event"] == "snapshot_repaired" for r in sink.records)
    repaired = await storage.load("s1")
    assert repaired is not None
    assert repaired.snapshot is not None
    assert repaired.snapshot["last_seq"] == repaired.last_seq == expected["last_seq"]


async def test_a_stale_record_is_caught_up_from_the_events_after_it() -> None:
    """A record saved before later events (a crash between append and save) loads the
    same as a current one: its snapshot plus the newer events."""
    storage = MemoryStorage()
    async with store_on(storage) as store:
        session = await store.create("s1")
        await session.send("one")
    old: SessionRecord | None = await storage.load("s1")
    assert old is not None
    await _continue(storage)
    expected = await _view(storage)
    current = await storage.load("s1")
    assert current is not None
    await storage.save(attrs.evolve(old, revision=current.revision + 1), expected_revision=current.revision)
    assert await _view(storage) == expected


async def _continue(storage: MemoryStorage) -> None:
    async with store_on(storage) as store:
        session = await store.get_or_create("s1")
        await session.approve(session.pending_approvals[0].approval_id)
        await session.send("two")
