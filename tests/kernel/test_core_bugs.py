"""Core behaviours the first wave got wrong, each pinned as a user observes it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import trio

from harness_kernel import (
    Event,
    LogSink,
    MemoryLogSink,
    MemoryStorage,
    ModelRequest,
    ToolResultPart,
    create_session_store,
    define_agent,
    hookimpl,
    tool,
)
from harness_kernel.errors import ApprovalAlreadyResolved, StorageError
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall


@tool(approval="ask")
async def write(text: str) -> str:
    """Write something (asks first)."""
    return f"wrote {text}"


AGENT = define_agent(name="writer", tools=[write])


def answering_with_model(request: ModelRequest) -> Reply:
    """Asks to write, then answers naming the model that served the answer."""
    last = request.messages[-1]
    if any(isinstance(p, ToolResultPart) for p in last.parts):
        return Reply(text=f"answered by {request.model}")
    return Reply(tool_calls=[ToolCall("write", {"text": last.text})])


def store_on(storage: MemoryStorage, **kwargs: Any) -> Any:
    provider = ScriptedProvider({"main": answering_with_model, "other": answering_with_model})
    kwargs.setdefault("agent", AGENT)
    return create_session_store(
        providers=[provider], default_model="scripted/main", storage=storage, autoload_plugins=False, **kwargs
    )


async def test_a_parked_run_continues_with_the_model_it_was_started_with() -> None:
    """send(..., model=...) parks on an approval; approving continues on that model, in
    the same process and in a later one."""
    storage = MemoryStorage()
    async with store_on(storage) as store:
        session = await store.create("s1")
        parked = await session.send("a", model="scripted/other")
        assert parked.status == "waiting_approval"
        result = await session.approve(session.pending_approvals[0].approval_id)
        assert result is not None
        assert result.text == "answered by other"
        parked = await session.send("b", model="scripted/other")
        assert parked.status == "waiting_approval"
    async with store_on(storage) as store:
        session = await store.get_or_create("s1")
        result = await session.approve(session.pending_approvals[0].approval_id)
        assert result is not None
        assert result.text == "answered by other"


class SlowAppends(MemoryStorage):
    """Memory storage whose appends take a moment, as any real backend's do."""

    async def append(self, session_id: str, events: Sequence[Event], expected_seq: int) -> None:
        await trio.sleep(0.01)
        await super().append(session_id, events, expected_seq)


async def test_approve_and_deny_racing_record_exactly_one_resolution() -> None:
    """Two people answer the same approval at once: one wins, the other is told it was
    already resolved, and the log holds one approval.resolved."""
    storage = SlowAppends()
    async with store_on(storage) as store:
        session = await store.create("s1")
        await session.send("a")
        approval_id = session.pending_approvals[0].approval_id
        outcomes: list[str] = []

        async def answer(approve: bool) -> None:
            try:
                if approve:
                    await session.approve(approval_id)
                else:
                    await session.deny(approval_id, "no")
                outcomes.append("resolved")
            except ApprovalAlreadyResolved:
                outcomes.append("already resolved")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer, True)
            nursery.start_soon(answer, False)
        events = await storage.read("s1")
    assert sorted(outcomes) == ["already resolved", "resolved"]
    assert [e.type for e in events].count("approval.resolved") == 1


class FailingStorage(MemoryStorage):
    """Appends fail while ``failing`` is set; counts the attempts. A caller that keeps
    trying past ``patience`` attempts is stopped (blocked) so the test can say so."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False
        self.failed_attempts = 0
        self.patience = 200

    async def append(self, session_id: str, events: Sequence[Event], expected_seq: int) -> None:
        if self.failing:
            self.failed_attempts += 1
            if self.failed_attempts > self.patience:
                await trio.sleep_forever()
            raise StorageError("the disk is full")
        await super().append(session_id, events, expected_seq)


async def test_storage_failing_with_follow_ups_queued_backs_off_and_keeps_the_input(autojump_clock: Any) -> None:
    """A follow-up that storage refuses to start is retried a few times with backoff,
    then stays queued durably and runs on the next hydrate; no run.finished is written
    for a run whose run.started never was."""
    gate = trio.Event()

    async def gated(request: ModelRequest) -> Reply:
        if request.messages[-1].text == "first":
            await gate.wait()
        return Reply(text=f"re: {request.messages[-1].text}")

    storage = FailingStorage()
    provider = ScriptedProvider({"main": gated})
    agent = define_agent(name="writer")
    async with create_session_store(
        agent=agent, providers=[provider], default_model="scripted/main", storage=storage, autoload_plugins=False
    ) as store:
        session = await store.create("s1")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.send, "first")
            await trio.sleep(1)
            await session.follow_up("second")
            storage.failing = True
            gate.set()
        await trio.sleep(60)  # every backoff has passed
        assert storage.failed_attempts < 20
        assert [m.text for m in session.queued_follow_ups] == ["second"]
    storage.failing = False
    events = await storage.read("s1")
    started = {e.run_id for e in events if e.type == "run.started"}
    finished = {e.run_id for e in events if e.type == "run.finished"}
    assert finished <= started
    async with create_session_store(
        agent=agent, providers=[provider], default_model="scripted/main", storage=storage, autoload_plugins=False
    ) as store:
        async with store.subscribe() as store_events:
            session = await store.get_or_create("s1")
            with trio.fail_after(30):
                async for item in store_events:
                    if item.event is not None and item.event.type == "run.finished" and item.event.payload.status == "completed":
                        break
        assert session.queued_follow_ups == []
        texts = [m.text for m in await session.history()]
    assert texts[-2:] == ["second", "re: second"]


class HangingObserver:
    """A plugin whose run_started observer never returns."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    async def run_started(self, session_id: str) -> None:
        self.calls += 1
        await trio.sleep_forever()


async def test_an_observer_hook_that_hangs_is_cancelled_and_disabled(autojump_clock: Any) -> None:
    """A hanging observer is cut off at the store's hook deadline, logged, disabled for
    that session; the runs end normally."""
    observer = HangingObserver()
    sink = MemoryLogSink()
    async with create_session_store(
        agent=define_agent(name="a"), plugins=[observer], autoload_plugins=False, hook_deadline=2.0,
        logging={"sinks": [sink]},
    ) as store:
        first = await store.send("s1", "hello")
        second = await store.send("s1", "again")
    assert (first.status, second.status) == ("completed", "completed")
    assert observer.calls == 1
    [timed_out] = [r for r in sink.records if r["event"] == "hook_timed_out"]
    assert timed_out["hook"] == "run_started"
    assert timed_out["level"] == "error"


class CountingSink(LogSink):
    def __init__(self) -> None:
        self.level = 10
        self.flushes = 0
        self.closes = 0
        self.records: list[Mapping[str, Any]] = []

    def write(self, record: Mapping[str, Any]) -> None:
        self.records.append(record)

    def flush(self) -> None:
        self.flushes += 1

    async def aclose(self) -> None:
        self.closes += 1


async def test_host_sinks_are_flushed_not_closed_when_the_store_closes() -> None:
    """A sink instance the host passed in is the host's: the store flushes it on close
    and leaves it open."""
    sink = CountingSink()
    async with create_session_store(agent=define_agent(name="a"), autoload_plugins=False, logging={"sinks": [sink]}):
        pass
    assert sink.flushes >= 1
    assert sink.closes == 0


async def test_runs_are_logged_at_info_with_status_duration_and_usage() -> None:
    sink = MemoryLogSink(level="info")
    async with create_session_store(agent=define_agent(name="a"), autoload_plugins=False, logging={"sinks": [sink]}) as store:
        result = await store.send("s1", "hello")
    [started] = [r for r in sink.records if r["event"] == "run_started"]
    [finished] = [r for r in sink.records if r["event"] == "run_finished"]
    assert started["run_id"] == finished["run_id"] == result.run_id
    assert started["level"] == finished["level"] == "info"
    assert finished["status"] == "completed"
    assert finished["duration_ms"] >= 0
    assert set(finished["usage"]) >= {"input_tokens", "output_tokens"}


@pytest.mark.parametrize("remember", ["forever", "TOOL"])
async def test_a_bad_remember_is_an_invalid_argument_and_changes_nothing(remember: str) -> None:
    from harness_kernel.errors import InvalidArgument

    storage = MemoryStorage()
    async with store_on(storage) as store:
        session = await store.create("s1")
        await session.send("a")
        before = session.last_seq
        with pytest.raises(InvalidArgument) as info:
            await session.approve(session.pending_approvals[0].approval_id, remember=remember)  # type: ignore[arg-type]
        assert isinstance(info.value, ValueError)
        assert session.last_seq == before
        assert len(session.pending_approvals) == 1


async def test_a_cancelled_caller_of_stream_aborts_the_run() -> None:
    """A trio caller whose cancel scope fires while it iterates a stream: the run is
    aborted and recorded, not left running."""
    gate = trio.Event()

    async def stalls(request: ModelRequest) -> Any:
        from harness_kernel import TextDelta

        yield TextDelta("part")
        await gate.wait()

    storage = MemoryStorage()
    async with create_session_store(
        agent=define_agent(name="a"), providers=[ScriptedProvider({"main": stalls})], default_model="scripted/main",
        storage=storage, autoload_plugins=False,
    ) as store:
        session = await store.create("s1")
        with trio.move_on_after(1):
            async with session.stream("hi") as events:
                async for _ in events:
                    pass
        assert not session.is_running
        [finished] = [e for e in await storage.read("s1") if e.type == "run.finished"]
        assert finished.payload.status == "aborted"


class SlowToFinish(MemoryStorage):
    """Storage that takes its time writing a run's end (a loaded database, a saturated
    event loop): longer than the store's grace period."""

    async def append(self, session_id: str, events: Any, *args: Any, **kwargs: Any) -> None:
        if any(event.type == "run.finished" for event in events):
            await trio.sleep(1.0)
        await super().append(session_id, events, *args, **kwargs)


async def test_a_run_that_completes_is_recorded_however_long_its_end_takes(
    autojump_clock: Any,
) -> None:
    """The grace period bounds the cleanup of a cancelled run, not the recording of one that
    completed: a slow end-of-run write still gives the caller its RunResult (it returned
    None before, with nothing logged)."""
    storage = SlowToFinish()
    async with create_session_store(
        agent=define_agent(name="slow-end"), storage=storage, grace_period=0.1
    ) as store:
        result = await store.send("s1", "hello")
        assert result is not None
        assert (result.status, result.text) == ("completed", "hello")
    events = await storage.read("s1")
    assert [e.payload.status for e in events if e.type == "run.finished"] == ["completed"]
