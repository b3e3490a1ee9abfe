"""A state machine over two stores sharing one storage (K8), under trio's MockClock.

Random interleavings, through either store, of send, follow-up, steer and abort (also
while the other store runs a slow tool), approvals and denials, delete and re-create,
graceful restarts, a store that dies mid-run (its storage writes stop, its lease stays)
and lease expiry (trio's clock moved past the lease ttl: the stores judge leases by
``trio_lease_clock``, so mock time expires them). After every step the machine checks:
the log is contiguous; every accepted user message of the current incarnation is in its
history exactly once (none lost, none duplicated); no model request ever mixed messages
of two incarnations; the log's runs never overlap and a live lease always belongs to a
store that is running the session (never two owners).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import attrs
import trio
import trio.testing
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from harness_kernel import (
    Event,
    MemoryStorage,
    ModelRequest,
    SessionRecord,
    SessionStore,
    ToolResultPart,
    create_session_store,
    define_agent,
    tool,
)
from harness_kernel.errors import HarnessError, OwnerTimeout, SessionReplaced, StorageError
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall, trio_lease_clock

SESSION = "shared"
LEASE_TTL = 1.0
requests: list[list[str]] = []
gates: dict[str, trio.Event] = {}
started: dict[str, trio.Event] = {}


@tool(approval="ask")
async def guarded(label: str) -> str:
    """Asks first."""
    return f"{label} ok"


@tool
async def slow(label: str) -> str:
    """Runs until the machine lets it finish."""
    started.setdefault(label, trio.Event()).set()
    await gates.setdefault(label, trio.Event()).wait()
    return f"{label} done"


def brain(request: ModelRequest) -> Reply:
    users = [m.text for m in request.messages if m.role == "user"]
    requests.append(users)
    last = request.messages[-1]
    if any(isinstance(p, ToolResultPart) for p in last.parts):
        return Reply(text="after the tool")
    if last.text.endswith(":ask"):
        return Reply(tool_calls=[ToolCall("guarded", {"label": last.text})])
    if last.text.endswith(":slow"):
        return Reply(tool_calls=[ToolCall("slow", {"label": last.text})])
    return Reply(text=f"re: {last.text}")


AGENT = define_agent(name="machine", tools=[guarded, slow])


class Freezable(MemoryStorage):
    """One host's view of the shared storage (the same sessions); while ``frozen`` its
    writes fail, as a process that died writes nothing more."""

    def __init__(self, shared: MemoryStorage) -> None:
        super().__init__()
        self._entries = shared._entries
        self.frozen = False

    def _check(self) -> None:
        if self.frozen:
            raise StorageError("this process is gone")

    async def create(self, record: SessionRecord) -> None:
        self._check()
        await super().create(record)

    async def save(self, record: SessionRecord, expected_revision: int) -> None:
        self._check()
        await super().save(record, expected_revision)

    async def append(
        self, session_id: str, events: Sequence[Event], expected_seq: int, *, incarnation: str | None = None
    ) -> None:
        self._check()
        await super().append(session_id, events, expected_seq, incarnation=incarnation)

    async def delete(self, session_id: str) -> bool:
        self._check()
        return await super().delete(session_id)


@attrs.define
class Host:
    """One store in a trio task of its own, so a rule can restart it or let it die."""

    nursery: trio.Nursery
    storage: Freezable
    clock: Any
    store: SessionStore | None = None
    scope: trio.CancelScope | None = None
    stop: trio.Event | None = None
    stopped: trio.Event | None = None

    async def start(self) -> None:
        ready, self.stop, self.stopped = trio.Event(), trio.Event(), trio.Event()
        self.scope = trio.CancelScope()
        self.nursery.start_soon(self._hold, ready, self.stop, self.stopped, self.scope)
        await ready.wait()

    async def _hold(self, ready: trio.Event, stop: trio.Event, stopped: trio.Event, scope: trio.CancelScope) -> None:
        try:
            with scope:
                async with create_session_store(
                    agent=AGENT, providers=[ScriptedProvider({"main": brain})], default_model="scripted/main",
                    storage=self.storage, autoload_plugins=False, lease_ttl=LEASE_TTL, poll_interval=0.05,
                    owner_timeout=5.0, grace_period=0.5, lease_clock=self.clock,
                ) as store:
                    self.store = store
                    ready.set()
                    await stop.wait()
        finally:
            stopped.set()

    @property
    def owner(self) -> str:
        assert self.store is not None
        return str(self.store._rt.owner)  # the store's lease identity (no public name)

    def running(self) -> bool:
        """Whether this store has a run of the session in progress."""
        assert self.store is not None
        entry = self.store._hub.sessions.get(SESSION)
        return entry is not None and entry.runner.active is not None

    async def restart(self) -> None:
        assert self.stop is not None
        assert self.stopped is not None
        self.stop.set()
        await self.stopped.wait()
        await self.start()

    async def die(self) -> None:
        """The process dies: nothing more reaches storage, its lease stays as it was."""
        assert self.scope is not None
        assert self.stopped is not None
        self.storage.frozen = True
        self.scope.cancel()
        await self.stopped.wait()
        self.storage.frozen = False
        await self.start()


@attrs.define
class Inflight:
    """A send whose slow tool is running on ``host``; ``outcome`` once the send returned."""

    host: int
    label: str
    done: trio.Event = attrs.Factory(trio.Event)
    outcome: object = None


def run_machine(hosts: list[Host], storage: MemoryStorage, token: Any) -> None:
    def call(fn: Any, *args: Any) -> Any:
        async def go() -> Any:
            with trio.fail_after(120):  # mock seconds: a stuck step fails at once
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
            self.inflight: Inflight | None = None
            self.maybe: set[str] = set()  # sends that failed: in the log at most once
            requests.clear()
            gates.clear()
            started.clear()
            call(self._reset)

        async def _reset(self) -> None:
            assert hosts[0].store is not None
            await hosts[0].store.delete(SESSION)
            await hosts[0].store.create(SESSION)

        def teardown(self) -> None:
            call(self._settle)

        async def _settle(self) -> None:
            if self.inflight is not None:
                gates.setdefault(self.inflight.label, trio.Event()).set()
                await self.inflight.done.wait()
                self.inflight = None

        def text(self, kind: str) -> str:
            self.counter += 1
            return f"i{self.incarnation}-{kind}{self.counter}"

        def other(self, which: int) -> int:
            """A store that will not wait on the slow tool: not the one running it."""
            if self.inflight is not None and self.inflight.host == which:
                return 1 - which
            return which

        async def session(self, which: int) -> Any:
            store = hosts[which].store
            assert store is not None
            session = store.get(SESSION)
            if session is None or session.closed:
                session = await store.get_or_create(SESSION)
            return session

        async def _twice(self, which: int, act: Any) -> None:
            """``act(session)``; once more on the new session if it was replaced."""
            try:
                await act(await self.session(which))
            except SessionReplaced:
                await act(await self.session(which))

        async def _reap(self) -> None:
            """Forget the slow send once it returned (its run ended)."""
            if self.inflight is not None and self.inflight.done.is_set():
                self.inflight = None

        @rule(which=st.integers(0, 1), ask=st.booleans())
        def send(self, which: int, ask: bool) -> None:
            text = self.text("send") + (":ask" if ask else "")
            which = self.other(which)

            async def go() -> None:
                try:
                    await self._twice(which, lambda s: s.send(text))
                except OwnerTimeout:
                    pass  # queued for the owner, which is busy with the slow tool
                self.accepted.append(text)
                await self._reap()

            call(go)

        @rule(which=st.integers(0, 1), steer=st.booleans())
        def follow_up(self, which: int, steer: bool) -> None:
            text = self.text("steer" if steer else "follow")

            async def go() -> None:
                await self._twice(which, lambda s: s.steer(text) if steer else s.follow_up(text))
                self.accepted.append(text)
                await self._reap()

            call(go)

        @rule(which=st.integers(0, 1))
        def start_slow(self, which: int) -> None:
            """A send whose tool runs until ``finish_slow``: the session has a live owner.
            (No hypothesis preconditions on ``inflight``: whether a send is still running
            depends on the run, and hypothesis needs the choice of rules reproducible.)"""
            text = self.text("send") + ":slow"

            async def go() -> None:
                if self.inflight is not None:
                    return
                session = await self.session(which)
                await session.history()
                if session.pending_approvals:
                    return  # a parked run first needs its answer
                flight = Inflight(which, text)

                async def send() -> None:
                    try:
                        flight.outcome = await session.send(text)
                    except Exception as exc:  # the run was replaced, or its store died
                        flight.outcome = exc
                    finally:
                        flight.done.set()

                hosts[which].nursery.start_soon(send)
                event = started.setdefault(text, trio.Event())
                with trio.move_on_after(10):
                    while not (event.is_set() or flight.done.is_set()):  # noqa: ASYNC110 - two events
                        await trio.sleep(0.01)
                assert event.is_set() or flight.done.is_set(), "the slow send never started"
                if event.is_set() or not isinstance(flight.outcome, Exception):
                    self.accepted.append(text)
                else:
                    self.maybe.add(text)
                self.inflight = None if flight.done.is_set() else flight

            call(go)

        @rule()
        def finish_slow(self) -> None:
            call(self._settle)

        @rule(which=st.integers(0, 1))
        def abort(self, which: int) -> None:
            async def go() -> None:
                await self._twice(which, lambda s: s.abort())
                if self.inflight is not None:
                    with trio.move_on_after(10):
                        await self.inflight.done.wait()
                    assert self.inflight.done.is_set(), "an abort did not end the slow run"
                    self.inflight = None

            call(go)

        @rule(which=st.integers(0, 1), approve=st.booleans())
        def decide(self, which: int, approve: bool) -> None:
            which = self.other(which)

            async def go() -> None:
                session = await self.session(which)
                await session.history()  # read what the other store wrote (its approvals)
                for handle in session.pending_approvals:
                    try:
                        if approve:
                            await session.approve(handle.approval_id)
                        else:
                            await session.deny(handle.approval_id, "no")
                    except (KeyError, HarnessError):
                        pass  # answered by the other store meanwhile

            call(go)

        @rule(which=st.integers(0, 1), recreate=st.booleans())
        def delete(self, which: int, recreate: bool) -> None:
            async def go() -> None:
                store = hosts[which].store
                assert store is not None
                await store.delete(SESSION)
                if recreate:
                    await store.create(SESSION)
                if self.inflight is not None:
                    with trio.move_on_after(10):
                        await self.inflight.done.wait()
                    assert self.inflight.done.is_set(), "a deleted session's run went on"
                    self.inflight = None

            call(go)
            self.incarnation += 1
            self.accepted = []
            self.maybe = set()

        @rule(which=st.integers(0, 1))
        def restart(self, which: int) -> None:
            async def go() -> None:
                await hosts[which].restart()
                await self._reap()

            call(go)
            assert self.inflight is None or self.inflight.host != which

        @rule(which=st.integers(0, 1))
        def die(self, which: int) -> None:
            async def go() -> None:
                await hosts[which].die()
                await self._reap()

            call(go)
            assert self.inflight is None or self.inflight.host != which

        @rule()
        def expire_leases(self) -> None:
            """Trio's clock passes the lease ttl: a dead store's lease has expired."""
            call(trio.sleep, LEASE_TTL * 1.5)

        @invariant()
        def consistent(self) -> None:
            async def check() -> None:
                try:
                    events = await storage.read(SESSION)
                except KeyError:
                    events = []  # deleted and not created again
                assert [e.seq for e in events] == list(range(1, len(events) + 1)), "log not contiguous"
                users = [e.payload.message.text for e in events if e.type == "message.added" and e.payload.message.role == "user"]
                queued = [e.payload.message.text for e in events if e.type == "input.queued"]
                taken = Counter(users)
                waiting = Counter(q for q in queued if q not in taken)
                seen = taken + waiting
                for text in set(self.accepted):
                    assert seen[text] == self.accepted.count(text), f"{text!r}: accepted {self.accepted.count(text)}x, found {seen[text]}x"
                for text in self.maybe:
                    assert seen[text] <= 1, f"{text!r}: failed to send, found {seen[text]}x"
                assert all(t.startswith(f"i{self.incarnation}-") for t in users), "a message of an old incarnation"
                for request in requests:
                    assert len({t.split("-", 1)[0] for t in request}) <= 1, f"a model request mixed incarnations: {request}"
                open_run: str | None = None
                for event in events:
                    if event.type == "run.started":
                        assert open_run is None, f"run {event.run_id} started while {open_run} was running"
                        open_run = event.run_id
                    elif event.type == "run.finished" and event.run_id == open_run:
                        open_run = None
                record = await storage.load(SESSION)
                lease = record.lease if record is not None else None
                if lease is not None and lease.live(hosts[0].clock()):
                    for host in hosts:
                        if host.owner == lease.owner:
                            assert host.running(), f"{lease.owner} holds a lease but runs nothing"
                    assert sum(host.running() for host in hosts) <= 1, "two stores run the session"

            call(check)

    run_state_machine_as_test(
        TwoStores,
        settings=settings(
            max_examples=20, stateful_step_count=12, deadline=None, database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


async def test_two_stores_on_one_storage_state_machine(autojump_clock: trio.testing.MockClock) -> None:
    """Random interleavings across two stores, with dying stores and expiring leases in
    mock time, lose nothing, duplicate nothing, never mix incarnations and never have two
    owners."""
    storage = MemoryStorage()
    clock = trio_lease_clock()
    async with trio.open_nursery() as nursery:
        hosts = [Host(nursery, Freezable(storage), clock), Host(nursery, Freezable(storage), clock)]
        for host in hosts:
            await host.start()
        token = trio.lowlevel.current_trio_token()
        await trio.to_thread.run_sync(run_machine, hosts, storage, token)
        for host in hosts:
            assert host.stop is not None
            host.stop.set()
