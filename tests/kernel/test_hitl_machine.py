"""A state machine over everything a person can do to a running agent (K2).

Random interleavings of send, follow_up, steer, abort, approve, deny, resume, close,
store restart and hydrate run against a scripted model. After every step the session
is left to settle and the machine checks: no accepted user message is lost or
duplicated, every approval is resolved at most once, the log is contiguous, and
display_state equals a fresh fold of the persisted events.
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

from harness_kernel import MemoryStorage, SessionStore
from harness_kernel._fold import SessionFold

from .helpers import open_store
from .interactive import AGENT, GATES, brain

SESSION = "machine"


@attrs.define
class Host:
    """Owns the store in a trio task of its own, so a rule can restart it."""

    nursery: trio.Nursery
    storage: MemoryStorage = attrs.Factory(MemoryStorage)
    store: SessionStore | None = None
    stop: trio.Event | None = None
    stopped: trio.Event | None = None

    async def start(self) -> None:
        ready, self.stop, self.stopped = trio.Event(), trio.Event(), trio.Event()
        self.nursery.start_soon(self._hold, ready, self.stop, self.stopped)
        await ready.wait()

    async def _hold(self, ready: trio.Event, stop: trio.Event, stopped: trio.Event) -> None:
        try:
            async with open_store({"main": brain}, agent=AGENT, storage=self.storage) as store:
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


def run_machine(host: Host, portal: Any) -> None:
    def call(fn: Any, *args: Any) -> Any:
        async def go() -> Any:
            result = await fn(*args)
            await trio.testing.wait_all_tasks_blocked()  # let queued work settle
            return result

        return trio.from_thread.run(go, trio_token=portal)

    class HumanInTheLoop(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.counter = 0
            self.accepted: list[str] = []
            GATES.clear()
            call(self._reset)

        async def _reset(self) -> None:
            await host.store.delete(SESSION)

        def text(self, kind: str) -> str:
            self.counter += 1
            return f"{kind}#{self.counter}"

        async def session(self) -> Any:
            return await host.store.get_or_create(SESSION)

        # -- what a person does ----------------------------------------------------

        @rule(kind=st.sampled_from(["plain", "tools:write=a", "tools:confirm=b", "tools:read=r;write=w", "tools:pay=500"]))
        def send(self, kind: str) -> None:
            async def go() -> None:
                session = await self.session()
                text = kind if kind.startswith("tools:") else self.text(kind)
                await session.send(text)
                self.accepted.append(text)

            call(go)

        @rule(how=st.sampled_from(["follow_up", "steer"]))
        def queue_during_a_run(self, how: str) -> None:
            gate = f"g{self.counter}"

            async def go() -> None:
                session = await self.session()
                if session.pending_approvals or session.pending_suspensions:
                    return  # a new message would end the parked run first; covered by send
                waiting = f"tools:wait={gate}"
                queued = self.text(how)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(session.send, waiting)
                    await trio.testing.wait_all_tasks_blocked()
                    await getattr(session, how)(queued)
                    GATES.setdefault(gate, trio.Event()).set()
                self.accepted += [waiting, queued]

            call(go)

        @rule()
        def follow_up_now(self) -> None:
            async def go() -> None:
                session = await self.session()
                text = self.text("later")
                await session.follow_up(text)
                self.accepted.append(text)

            call(go)

        @rule(approve=st.booleans(), remember=st.sampled_from([None, None, "tool"]))
        def decide(self, approve: bool, remember: str | None) -> None:
            async def go() -> None:
                session = await self.session()
                if session.pending_approvals:
                    handle = session.pending_approvals[0]
                    if approve:
                        await session.approve(handle.approval_id, remember=remember)
                    else:
                        await session.deny(handle.approval_id, "no thanks")

            call(go)

        @rule(data=st.sampled_from(["yes", {"ok": True}, None]))
        def resume(self, data: Any) -> None:
            async def go() -> None:
                session = await self.session()
                if session.pending_suspensions:
                    await session.resume(session.pending_suspensions[0].call_id, data)

            call(go)

        @rule()
        def abort(self) -> None:
            async def go() -> None:
                await (await self.session()).abort()

            call(go)

        @rule()
        def close_and_hydrate(self) -> None:
            async def go() -> None:
                await host.store.close(SESSION)
                await self.session()

            call(go)

        @rule()
        def restart(self) -> None:
            call(host.restart)
            call(self.session)

        # -- what must always hold ---------------------------------------------------

        @invariant()
        def consistent(self) -> None:
            async def check() -> None:
                session = await self.session()
                events = await host.storage.read(SESSION)
                assert [e.seq for e in events] == list(range(1, len(events) + 1)), "log not contiguous"
                history = [m.text for m in await session.history() if m.role == "user"]
                queued = [m.text for m in session.queued_follow_ups]
                seen = Counter(history) + Counter(queued)
                for text in set(self.accepted):
                    assert seen[text] == self.accepted.count(text), f"{text!r}: accepted {self.accepted.count(text)}x, found {seen[text]}x"
                assert not (set(seen) - set(self.accepted)), f"unknown user messages {set(seen) - set(self.accepted)}"
                resolved = Counter(e.payload.approval_id for e in events if e.type == "approval.resolved")
                assert all(n == 1 for n in resolved.values()), f"approvals resolved twice: {resolved}"
                if not session.is_running:
                    fold = SessionFold(session.id, AGENT.default_mode)
                    for event in events:
                        fold.apply(event)
                    assert session.display_state == fold.display(), "display_state differs from a fresh fold"
                    snap = SessionFold.from_snapshot(session.id, fold.snapshot(), fold.last_seq)
                    assert snap.display() == fold.display(), "the snapshot does not stand for the fold"

            call(check)

    run_state_machine_as_test(
        HumanInTheLoop,
        settings=settings(
            max_examples=25, stateful_step_count=12, deadline=None, database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


async def test_human_in_the_loop_state_machine() -> None:
    """Random interleavings of every control keep history, approvals, log and display sound."""
    async with trio.open_nursery() as nursery:
        host = Host(nursery)
        await host.start()
        token = trio.lowlevel.current_trio_token()
        await trio.to_thread.run_sync(run_machine, host, token)
        assert host.stop is not None
        host.stop.set()
