"""Approvals: policies, grants, durable pause, timeouts, deny reasons (issue K2 item 1-2)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from harness_kernel import MemoryStorage, Mode, ToolResultPart, define_agent
from harness_kernel.errors import ApprovalAlreadyResolved, HarnessError, UnknownApproval

from .helpers import open_store
from .interactive import AGENT, brain


def results(result) -> list[str]:
    return [p.content for m in result.messages for p in m.parts if isinstance(p, ToolResultPart)]


async def test_ask_parks_the_run_and_approve_continues_it() -> None:
    """An 'ask' tool parks the run with a pending approval; approve runs it to the end."""
    async with open_store({"main": brain}, agent=AGENT) as store:
        session = await store.create("s1")
        parked = await session.send("tools:write=notes.txt")
        assert (parked.status, parked.text) == ("waiting_approval", "")
        [handle] = session.pending_approvals
        assert (handle.tool, dict(handle.arguments), handle.category, handle.run_id) == ("write", {"path": "notes.txt"}, "edit", parked.run_id)
        assert handle.tool_call_id
        assert handle.requested_at > 0
        assert store.pending_approvals() == [handle]
        assert store.pending_approvals("s1") == [handle]
        assert session.display_state.pending_approvals == (handle.approval_id,)
        assert not session.display_state.is_running
        done = await session.approve(handle.approval_id)
        assert (done.status, done.text, done.run_id) == ("completed", "tool said: wrote notes.txt", parked.run_id)
        assert session.pending_approvals == []
        assert [r.status for r in await session.runs()] == ["completed"]
        events = [e.type for e in await session.run_events(parked.run_id)]
        assert events.count("approval.requested") == events.count("approval.resolved") == 1


async def test_deny_reason_reaches_the_model_and_the_events() -> None:
    """deny(reason): the tool does not run, the model reads the reason, the log keeps it."""
    async with open_store({"main": brain}, agent=AGENT) as store:
        session = await store.create("s1")
        await session.send("tools:write=secrets.txt")
        [handle] = session.pending_approvals
        done = await session.deny(handle.approval_id, "not that file")
        assert done.text == "tool said: the user denied this call: not that file"
        resolved = [e.payload for e in await store.storage.read("s1") if e.type == "approval.resolved"]
        assert [(r.approved, r.reason) for r in resolved] == [(False, "not that file")]


async def test_unknown_or_resolved_approvals_are_clear_errors() -> None:
    """Approving twice, or an id that never existed, says which: typed errors that are
    still ``KeyError`` for callers written against the first wave."""
    async with open_store({"main": brain}, agent=AGENT) as store:
        session = await store.create("s1")
        await session.send("tools:write=a")
        [handle] = session.pending_approvals
        await session.approve(handle.approval_id)
        with pytest.raises(ApprovalAlreadyResolved, match="was already resolved") as twice:
            await session.approve(handle.approval_id)
        assert isinstance(twice.value, KeyError)
        assert twice.value.code == "approval.already_resolved"
        with pytest.raises(UnknownApproval, match="no pending approval 'apr_nope'") as unknown:
            await session.deny("apr_nope")
        assert isinstance(unknown.value, KeyError | HarnessError)


async def test_several_calls_some_asking_some_not() -> None:
    """Auto calls run at once; the run waits for every asking call, in order."""
    async with open_store({"main": brain}, agent=AGENT) as store:
        session = await store.create("s1")
        parked = await session.send("tools:read=a;write=b;write=c")
        assert parked.status == "waiting_approval"
        assert results(parked) == ["content of a"]
        first, second = session.pending_approvals
        assert await session.approve(second.approval_id) is None  # one still pending
        done = await session.deny(first.approval_id, "no")
        assert done.text == "tool said: content of a | the user denied this call: no | wrote c"


async def test_policy_callable_mode_override_and_deny_rules() -> None:
    """A callable policy decides on the parsed arguments; a mode overrides tools; a deny
    rule wins over a grant."""
    agent = define_agent(name="modes", tools=AGENT.tools, modes=[Mode("normal"), Mode("yolo", approval="auto")], deny=["category:edit"])
    async with open_store({"main": brain}, agent=AGENT) as store:
        session = await store.create("s1")
        small = await session.send("tools:pay=50")
        assert (small.status, small.text) == ("completed", "tool said: paid 50")
        big = await session.send("tools:pay=500")
        assert big.status == "waiting_approval"
    async with open_store({"main": brain}, agent=agent) as store:
        session = await store.create("s1")
        await session.switch_mode("yolo")
        assert (await session.send("tools:pay=500")).text == "tool said: paid 500"
        await session.grant_category("edit")
        denied = await session.send("tools:write=x")
        assert denied.text == "tool said: tool 'write' is not allowed here (denied by policy)"


async def test_grants_remember_tools_and_categories_until_revoked() -> None:
    """approve(remember=...) and grant_* skip later approvals; revoke brings them back."""
    storage = MemoryStorage()
    async with open_store({"main": brain}, agent=AGENT, storage=storage) as store:
        session = await store.create("s1")
        await session.send("tools:write=a")
        await session.approve(session.pending_approvals[0].approval_id, remember="tool")
        assert session.grants == ("tool:write",)
        assert (await session.send("tools:write=b")).status == "completed"
        assert (await session.send("tools:publish=site")).status == "waiting_approval"
        await session.approve(session.pending_approvals[0].approval_id, remember="category")
        assert session.grants == ("tool:write", "category:edit")
        with pytest.raises(ValueError, match="remember must be"):
            await session.approve("x", remember="forever")
    async with open_store({"main": brain}, agent=AGENT, storage=storage) as store:
        session = await store.get_or_create("s1")
        assert session.grants == ("tool:write", "category:edit")  # persisted
        await session.revoke("write")
        await session.revoke("category:edit")
        assert session.grants == ()
        assert (await session.send("tools:write=c")).status == "waiting_approval"
        with pytest.raises(KeyError, match="no grant 'tool:write'"):
            await session.revoke("write")
        await session.grant_tool("write")
        assert session.grants == ("tool:write",)


async def test_a_parked_approval_survives_a_restart_and_continues() -> None:
    """Close the store with a run parked; a new store lists the approval; approving it
    finishes the same run."""
    storage = MemoryStorage()
    async with open_store({"main": brain}, agent=AGENT, storage=storage) as store:
        parked = await store.send("s1", "tools:read=a;write=b")
    async with open_store({"main": brain}, agent=AGENT, storage=storage) as store:
        assert store.pending_approvals() == []  # nothing loaded yet
        session = await store.get_or_create("s1")
        [handle] = store.pending_approvals()
        assert (handle.tool, handle.run_id) == ("write", parked.run_id)
        assert session.current_run.run_id == parked.run_id
        assert (await store.storage.load("s1")).status == "waiting_approval"
        done = await store.approve("s1", handle.approval_id)
        assert (done.status, done.run_id, done.text) == ("completed", parked.run_id, "tool said: content of a | wrote b")
        assert [m.role for m in done.messages] == ["user", "assistant", "tool", "tool", "assistant"]


async def test_an_approval_expires_into_a_denial(autojump_clock: trio.testing.MockClock) -> None:
    """A tool's approval_timeout denies the call when nobody answers in time."""
    async with open_store({"main": brain}, agent=AGENT) as store:
        session = await store.create("s1")
        parked = await session.send("tools:publish=site")
        [handle] = session.pending_approvals
        assert handle.expires_at is not None
        async with store.subscribe() as events:
            async for item in events:
                if item.event is not None and item.event.type == "run.finished":
                    break
        runs = await session.runs()
        assert [(r.run_id, r.status) for r in runs] == [(parked.run_id, "completed")]
        texts = [m.text for m in await session.history()]
        assert texts[-1] == "tool said: the user denied this call: the approval timed out"


async def test_sending_while_parked_declines_the_approval() -> None:
    """A new message ends the parked run: the approval is declined as
    interrupted_by_user_message and the new message runs."""
    async with open_store({"main": brain}, agent=AGENT) as store:
        session = await store.create("s1")
        parked = await session.send("tools:write=a")
        result = await session.send("never mind")
        assert result.status == "completed"
        events = await store.storage.read("s1")
        resolved = [e.payload for e in events if e.type == "approval.resolved"]
        assert [(r.approved, r.reason) for r in resolved] == [(False, "interrupted_by_user_message")]
        runs = await session.runs()
        assert [(r.run_id, r.status, r.error.code if r.error else None) for r in runs] == [
            (parked.run_id, "aborted", "run.interrupted"), (result.run_id, "completed", None),
        ]
        assert session.pending_approvals == []


