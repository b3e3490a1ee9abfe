"""Suspensions, follow-ups, steering, abort/close, side questions and display_state (K2)."""

from __future__ import annotations

import pytest
import trio

from harness_kernel import DisplayState, MemoryStorage, ToolResultPart
from harness_kernel._fold import SessionFold
from harness_kernel.testing import Reply

from .helpers import open_store, slow_stream
from .interactive import AGENT, GATES, brain, user_texts


def tool_texts(result) -> list[str]:
    return [p.content for m in result.messages for p in m.parts if isinstance(p, ToolResultPart)]


def fresh_fold(events, mode: str = "default") -> DisplayState:
    """The display state of the whole log folded from nothing, and checks that the
    snapshot of that fold stands for the same state."""
    fold = SessionFold("s1", mode)
    for event in events:
        fold.apply(event)
    again = SessionFold.from_snapshot("s1", fold.snapshot(), fold.last_seq)
    assert again.display() == fold.display()
    return fold.display()


@pytest.fixture(autouse=True)
def _gates() -> None:
    GATES.clear()


async def test_a_suspended_tool_takes_the_resume_data_as_its_result() -> None:
    """ctx.suspend parks the run as 'suspended'; resume's data becomes the result."""
    async with open_store({"main": brain}, agent=AGENT) as store:
        session = await store.create("s1")
        parked = await session.send("tools:confirm=deploy")
        assert parked.status == "suspended"
        [handle] = session.pending_suspensions
        assert (handle.tool, handle.payload, handle.run_id) == ("confirm", {"confirm": "deploy"}, parked.run_id)
        assert (await store.storage.load("s1")).status == "suspended"
        done = await session.resume(handle.call_id, {"ok": True})
        assert (done.status, done.run_id, done.text) == ("completed", parked.run_id, 'tool said: {"ok": true}')
        with pytest.raises(KeyError, match="no pending suspension"):
            await session.resume(handle.call_id, "again")


async def test_ask_user_and_several_suspensions_survive_a_restart() -> None:
    """Two ask_user calls park together; after a restart each is resumed by call id."""
    storage = MemoryStorage()
    async with open_store({"main": brain}, agent=AGENT, storage=storage) as store:
        parked = await store.send("s1", "tools:ask_user=Which colour?;ask_user=Which size?")
        assert parked.status == "suspended"
    async with open_store({"main": brain}, agent=AGENT, storage=storage) as store:
        session = await store.get_or_create("s1")
        first, second = session.pending_suspensions
        assert first.payload == {"question": "Which colour?", "choices": None}
        with pytest.raises(ValueError, match="JSON-serializable"):
            await session.resume(second.call_id, object())
        assert await store.resume("s1", second.call_id, "large") is None  # one still pending
        done = await session.resume(first.call_id, "blue")
        assert done.text == "tool said: blue | large"


async def test_follow_ups_queue_fifo_and_run_after_the_current_run() -> None:
    """follow_up during a run queues; each queued message runs, in order, right after."""
    async with open_store({"main": brain}, agent=AGENT) as store, store.subscribe() as events:
        session = await store.create("s1")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.send, "tools:wait=g1")
            await trio.testing.wait_all_tasks_blocked()
            await session.follow_up("first follow-up")
            await session.follow_up("second follow-up")
            assert [m.text for m in session.queued_follow_ups] == ["first follow-up", "second follow-up"]
            assert [m.text for m in session.display_state.queued_follow_ups] == ["first follow-up", "second follow-up"]
            GATES["g1"].set()
        await finished_runs(events, 3)
        runs = await session.runs()
        assert [r.status for r in runs] == ["completed"] * 3
        assert user_texts(await session.history()) == ["tools:wait=g1", "first follow-up", "second follow-up"]


async def test_a_follow_up_when_idle_starts_a_run_at_once() -> None:
    """With nothing running, follow_up starts its run and returns without waiting."""
    async with open_store({"main": brain}, agent=AGENT) as store:
        session = await store.create("s1")
        async with store.subscribe() as events:
            await session.follow_up("hello")
            async for item in events:
                if item.event is not None and item.event.type == "run.finished":
                    break
        assert user_texts(await session.history()) == ["hello"]


async def test_queued_follow_ups_survive_a_restart() -> None:
    """Follow-ups queued behind a parked run are persisted and run once it ends."""
    storage = MemoryStorage()
    async with open_store({"main": brain}, agent=AGENT, storage=storage) as store:
        session = await store.create("s1")
        await session.send("tools:write=a")  # parks
        await session.follow_up("after the write")
        assert [m.text for m in session.queued_follow_ups] == ["after the write"]
    async with open_store({"main": brain}, agent=AGENT, storage=storage) as store:
        session = await store.get_or_create("s1")
        assert [m.text for m in session.queued_follow_ups] == ["after the write"]
        async with store.subscribe() as events:
            await session.approve(session.pending_approvals[0].approval_id)
            await finished_runs(events, 2)  # the approved run, then the follow-up
        assert user_texts(await session.history()) == ["tools:write=a", "after the write"]
        assert session.queued_follow_ups == []


async def test_steer_joins_the_current_run_before_its_next_model_step() -> None:
    """A steering message is seen by the model's next step, and the run is not aborted."""
    seen: list[list[str]] = []

    def spy(request):
        seen.append([m.text for m in request.messages if m.role == "user"])
        return brain(request)

    async with open_store({"main": spy}, agent=AGENT) as store:
        session = await store.create("s1")
        async with trio.open_nursery() as nursery:
            results = []

            async def send() -> None:
                results.append(await session.send("tools:wait=g2"))

            nursery.start_soon(send)
            await trio.testing.wait_all_tasks_blocked()
            await session.steer("also mention the weather")
            GATES["g2"].set()
        [result] = results
        assert result.status == "completed"
        assert seen == [["tools:wait=g2"], ["tools:wait=g2", "also mention the weather"]]
        assert [m.role for m in result.messages] == ["user", "assistant", "tool", "user", "assistant"]
        assert len(await session.runs()) == 1
        assert session.queued_follow_ups == []


async def test_abort_of_a_parked_run_declines_and_cancels_everything() -> None:
    """abort() on a run waiting for approvals and suspensions ends it aborted; the
    session takes the next message."""
    async with open_store({"main": brain}, agent=AGENT) as store:
        session = await store.create("s1")
        parked = await session.send("tools:write=a;confirm=b")
        assert parked.status == "suspended"
        assert await session.abort() is True
        assert (session.pending_approvals, session.pending_suspensions) == ([], [])
        events = await store.storage.read("s1")
        assert [(e.payload.approved, e.payload.reason) for e in events if e.type == "approval.resolved"] == [(False, "the run was aborted")]
        assert [e.payload.cancelled for e in events if e.type == "suspension.resolved"] == [True]
        assert [r.status for r in await session.runs()] == ["aborted"]
        assert await session.abort() is False
        assert (await session.send("next")).status == "completed"


async def test_close_aborts_active_work_but_keeps_parked_runs() -> None:
    """close() cancels a working run (recorded aborted) but leaves a parked one parked."""
    storage = MemoryStorage()
    async with open_store({"main": slow_stream("partial")}, storage=storage) as store:
        working = await store.create("working")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(working.send, "hi")
            await trio.testing.wait_all_tasks_blocked()
            await working.close()
        assert working.closed
    async with open_store({"main": brain}, agent=AGENT, storage=storage) as store:
        parked = await store.create("parked")
        await parked.send("tools:write=a")
        await store.close("parked")
    async with open_store({"main": brain}, agent=AGENT, storage=storage) as store:
        assert [r.status for r in await (await store.get_or_create("parked")).runs()] == ["waiting_approval"]
        await store.close("parked")
    async with open_store(storage=storage) as store:
        assert [r.status for r in await (await store.get_or_create("working")).runs()] == ["aborted"]


async def test_btw_answers_from_a_snapshot_and_appends_nothing() -> None:
    """A side question, even mid-run, sees the history but changes nothing."""
    asked: list[tuple[int, int]] = []

    def side(request):
        asked.append((len(request.messages), len(request.tools)))
        return Reply(text=f"you said {len([m for m in request.messages if m.role == 'user'])} things")

    async with open_store({"main": brain, "side": side}, agent=AGENT) as store:
        session = await store.create("s1")
        await session.send("hello")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.send, "tools:wait=g3")
            await trio.testing.wait_all_tasks_blocked()
            before = session.last_seq
            answer = await session.btw("what did I say?", model="scripted/side")
            assert session.last_seq == before
            GATES["g3"].set()
        assert answer == "you said 3 things"  # hello, the running request, the question
        # The unfinished tool round was cut from the snapshot: 2 earlier messages + the
        # user's new one + the question; no tools offered.
        assert asked == [(4, 0)]


async def test_display_state_follows_a_run_and_equals_a_fresh_fold_at_rest() -> None:
    """Streaming text and tools show up live; at rest the snapshot equals a fold of the log."""
    snapshots: list[DisplayState] = []
    async with open_store({"main": brain}, agent=AGENT) as store:
        session = await store.create("s1")
        async with session.stream("tools:write=a") as events:
            async for event in events:
                if event.type == "display_state_changed":
                    snapshots.append(event.state)
        assert any(s.tool_input_buffers for s in snapshots)
        assert session.display_state.pending_approvals == tuple(h.approval_id for h in session.pending_approvals)
        assert session.display_state == fresh_fold(await store.storage.read("s1"))
        async with store.subscribe() as sub:
            await session.approve(session.pending_approvals[0].approval_id)
            live = [i.display for i in _drain(sub) if i.kind == "display_state_changed"]
        assert any(s.active_tools == {} and s.is_running for s in live)
        assert any(s.current_message for s in live)
        final = session.display_state
        assert (final.is_running, final.current_message, final.pending_approvals) == (False, "", ())
        assert final.usage == session.usage
        assert final == fresh_fold(await store.storage.read("s1"))


async def finished_runs(events, count: int) -> None:
    """Wait until ``count`` runs have finished (a guard keeps a bug from hanging)."""
    with trio.fail_after(10):
        async for item in events:
            if item.event is not None and item.event.type == "run.finished":
                count -= 1
                if count == 0:
                    return


def _drain(channel):
    items = []
    while True:
        try:
            items.append(channel.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return items




async def test_an_approval_given_while_other_calls_still_run_is_not_lost() -> None:
    """Approving during the same round (another tool still running) runs the call."""
    async with open_store({"main": brain}, agent=AGENT) as store:
        session = await store.create("s1")
        results = []
        async with trio.open_nursery() as nursery:

            async def send() -> None:
                results.append(await session.send("tools:write=a;wait=g4"))

            nursery.start_soon(send)
            await trio.testing.wait_all_tasks_blocked()
            [handle] = session.pending_approvals
            assert await session.approve(handle.approval_id) is None  # the run is still working
            GATES["g4"].set()
        [result] = results
        # Results are recorded as calls finish: the gate opened first, then the approved write ran.
        assert (result.status, result.text) == ("completed", "tool said: gate g4 opened | wrote a")


async def test_aborting_a_working_run_resolves_its_pending_approvals() -> None:
    """An approval asked while another call runs is declined when the run is aborted."""
    async with open_store({"main": brain}, agent=AGENT) as store:
        session = await store.create("s1")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.send, "tools:write=a;wait=g5")
            await trio.testing.wait_all_tasks_blocked()
            await session.abort()
        events = await store.storage.read("s1")
        assert [(e.payload.approved, e.payload.reason) for e in events if e.type == "approval.resolved"] == [(False, "the run was aborted")]
        assert session.pending_approvals == []
        assert [r.status for r in await session.runs()] == ["aborted"]


async def test_aborting_a_parked_run_starts_queued_follow_ups() -> None:
    """Follow-ups queued behind a parked run run once abort() ends it."""
    async with open_store({"main": brain}, agent=AGENT) as store, store.subscribe() as events:
        session = await store.create("s1")
        await session.send("tools:write=a")
        await session.follow_up("then this")
        await session.abort()
        await finished_runs(events, 2)  # the aborted run, then the follow-up
        assert user_texts(await session.history()) == ["tools:write=a", "then this"]


async def test_run_finished_hooks_hear_every_real_end() -> None:
    """Parked runs ended by a new message or abort are reported to run_finished; parking is not."""
    from harness_kernel import hookimpl

    ends: list[tuple[str, str]] = []

    class Observer:
        @hookimpl
        def run_finished(self, run_id: str, result) -> None:
            ends.append((run_id, result.status))

    async with open_store({"main": brain}, agent=AGENT, plugins=[Observer()]) as store:
        session = await store.create("s1")
        first = await session.send("tools:write=a")
        assert ends == []
        second = await session.send("hello")
        third = await session.send("tools:write=b")
        await session.abort()
    assert ends == [(first.run_id, "aborted"), (second.run_id, "completed"), (third.run_id, "aborted")]


async def test_btw_uses_the_same_instructions_and_context_as_a_run() -> None:
    """A side question sees the mode's instructions and rendered context, without tools."""
    from harness_kernel import Mode, context_provider, define_agent

    systems: list[str] = []

    @context_provider
    def clock(ctx) -> str:
        return "It is noon."

    def side(request):
        systems.append(request.system)
        return Reply(text="ok")

    agent = define_agent(name="ctx", instructions="base", modes=[Mode("m", instructions="mode rules")], context_providers=[clock])
    async with open_store({"side": side}, agent=agent) as store:
        session = await store.create("s1")
        assert await session.btw("what time is it?", model="scripted/side") == "ok"
    assert systems == ["mode rules\n\nIt is noon."]


def test_a_mode_with_an_invalid_approval_policy_is_refused() -> None:
    """Mode(approval='maybe') fails at definition, like a tool's would."""
    from harness_kernel import Mode, define_agent
    from harness_kernel.errors import ConfigError

    with pytest.raises(ConfigError, match="mode 'm': approval must be"):
        define_agent(name="bad", modes=[Mode("m", approval="maybe")])
