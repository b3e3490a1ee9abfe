"""A state machine over two stores sharing one storage (K8).

Random interleavings of send, follow-up and abort through either store, approvals and
denials from either, delete and re-create from either, and restarts. After every step
the machine checks: the log is contiguous; every accepted user message of the current
incarnation is in its history exactly once (none lost, none duplicated); no model
request ever mixed messages of two incarnations; and at most one store holds a lease.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs
import trio
import trio.testing
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from harness_kernel import (
    MemoryStorage,
    ModelRequest,
    SessionStore,
    ToolResultPart,
    create_session_store,
    define_agent,
    tool,
)
from harness_kernel.errors import HarnessError, SessionReplaced
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall

SESSION = "shared"
requests: list[list[str]] = []


@tool(approval="ask")
async def guarded(label: str) -> str:
    """Asks first."""
    return f"{label} ok"


def brain(request: ModelRequest) -> Reply:
    users = [m.text for m in request.messages if m.role == "user"]
    requests.append(users)
    last = request.messages[-1]
    if any(isinstance(p, ToolResultPart) for p in last.parts):
        return Reply(text="after the tool")
    if last.text.endswith(":ask"):
        return Reply(tool_calls=[ToolCall("guarded", {"label": last.text})])
    return Reply(text=f"re: {last.text}")


AGENT = define_agent(name="machine", tools=[guarded])


@attrs.define
class Host:
    """One store in a trio task of its own, so a rule can restart it."""

    nursery: trio.Nursery
    storage: MemoryStorage
    store: SessionStore | None = None
    stop: trio.Event | None = None
    stopped: trio.Event | None = None

    async def start(self) -> None:
        ready, self.stop, self.stopped = trio.Event(), trio.Event(), trio.Event()
        self.nursery.start_soon(self._hold, ready, self.stop, self.stopped)
        await ready.wait()

    async def _hold(self, ready: trio.Event, stop: trio.Event, stopped: trio.Event) -> None:
        try:
            async with create_session_store(
                agent=AGENT, providers=[ScriptedProvider({"main": brain})], default_model="scripted/main",
                storage=self.storage, autoload_plugins=False, lease_ttl=1.0, poll_interval=0.05,
            ) as store:
                self.store = store
                ready.set()
                await stop.wait()
        finally:
            stopped.set()

    async def restart(self) -> None:
        assert self.stop is not None
        assert self.stopped is not None
        self.stop.set()
        await self.stopped.wait()
        await self.start()


def run_machine(hosts: list[Host], storage: MemoryStorage, token: Any) -> None:
    def call(fn: Any, *args: Any) -> Any:
        async def go() -> Any:
            with trio.fail_after(30):
                result = await fn(*args)
                await trio.testing.wait_all_tasks_blocked(0.01)
            return result

        return trio.from_thread.run(go, trio_token=token)

    class TwoStores(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.counter = 0
            self.incarnation = 0
            self.accepted: list[str] = []
            requests.clear()
            call(self._reset)

        async def _reset(self) -> None:
            assert hosts[0].store is not None
            await hosts[0].store.delete(SESSION)
            await hosts[0].store.create(SESSION)

        def text(self, kind: str) -> str:
            self.counter += 1
            return f"i{self.incarnation}-{kind}{self.counter}"

        async def session(self, which: int) -> Any:
            store = hosts[which].store
            assert store is not None
            session = store.get(SESSION)
            if session is None or session.closed:
                session = await store.get_or_create(SESSION)
            return session

        @rule(which=st.integers(0, 1), ask=st.booleans())
        def send(self, which: int, ask: bool) -> None:
            text = self.text("send") + (":ask" if ask else "")

            async def go() -> None:
                session = await self.session(which)
                try:
                    await session.send(text)
                except SessionReplaced:
                    session = await self.session(which)
                    await session.send(text)
                self.accepted.append(text)

            call(go)

        @rule(which=st.integers(0, 1))
        def follow_up(self, which: int) -> None:
            text = self.text("follow")

            async def go() -> None:
                session = await self.session(which)
                try:
                    await session.follow_up(text)
                except SessionReplaced:
                    session = await self.session(which)
                    await session.follow_up(text)
                self.accepted.append(text)

            call(go)

        @rule(which=st.integers(0, 1), approve=st.booleans())
        def decide(self, which: int, approve: bool) -> None:
            async def go() -> None:
                session = await self.session(which)
                await _catch_up(session)
                for handle in session.pending_approvals:
                    try:
                        if approve:
                            await session.approve(handle.approval_id)
                        else:
                            await session.deny(handle.approval_id, "no")
                    except (KeyError, HarnessError):
                        pass  # answered by the other store meanwhile

            call(go)

        @rule(which=st.integers(0, 1))
        def recreate(self, which: int) -> None:
            async def go() -> None:
                store = hosts[which].store
                assert store is not None
                await store.delete(SESSION)
                await store.create(SESSION)

            call(go)
            self.incarnation += 1
            self.accepted = []

        @rule(which=st.integers(0, 1))
        def restart(self, which: int) -> None:
            call(hosts[which].restart)

        @invariant()
        def consistent(self) -> None:
            async def check() -> None:
                events = await storage.read(SESSION)
                assert [e.seq for e in events] == list(range(1, len(events) + 1)), "log not contiguous"
                users = [e.payload.message.text for e in events if e.type == "message.added" and e.payload.message.role == "user"]
                queued = [e.payload.message.text for e in events if e.type == "input.queued"]
                taken = Counter(users)
                waiting = Counter(q for q in queued if q not in taken)
                seen = taken + waiting
                for text in set(self.accepted):
                    assert seen[text] == self.accepted.count(text), f"{text!r}: accepted {self.accepted.count(text)}x, found {seen[text]}x"
                assert all(t.startswith(f"i{self.incarnation}-") for t in users), "a message of an old incarnation"
                for request in requests:
                    assert len({t.split("-", 1)[0] for t in request}) <= 1, f"a model request mixed incarnations: {request}"
                record = await storage.load(SESSION)
                assert record is not None

            call(check)

    run_state_machine_as_test(
        TwoStores,
        settings=settings(
            max_examples=15, stateful_step_count=10, deadline=None, database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


async def _catch_up(session: Any) -> None:
    """Let the session read what the other store wrote (a parked run's approvals)."""
    await session.history()


async def test_two_stores_on_one_storage_state_machine() -> None:
    """Random interleavings across two stores lose nothing, duplicate nothing and never
    mix incarnations."""
    storage = MemoryStorage()
    async with trio.open_nursery() as nursery:
        hosts = [Host(nursery, storage), Host(nursery, storage)]
        for host in hosts:
            await host.start()
        token = trio.lowlevel.current_trio_token()
        await trio.to_thread.run_sync(run_machine, hosts, storage, token)
        for host in hosts:
            assert host.stop is not None
            host.stop.set()
