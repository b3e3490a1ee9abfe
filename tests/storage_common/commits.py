"""Count a turn's durable commits through a storage wrapper (K15).

``Commits`` wraps any ``SessionStorage`` and records every write call (``create``,
``save``, ``append`` with or without ``record=``): each is one durable commit of the
backend. ``one_tool_turn`` runs the W2 turn (a user message, a model step calling
``lookup``, the tool's result, a final answer) and returns the commits it made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from harness_kernel import (
    Event,
    ModelRequest,
    SessionRecord,
    SessionStorage,
    ToolResultPart,
    create_session_store,
    define_agent,
    tool,
)
from harness_kernel.contracts import Page, SessionFilter
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall


@attrs.frozen
class Commit:
    """One write: ``kind`` (create, save, append), the event types it carried, and the
    record it saved (``None`` for an append without one)."""

    kind: str
    events: tuple[str, ...] = ()
    record: SessionRecord | None = None


class Commits(SessionStorage):
    """``inner`` with every write recorded in ``log``; reads pass through uncounted."""

    def __init__(self, inner: SessionStorage) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities  # type: ignore[misc]
        self.log: list[Commit] = []

    async def create(self, record: SessionRecord) -> None:
        await self.inner.create(record)
        self.log.append(Commit("create", record=record))

    async def load(self, session_id: str) -> SessionRecord | None:
        return await self.inner.load(session_id)

    async def save(self, record: SessionRecord, expected_revision: int) -> None:
        await self.inner.save(record, expected_revision)
        self.log.append(Commit("save", record=record))

    async def append(
        self,
        session_id: str,
        events: Sequence[Event],
        expected_seq: int,
        *,
        incarnation: str | None = None,
        record: SessionRecord | None = None,
    ) -> None:
        if record is None:
            await self.inner.append(session_id, events, expected_seq, incarnation=incarnation)
        else:
            await self.inner.append(session_id, events, expected_seq, incarnation=incarnation, record=record)
        self.log.append(Commit("append", tuple(e.type for e in events), record))

    async def read(self, session_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        return await self.inner.read(session_id, after_seq, limit)

    async def last_seq(self, session_id: str) -> int:
        return await self.inner.last_seq(session_id)

    async def list(self, filter: SessionFilter, limit: int = 50, cursor: str | None = None) -> Page:
        return await self.inner.list(filter, limit, cursor)

    async def delete(self, session_id: str) -> bool:
        return await self.inner.delete(session_id)

    async def aclose(self) -> None:
        await self.inner.aclose()


@tool
async def lookup(q: str) -> str:
    """Look something up."""
    return "result"


def brain(request: ModelRequest) -> Reply:
    last = request.messages[-1]
    if last.role == "user":
        return Reply(tool_calls=[ToolCall("lookup", {"q": last.text})])
    part = last.parts[0]
    assert isinstance(part, ToolResultPart)
    return Reply(text=f"The answer is {part.content}.")


AGENT = define_agent(name="commits", tools=[lookup])


def store_on(storage: SessionStorage, **kwargs: Any) -> Any:
    return create_session_store(
        agent=AGENT, providers=[ScriptedProvider({"brain": brain})], default_model="scripted/brain",
        storage=storage, autoload_plugins=False, **kwargs,
    )


async def one_tool_turn(storage: SessionStorage) -> list[Commit]:
    """The commits of the second turn of a session (the first warms it up)."""
    counted = Commits(storage)
    async with store_on(counted) as store:
        session = await store.create("turns")
        assert (await session.send("first")).status == "completed"
        before = len(counted.log)
        result = await session.send("second")
        assert result.status == "completed", result.error
        assert result.text == "The answer is result."
        return counted.log[before:]


EXPECTED = [
    ("run.started", "message.added"),
    ("usage.recorded", "message.added", "tool.started"),
    ("tool.finished",),
    ("usage.recorded", "message.added", "run.finished"),
]
"""What each of the 4 commits of a one-tool turn holds (``usage.recorded``: the scripted
provider reports usage with each answer)."""


def check_four_commits(commits: list[Commit]) -> None:
    """The turn made 4 commits, each one step's events; the first took the lease, the
    last saved the snapshot and released the lease, both in the same commit as events."""
    assert [c.kind for c in commits] == ["append"] * 4, commits
    assert [c.events for c in commits] == EXPECTED
    first, last = commits[0].record, commits[-1].record
    assert first is not None
    assert first.lease is not None, "the lease goes with run.started"
    assert commits[1].record is None
    assert commits[2].record is None
    assert last is not None
    assert last.lease is None, "the lease is released with run.finished"
    assert last.snapshot is not None
    assert last.last_seq == last.snapshot["last_seq"]
    assert last.status == "idle"
