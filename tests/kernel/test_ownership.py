"""One owner per session: incarnations, leases, and acting through the owner, with two
stores on one storage (the cross-process versions are in tests/e2e/test_two_processes.py)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from harness_kernel import (
    MemoryStorage,
    ModelRequest,
    ToolResultPart,
    create_session_store,
    define_agent,
    tool,
)
from harness_kernel.errors import ConfigError, OwnerTimeout, SessionReplaced, StorageError
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall, trio_lease_clock

FAST = {"lease_ttl": 1.0, "poll_interval": 0.05}

seen: list[list[str]] = []
gate: dict[str, trio.Event] = {}


@tool
async def slow(label: str) -> str:
    """A tool that waits until the test lets it finish."""
    await gate.setdefault(label, trio.Event()).wait()
    return f"{label} done"


@tool(approval="ask")
async def guarded(label: str) -> str:
    """A tool that asks first."""
    return f"{label} guarded"


AGENT = define_agent(name="owners", tools=[slow, guarded])


def brain(request: ModelRequest) -> Reply:
    """Records what the model saw; ``slow:x`` and ``ask:x`` call tools, else it echoes."""
    seen.append([m.text for m in request.messages if m.role == "user"])
    last = request.messages[-1]
    if any(isinstance(p, ToolResultPart) for p in last.parts):
        return Reply(text=f"after {last.parts[0].content}")
    text = last.text
    if text.startswith("slow:"):
        return Reply(tool_calls=[ToolCall("slow", {"label": text[5:]})])
    if text.startswith("ask:"):
        return Reply(tool_calls=[ToolCall("guarded", {"label": text[4:]})])
    return Reply(text=f"re: {text}")


def store(storage: MemoryStorage, **kwargs: Any) -> Any:
    return create_session_store(
        agent=AGENT, providers=[ScriptedProvider({"main": brain})], default_model="scripted/main",
        storage=storage, autoload_plugins=False, **{**FAST, **kwargs},
    )


@pytest.fixture(autouse=True)
def _clean() -> None:
    seen.clear()
    gate.clear()


async def until_stored(storage: MemoryStorage, event_type: str, count: int = 1) -> None:
    """Wait until ``count`` events of ``event_type`` are in storage (no fixed sleeps: the
    test waits for what it needs to have happened, however slow the machine is)."""
    # Polling the storage itself is the point: it is what the other store would see.
    while sum(e.type == event_type for e in await storage.read("s1")) < count:  # noqa: ASYNC110
        await trio.sleep(0.01)


async def test_a_deleted_conversation_never_leaks_into_its_successor() -> None:
    """A holds customer-42; B deletes it, creates it again and talks in it. A's next send
    raises SessionReplaced instead of sending the old history to the model or writing
    into the new session; getting it again gives the new session."""
    storage = MemoryStorage()
    async with store(storage) as a, store(storage) as b:
        old = await a.create("customer-42")
        for i in range(3):
            await old.send(f"old secret {i}")
        await b.delete("customer-42")
        fresh = await b.create("customer-42")
        for i in range(3):
            await fresh.send(f"new user {i}")
        seen.clear()
        with pytest.raises(SessionReplaced):
            await old.send("stale")
        assert seen == []
        assert old.closed
        again = await a.get_or_create("customer-42")
        assert (await again.send("hello")).status == "completed"
        assert seen[-1] == ["new user 0", "new user 1", "new user 2", "hello"]
    texts = [e.payload.message.text for e in await storage.read("customer-42") if e.type == "message.added"]
    assert not any("old secret" in t or t == "stale" for t in texts)


async def test_a_settings_change_on_a_replaced_session_raises_and_writes_nothing() -> None:
    storage = MemoryStorage()
    async with store(storage) as a, store(storage) as b:
        old = await a.create("s1")
        await b.delete("s1")
        await b.create("s1")
        with pytest.raises(SessionReplaced):
            await old.update_state(x=1)
        assert await storage.read("s1") == []


async def test_a_live_run_is_never_declared_crashed_by_a_peer() -> None:
    """A runs a slow tool; B loads the session and sends. B's message is handed to A,
    which runs it after its own run; nothing is in doubt, each run ends once, and B gets
    the RunResult A produced."""
    storage = MemoryStorage()
    async with store(storage) as a, store(storage) as b:
        session_a = await a.create("s1")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session_a.send, "slow:x")
            await until_stored(storage, "tool.started")
            session_b = await b.get_or_create("s1")
            results: list[Any] = []

            async def b_sends() -> None:
                results.append(await session_b.send("from b"))

            nursery.start_soon(b_sends)
            await until_stored(storage, "input.queued")
            gate["x"].set()
        [result] = results
        assert (result.status, result.text) == ("completed", "re: from b")
    events = await storage.read("s1")
    outcomes = [e.payload.outcome for e in events if e.type == "tool.finished"]
    assert outcomes == ["ok"]
    finished = [e.run_id for e in events if e.type == "run.finished"]
    assert len(finished) == len(set(finished)) == 2
    assert not any(e.type == "run.finished" and e.payload.error for e in events)


async def test_steer_and_abort_from_another_store_act_through_the_owner() -> None:
    """B steers A's run (the message reaches A's next model step) and aborts it (the run
    ends aborted, once, recorded by A)."""
    storage = MemoryStorage()
    async with store(storage) as a, store(storage) as b:
        session_a = await a.create("s1")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session_a.send, "slow:first")
            await until_stored(storage, "tool.started")
            session_b = await b.get_or_create("s1")
            await session_b.steer("also this")
            await until_stored(storage, "input.queued")
            gate["first"].set()
        assert seen[-1] == ["slow:first", "also this"]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session_a.send, "slow:second")
            await until_stored(storage, "tool.started", count=2)
            assert await session_b.abort() is True
        assert session_a.current_run is None
    events = await storage.read("s1")
    statuses = [e.payload.status for e in events if e.type == "run.finished"]
    assert statuses == ["completed", "aborted"]


async def test_approving_a_run_parked_in_another_store_continues_it_here() -> None:
    """A parked run has no owner: B approves and runs the continuation itself."""
    storage = MemoryStorage()
    async with store(storage) as a, store(storage) as b:
        session_a = await a.create("s1")
        parked = await session_a.send("ask:go")
        assert parked.status == "waiting_approval"
        session_b = await b.get_or_create("s1")
        done = await session_b.approve(session_b.pending_approvals[0].approval_id)
        assert done is not None
        assert done.text == "after go guarded"
    record = await storage.load("s1")
    assert record is not None
    assert record.lease is None


async def test_a_non_owner_that_waits_too_long_is_told_who_owns_the_session() -> None:
    storage = MemoryStorage()
    async with store(storage) as a, store(storage, owner_timeout=0.5) as b:
        session_a = await a.create("s1")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session_a.send, "slow:long")
            await until_stored(storage, "tool.started")
            session_b = await b.get_or_create("s1")
            with pytest.raises(OwnerTimeout, match=r"is run by .*did not answer within 0\.5 s"):
                await session_b.send("hurry")
            gate["long"].set()
    events = await storage.read("s1")
    assert [e.payload.message.text for e in events if e.type == "message.added" and e.payload.message.role == "user"][-1] == "hurry"


class Freezable(MemoryStorage):
    """Writes fail while ``frozen``: a store whose process died writes nothing more."""

    frozen = False

    async def append(self, *args: Any, **kwargs: Any) -> None:
        if self.frozen:
            raise StorageError("gone")
        await super().append(*args, **kwargs)

    async def save(self, *args: Any, **kwargs: Any) -> None:
        if self.frozen:
            raise StorageError("gone")
        await super().save(*args, **kwargs)


async def test_after_the_owner_dies_its_lease_expires_and_another_store_takes_over() -> None:
    """A store that vanished mid-tool (its lease is never renewed) blocks the session
    only until the lease expires; then B runs, and the tool is reported in doubt."""
    storage = Freezable()
    async with store(storage) as b:
        with trio.CancelScope() as dead:
            async with store(storage) as a:
                session_a = await a.create("s1")
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(session_a.send, "slow:never")
                    await until_stored(storage, "tool.started")
                    record = await storage.load("s1")
                    assert record is not None
                    assert record.lease is not None
                    # Simulate the process dying: its store never writes again.
                    storage.frozen = True
                    dead.cancel()
        storage.frozen = False
        session_b = await b.get_or_create("s1")
        with trio.fail_after(10):
            result = await session_b.send("anyone there?")
        assert result.status == "completed"
    events = await storage.read("s1")
    assert [e.payload.outcome for e in events if e.type == "tool.finished"] == ["in_doubt"]


async def test_a_lease_clock_driven_by_trio_lets_mock_time_expire_a_lease(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With ``lease_clock=trio_lease_clock()``, leases follow trio's clock: under MockClock
    a dead owner's 30 s lease expires in mock time and B takes over (with the default
    ``time.time`` clock no wall-clock time would pass and B would time out)."""
    storage = Freezable()
    clock = trio_lease_clock()
    timing = {"lease_ttl": 30.0, "poll_interval": 0.5, "owner_timeout": 60.0, "lease_clock": clock}
    async with store(storage, **timing) as b:
        with trio.CancelScope() as dead:
            async with store(storage, **timing) as a:
                session_a = await a.create("s1")
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(session_a.send, "slow:never")
                    await trio.sleep(1)
                    storage.frozen = True
                    dead.cancel()
        storage.frozen = False
        record = await storage.load("s1")
        assert record is not None
        assert record.lease is not None
        assert record.lease.expires_at > clock()
        session_b = await b.get_or_create("s1")
        started = trio.current_time()
        result = await session_b.send("anyone there?")
        assert result.status == "completed"
        assert trio.current_time() - started < 60
        assert clock() >= record.lease.expires_at
    events = await storage.read("s1")
    assert [e.payload.outcome for e in events if e.type == "tool.finished"] == ["in_doubt"]


async def test_a_lease_clock_must_be_callable() -> None:
    with pytest.raises(ConfigError, match="lease_clock"):
        async with store(MemoryStorage(), lease_clock=12.0):
            pass


class Counting(MemoryStorage):
    """Counts record saves, and fails loudly once a store would spin on them."""

    saves = 0

    async def save(self, *args: Any, **kwargs: Any) -> None:
        self.saves += 1
        if self.saves > 500:
            raise AssertionError("a store keeps saving the record: it spins")
        await super().save(*args, **kwargs)


async def test_a_store_whose_copy_of_the_lease_is_stale_follows_the_owner() -> None:
    """B loaded the session while A ran it and saw A's lease then; A has renewed it
    since, and B's copy says it expired. B's send finds the live lease when it tries
    to take it, and follows A (here until ``owner_timeout``) instead of retrying the
    take in a loop that never waits."""
    storage = Counting()
    async with store(storage) as a, store(storage, owner_timeout=0.5) as b:
        session_a = await a.create("s1")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session_a.send, "slow:renewed")
            await until_stored(storage, "tool.started")
            session_b = await b.get_or_create("s1")
            await trio.sleep(1.5)  # A renews its 1 s lease; B's copy of it expires
            with pytest.raises(OwnerTimeout):
                await session_b.send("hello")
            gate["renewed"].set()
    assert storage.saves < 100


async def test_an_abort_on_a_replaced_session_unloads_it() -> None:
    """A holds s1; B deletes it and creates it again. A's abort raises SessionReplaced
    and A drops its copy, so getting the session again gives the new one (and a second
    abort does not raise again)."""
    storage = MemoryStorage()
    async with store(storage) as a, store(storage) as b:
        await a.create("s1")
        await b.delete("s1")
        await b.create("s1")
        with pytest.raises(SessionReplaced):
            await a.get("s1").abort()
        assert a.get("s1") is None
        fresh = await a.get_or_create("s1")
        assert await fresh.abort() is False
