"""harness_kernel.asyncio: the store and session API under asyncio.run, the scenarios
the trio tests use, and what only an asyncio host can do (cancel an awaiting task,
leave the loop with a store open)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

import harness_kernel
from harness_kernel import HarnessError, MemoryStorage
from harness_kernel.asyncio import RunStream, Session, SessionStore, create_session_store
from harness_kernel.errors import SessionClosed, SessionExists, StoreClosed, UnknownApproval

from .scenario import GATES, store_options


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(main())  # type: ignore[arg-type]


def trio_is_running() -> bool:
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


async def wait_for(feed: Any, event_type: str, count: int = 1) -> None:
    """Read a store subscription until ``count`` durable events of ``event_type``."""
    async for item in feed:
        if item.kind == "event" and item.event.type == event_type:
            count -= 1
            if count == 0:
                return
    raise AssertionError(f"the subscription ended before {event_type}")


def test_send_stream_and_plain_state() -> None:
    """send returns the RunResult; stream yields the run's events as an asyncio async
    iterator (text in deltas, run.finished last) and sets result; state reads work."""

    async def main() -> None:
        async with create_session_store(**store_options()) as store:
            assert isinstance(store, SessionStore)
            result = await store.send("s1", "hello there", tenant_id="t1")
            assert (result.status, result.text) == ("completed", "hello there")
            session = store.get("s1")
            assert isinstance(session, Session)
            assert store.get("s1") is session
            assert await store.get_or_create("s1") is session
            assert (session.id, dict(session.labels), session.mode) == ("s1", {"tenant_id": "t1"}, "default")
            assert (session.is_running, session.model) == (False, "scripted/main")
            async with session.stream("one two three") as events:
                assert isinstance(events, RunStream)
                seen = [event async for event in events]
            deltas = [e.text for e in seen if e.type == "text.delta"]
            assert len(deltas) > 1
            assert "".join(deltas) == "one two three"
            assert [e.type for e in seen if hasattr(e, "seq")][-1] == "run.finished"
            assert events.result is not None
            assert (events.result.status, events.result.text) == ("completed", "one two three")
            assert [m.text for m in await session.history()] == ["hello there"] * 2 + ["one two three"] * 2
            assert [r.status for r in await session.runs()] == ["completed", "completed"]
            assert (session.display_state.open_run, session.display_state.current_message) == (None, "")
            assert session.usage.output_tokens > 0
            page = await store.list(tenant_id="t1")
            assert [record.id for record in page.items] == ["s1"]
            assert await session.btw("side question") == "side question"
            await session.set_model("scripted/echo")
            assert session.model_override == "scripted/echo"
        assert store.closed

    run(main)


def test_approvals_in_process_and_after_a_restart() -> None:
    """A run parks on an approval; approve continues it; a run parked when the store
    closed is approved from a new store (and loop) over the same storage."""
    storage = MemoryStorage()

    async def first() -> None:
        async with create_session_store(**store_options(storage=storage)) as store:
            session = await store.create("s1")
            parked = await session.send("write:a.txt")
            assert parked.status == "waiting_approval"
            [pending] = session.pending_approvals
            assert store.pending_approvals("s1") == [pending]
            done = await session.approve(pending.approval_id)
            assert done is not None
            assert (done.status, done.text) == ("completed", "tool said: wrote a.txt")
            with pytest.raises(UnknownApproval):
                await session.approve(pending.approval_id + "-nope")
            denied = await session.send("write:b.txt")
            [pending] = session.pending_approvals
            done = await store.deny("s1", pending.approval_id, reason="not now")
            assert done is not None
            assert done.text == "tool said: the user denied this call: not now"
            assert denied.run_id == done.run_id
            assert (await session.send("write:c.txt")).status == "waiting_approval"

    async def second() -> None:
        async with create_session_store(**store_options(storage=storage)) as store:
            session = await store.get_or_create("s1")
            [pending] = session.pending_approvals
            done = await store.approve("s1", pending.approval_id, remember="tool")
            assert done is not None
            assert done.text == "tool said: wrote c.txt"
            assert session.grants == ("tool:write",)

    run(first)
    run(second)


def test_abort_follow_up_and_steer() -> None:
    """abort ends a stalled run aborted with its partial text; a follow-up runs after
    the current run; a steering message joins the run waiting in a tool."""

    async def main() -> None:
        async with create_session_store(**store_options()) as store:
            session = await store.create("s1")
            async with session.stream("go", model="scripted/slow") as events:
                async for event in events:
                    if event.type == "text.delta":
                        assert await session.abort() is True
            assert events.result is not None
            assert (events.result.status, events.result.text) == ("aborted", "partial ")

            async with store.subscribe() as feed:
                running = asyncio.create_task(session.send("wait:asyncio-gate"))
                await wait_for(feed, "tool.started")
                await session.follow_up("after it")
                await session.steer("also this")
                assert [m.text for m in session.queued_follow_ups] == ["after it", "also this"]
                GATES.open("asyncio-gate")
                result = await running
                assert (result.status, result.text) == ("completed", "also this")
                assert [m.role for m in result.messages] == ["user", "assistant", "tool", "user", "assistant"]
                await wait_for(feed, "run.finished", count=2)  # the steered run, then the follow-up
            assert [r.status for r in await session.runs()] == ["aborted", "completed", "completed"]
            assert [m.text for m in await session.history(limit=2)] == ["after it", "after it"]

    run(main)


def test_cancelling_a_task_mid_stream_aborts_the_run_and_keeps_the_partial_text() -> None:
    """The asyncio task iterating a stream is cancelled: the run ends aborted, its
    partial text recorded, the block left only once that was written; the loop closes
    with no warning (filterwarnings = error)."""
    storage = MemoryStorage()

    async def main() -> None:
        async with create_session_store(**store_options(storage=storage)) as store:
            session = await store.create("s1")
            first_delta = asyncio.Event()

            async def reader() -> None:
                async with session.stream("go", model="scripted/slow") as events:
                    async for event in events:
                        if event.type == "text.delta":
                            first_delta.set()

            task = asyncio.create_task(reader())
            await first_delta.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not session.is_running
            [aborted] = await session.runs()
            assert aborted.status == "aborted"
            assert [m.text for m in await session.history()] == ["go", "partial "]

    run(main)
    assert not trio_is_running()


def test_cancelling_a_task_awaiting_send_aborts_its_run() -> None:
    """Cancelling the task awaiting send aborts the run, as cancelling a trio caller."""

    async def main() -> None:
        async with create_session_store(**store_options()) as store:
            session = await store.create("s1")
            async with store.subscribe() as feed:
                task = asyncio.create_task(session.send("go", model="scripted/slow"))
                await wait_for(feed, "run.started")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            after = await session.send("next")  # waits for the aborted run to record its end
            assert after.status == "completed"
            assert [r.status for r in await session.runs()] == ["aborted", "completed"]

    run(main)


def test_errors_are_the_kernels() -> None:
    """The facade raises the kernel's HarnessError types."""

    async def main() -> None:
        async with create_session_store(**store_options()) as store:
            session = await store.create("s1")
            with pytest.raises(SessionExists):
                await store.create("s1")
            await store.close("s1")
            with pytest.raises(SessionClosed):
                await session.send("hi")
        with pytest.raises(StoreClosed):
            await store.create("s2")
        with pytest.raises(StoreClosed):
            store.get("s1")

    run(main)


def test_one_kernel_per_loop_finished_by_the_last_store() -> None:
    """Two stores share the loop's kernel; it keeps running while one is open and is
    finished when the last closes; a later store starts a new one."""

    async def main() -> None:
        first = create_session_store(**store_options())
        second = create_session_store(**store_options())
        store_a = await first.__aenter__()
        store_b = await second.__aenter__()
        assert (await store_a.send("a", "x")).text == (await store_b.send("b", "x")).text == "x"
        await first.__aexit__(None, None, None)
        assert trio_is_running()
        assert (await store_b.send("b", "y")).text == "y"
        await second.__aexit__(None, None, None)
        assert not trio_is_running()
        async with create_session_store(**store_options()) as again:
            assert (await again.send("c", "z")).text == "z"
        assert not trio_is_running()

    run(main)


def test_a_loop_that_stops_with_a_store_open_finishes_the_kernel() -> None:
    """asyncio.run ending with a store left open and a run streaming: the kernel is
    finished before the loop closes; the run is aborted, a parked run stays parked."""
    storage = MemoryStorage()

    left_open = []

    async def leave_it_open() -> None:
        left_open.append(create_session_store(**store_options(storage=storage)))
        store = await left_open[0].__aenter__()
        assert (await store.send("parked", "write:x")).status == "waiting_approval"
        started = asyncio.Event()

        async def reader() -> None:
            async with store.stream("streaming", "go", model="scripted/slow") as events:
                async for _ in events:
                    started.set()

        asyncio.get_running_loop().create_task(reader())
        await started.wait()

    run(leave_it_open)
    assert not trio_is_running()

    async def check() -> None:
        async with create_session_store(**store_options(storage=storage)) as store:
            streaming = await store.get_or_create("streaming")
            assert [r.status for r in await streaming.runs()] == ["aborted"]
            parked = await store.get_or_create("parked")
            assert [r.status for r in await parked.runs()] == ["waiting_approval"]

    run(check)


def test_the_trio_api_from_asyncio_says_which_module_to_use() -> None:
    """harness_kernel.create_session_store under asyncio fails at the first call with a
    HarnessError naming harness_kernel.asyncio, not deep inside trio."""

    async def main() -> None:
        with pytest.raises(HarnessError, match=r"harness_kernel\.asyncio\.create_session_store"):
            async with harness_kernel.create_session_store(**store_options()):
                pass

    run(main)


def test_the_trio_api_from_no_loop_says_which_module_to_use() -> None:
    """Driven by no event loop at all, the trio API names harness_kernel.sync."""
    opening = harness_kernel.create_session_store(**store_options()).__aenter__()
    with pytest.raises(HarnessError, match=r"harness_kernel\.sync\.create_session_store"):
        opening.send(None)
    opening.close()


def test_the_asyncio_facade_needs_a_running_loop_and_is_not_for_trio() -> None:
    """From trio, harness_kernel.asyncio says to use the trio API directly."""

    async def under_trio() -> None:
        with pytest.raises(HarnessError, match=r"trio program uses harness_kernel\.create_session_store"):
            async with create_session_store(**store_options()):
                pass

    trio.run(under_trio)
    opening = create_session_store(**store_options()).__aenter__()
    with pytest.raises(HarnessError, match="needs a running asyncio loop"):
        opening.send(None)
    opening.close()
