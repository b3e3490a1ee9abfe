"""A turn's durable commits (K15): one per step, the record in the same commit."""

from __future__ import annotations

from typing import ClassVar

import trio

from harness_kernel import MemoryStorage, create_session_store, define_agent, tool
from harness_kernel.contracts import StorageCapabilities
from harness_kernel.testing import ScriptedProvider
from tests.storage_common.commits import Commits, brain, check_four_commits, one_tool_turn, store_on


async def test_a_turn_with_one_tool_call_is_four_commits() -> None:
    """User message with run.started and the lease; the answer with its call's start; the
    tool's result; the final answer with run.finished, the snapshot and the released lease."""
    check_four_commits(await one_tool_turn(MemoryStorage()))


class NoRecordAppends(MemoryStorage):
    """A backend that cannot save a record in an append (as S3 cannot)."""

    capabilities: ClassVar[StorageCapabilities] = StorageCapabilities(append_record=False)


async def test_run_finished_counts_the_answer_that_goes_with_it() -> None:
    """The final answer is committed with run.finished, yet run.finished counts it: both
    steps, and the usage of both model calls."""
    storage = MemoryStorage()
    async with store_on(storage) as store:
        result = await store.send("s1", "go")
    events = await storage.read("s1")
    finished = events[-1].payload
    usages = [e.payload.usage for e in events if e.type == "usage.recorded"]
    assert finished.steps == 2
    assert len(usages) == 2
    assert finished.usage == usages[0] + usages[1]
    assert result.usage == finished.usage


async def test_without_record_appends_the_record_is_saved_after_the_events() -> None:
    """A backend without ``append_record``: the lease is saved before run.started and the
    snapshot after run.finished, each its own commit; the steps are still one each."""
    commits = await one_tool_turn(NoRecordAppends())
    assert [(c.kind, c.events) for c in commits] == [
        ("save", ()),
        ("append", ("run.started", "message.added")),
        ("append", ("usage.recorded", "message.added", "tool.started")),
        ("append", ("tool.finished",)),
        ("append", ("usage.recorded", "message.added", "run.finished")),
        ("save", ()),
    ]
    assert commits[0].record is not None
    assert commits[0].record.lease is not None
    assert commits[-1].record is not None
    assert commits[-1].record.lease is None


async def test_a_tool_starts_only_after_its_start_is_durable() -> None:
    """The answer waits for its first call's start, and that commit lands before the tool
    runs: a crash while the tool runs finds the call in doubt, never forgotten."""
    storage = MemoryStorage()
    seen: list[list[str]] = []

    @tool
    async def lookup(q: str) -> str:
        """Look something up."""
        seen.append([e.type for e in await storage.read("s1")])
        return "result"

    async with create_session_store(
        agent=define_agent(name="commits", tools=[lookup]), providers=[ScriptedProvider({"brain": brain})],
        default_model="scripted/brain", storage=storage, autoload_plugins=False,
    ) as store:
        result = await store.send("s1", "go")
    assert result.status == "completed"
    assert seen == [["run.started", "message.added", "usage.recorded", "message.added", "tool.started"]]


async def test_a_store_that_loses_the_race_for_the_first_commit_follows_the_winner() -> None:
    """Two stores send at once to one session: the lease goes with run.started, so one
    wins; the other catches up and follows (or starts after it), and nothing is lost."""
    storage = MemoryStorage()
    async with store_on(storage) as a, store_on(storage, poll_interval=0.01) as b:
        await a.create("s1")
        sa, sb = await a.get_or_create("s1"), await b.get_or_create("s1")
        results = {}

        async def send(name: str, session: object, text: str) -> None:
            results[name] = await session.send(text)  # type: ignore[attr-defined]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, "a", sa, "from a")
            nursery.start_soon(send, "b", sb, "from b")
    assert {r.status for r in results.values()} == {"completed"}
    events = await storage.read("s1")
    users = [e.payload.message.text for e in events if e.type == "message.added" and e.payload.message.role == "user"]
    assert sorted(users) == ["from a", "from b"]
    assert [e.type for e in events].count("run.finished") == 2
    record = await storage.load("s1")
    assert record is not None
    assert record.lease is None


async def test_the_counting_wrapper_sees_every_write() -> None:
    """The wrapper itself counts (so the tests above can fail): a create is one commit."""
    counted = Commits(MemoryStorage())
    async with store_on(counted) as store:
        await store.create("s1")
    assert [c.kind for c in counted.log] == ["create"]
