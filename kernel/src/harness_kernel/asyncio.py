"""harness_kernel for asyncio hosts: the same store and session API, awaited from asyncio.

::

    import asyncio
    from harness_kernel import define_agent
    from harness_kernel.asyncio import create_session_store

    async def main() -> None:
        async with create_session_store(agent=define_agent(name="support")) as store:
            result = await store.send("customer-42", "Hello!")

    asyncio.run(main())

The trio kernel runs inside the host's asyncio loop in trio guest mode
(``trio.lowlevel.start_guest_run``): one kernel per loop, started by the first store
and finished when the last one closes, or when the loop shuts down (``asyncio.run``
cancelling what is left). Every method has the signature and the errors of its trio
twin (``harness_kernel.SessionStore``, ``harness_kernel.Session``); cancelling the
asyncio task awaiting one cancels the call as cancelling a trio caller does, so a
``send`` or a ``stream`` is aborted and recorded. Streams are asyncio async iterators,
fed in batches: everything the kernel produced in one trio tick wakes the reader once.

Code the kernel calls (tools, hooks, context providers, providers) runs in trio, as
it does under ``trio.run``; so do the methods of the plugin objects ``store.storage``
and ``store.log_sinks`` hand out: go through the store and its sessions instead.
"""

from __future__ import annotations

import builtins
import functools
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal, TypeVar, final

from . import (
    Agent,
    ApprovalHandle,
    ContextCompacted,
    DisplayState,
    Event,
    LogSink,
    Message,
    PluginInfo,
    RunResult,
    RunSummary,
    StoreEvent,
    SuspensionHandle,
    Usage,
)
from . import RunStream as _TrioRunStream
from . import Session as _TrioSession
from . import SessionStore as _TrioSessionStore
from . import create_session_store as _trio_create_session_store
from . import open_store_from_config as _trio_open_store_from_config
from ._guest import Buffer, GuestKernel, acquire, call, held
from .contracts import ListOrder, Page, SessionStorage

__all__ = [
    "RunStream",
    "Session",
    "SessionStore",
    "StoreEvents",
    "create_session_store",
    "open_store_from_config",
]

_T = TypeVar("_T")
_Remember = Literal["tool", "category"]


@final
class RunStream:
    """What ``stream()`` yields: an asyncio async iterator of the run's events (the items
    of ``harness_kernel.RunStream``); ``result`` once iteration ended."""

    def __init__(self, kernel: GuestKernel, events: _TrioRunStream, buffer: Buffer) -> None:
        self._kernel = kernel
        self._events = events
        self._buffer = buffer
        self.run_id: str = events.run_id

    def __aiter__(self) -> RunStream:
        return self

    async def __anext__(self) -> Any:
        return await self._buffer.next()

    @property
    def result(self) -> RunResult | None:
        """The run's result once it ended (``None`` before)."""
        return self._events.result

    async def wait(self) -> RunResult:
        """Wait for the run to end (consuming nothing) and return its result."""
        return await call(self._kernel, self._events.wait)


@final
class StoreEvents:
    """What ``subscribe()`` yields: an asyncio async iterator of ``StoreEvent`` values."""

    def __init__(self, buffer: Buffer) -> None:
        self._buffer = buffer

    def __aiter__(self) -> StoreEvents:
        return self

    async def __anext__(self) -> StoreEvent:
        item: StoreEvent = await self._buffer.next()
        return item


# -- sessions and stores -----------------------------------------------------------------


@final
class Session:
    """``harness_kernel.Session`` for asyncio: the same names; methods are awaitable."""

    def __init__(self, kernel: GuestKernel, session: _TrioSession) -> None:
        self._kernel = kernel
        self._session = session

    @property
    def id(self) -> str:
        return self._session.id

    @property
    def labels(self) -> Mapping[str, str]:
        return self._session.labels

    @property
    def title(self) -> str:
        return self._session.title

    @property
    def preview(self) -> str:
        return self._session.preview

    @property
    def tags(self) -> tuple[str, ...]:
        return self._session.tags

    @property
    def pinned(self) -> bool:
        return self._session.pinned

    async def set_metadata(
        self,
        *,
        title: str | None = None,
        tags: Iterable[str] | None = None,
        pinned: bool | None = None,
    ) -> None:
        await call(
            self._kernel,
            functools.partial(self._session.set_metadata, title=title, tags=tags, pinned=pinned),
        )

    @property
    def is_running(self) -> bool:
        return self._session.is_running

    @property
    def closed(self) -> bool:
        return self._session.closed

    @property
    def mode(self) -> str:
        return self._session.mode

    @property
    def model(self) -> str:
        return self._session.model

    @property
    def model_override(self) -> str | None:
        return self._session.model_override

    @property
    def state(self) -> Any:
        return self._session.state

    @property
    def usage(self) -> Usage:
        return self._session.usage

    @property
    def last_seq(self) -> int:
        return self._session.last_seq

    @property
    def current_run(self) -> RunSummary | None:
        return self._session.current_run

    @property
    def pending_approvals(self) -> list[ApprovalHandle]:
        return self._session.pending_approvals

    @property
    def pending_suspensions(self) -> list[SuspensionHandle]:
        return self._session.pending_suspensions

    @property
    def queued_follow_ups(self) -> list[Message]:
        return self._session.queued_follow_ups

    @property
    def grants(self) -> tuple[str, ...]:
        return self._session.grants

    @property
    def display_state(self) -> DisplayState:
        return self._session.display_state

    async def send(
        self, message: str | Message, *, model: str | None = None, output_type: type | None = None
    ) -> RunResult:
        """Run the agent on ``message``; cancelling the awaiting task aborts the run."""
        return await call(
            self._kernel, self._session.send, message, model=model, output_type=output_type
        )

    @asynccontextmanager
    async def stream(
        self, message: str | Message, *, model: str | None = None, output_type: type | None = None
    ) -> AsyncIterator[RunStream]:
        """Run the agent and iterate its events. Leaving the block before the run ended
        (a ``break``, an exception, the task cancelled) aborts the run; the block exits
        once the run has recorded its end."""
        buffer = Buffer(self._kernel)
        opener = functools.partial(
            self._session.stream, message, model=model, output_type=output_type
        )
        async with held(self._kernel, opener, buffer.pump) as events:
            yield RunStream(self._kernel, events, buffer)

    async def abort(self) -> bool:
        return await call(self._kernel, self._session.abort)

    async def follow_up(self, message: str | Message) -> None:
        await call(self._kernel, self._session.follow_up, message)

    async def steer(self, message: str | Message) -> None:
        await call(self._kernel, self._session.steer, message)

    async def btw(self, question: str, *, model: str | None = None) -> str:
        return await call(self._kernel, self._session.btw, question, model=model)

    async def compact(
        self, *, keep_tokens: int | None = None, summarizer: Any = None
    ) -> ContextCompacted | None:
        return await call(
            self._kernel, self._session.compact, keep_tokens=keep_tokens, summarizer=summarizer
        )

    async def switch_mode(self, name: str) -> None:
        await call(self._kernel, self._session.switch_mode, name)

    async def set_model(self, ref: str | None) -> None:
        await call(self._kernel, self._session.set_model, ref)

    async def update_state(self, **changes: Any) -> Any:
        return await call(self._kernel, self._session.update_state, **changes)

    async def approve(
        self, approval_id: str, *, remember: _Remember | None = None
    ) -> RunResult | None:
        return await call(self._kernel, self._session.approve, approval_id, remember=remember)

    async def deny(self, approval_id: str, reason: str = "denied by the user") -> RunResult | None:
        return await call(self._kernel, self._session.deny, approval_id, reason)

    async def resume(self, call_id: str, data: Any = None) -> RunResult | None:
        return await call(self._kernel, self._session.resume, call_id, data)

    async def grant_tool(self, name: str) -> None:
        await call(self._kernel, self._session.grant_tool, name)

    async def grant_category(self, category: str) -> None:
        await call(self._kernel, self._session.grant_category, category)

    async def revoke(self, grant: str) -> None:
        await call(self._kernel, self._session.revoke, grant)

    async def history(self, limit: int | None = None, before: str | None = None) -> list[Message]:
        return await call(self._kernel, self._session.history, limit, before)

    async def runs(self) -> list[RunSummary]:
        return await call(self._kernel, self._session.runs)

    async def run_events(self, run_id: str) -> list[Event]:
        return await call(self._kernel, self._session.run_events, run_id)

    async def close(self) -> None:
        await call(self._kernel, self._session.close)

    def __repr__(self) -> str:
        return repr(self._session)


@final
class SessionStore:
    """``harness_kernel.SessionStore`` for asyncio. Open with ``create_session_store``."""

    def __init__(self, kernel: GuestKernel, store: _TrioSessionStore) -> None:
        self._kernel = kernel
        self._store = store
        self._sessions: weakref.WeakValueDictionary[str, Session] = weakref.WeakValueDictionary()

    def _wrap(self, session: _TrioSession) -> Session:
        known = self._sessions.get(session.id)
        if known is None or known._session is not session:
            known = self._sessions[session.id] = Session(self._kernel, session)
        return known

    @property
    def agent(self) -> Agent:
        return self._store.agent

    @property
    def storage(self) -> SessionStorage:
        return self._store.storage

    @property
    def log_sinks(self) -> builtins.list[LogSink]:
        return self._store.log_sinks

    @property
    def closed(self) -> bool:
        return self._store.closed

    def plugins(self) -> builtins.list[PluginInfo]:
        return self._store.plugins()

    async def create(self, session_id: str | None = None, **labels: str) -> Session:
        return self._wrap(await call(self._kernel, self._store.create, session_id, **labels))

    def get(self, session_id: str) -> Session | None:
        session = self._store.get(session_id)
        return self._wrap(session) if session is not None else None

    async def get_or_create(self, session_id: str, **labels: str) -> Session:
        return self._wrap(await call(self._kernel, self._store.get_or_create, session_id, **labels))

    async def list(
        self,
        limit: int = 50,
        cursor: str | None = None,
        *,
        agent: str | None = None,
        tags: Iterable[str] = (),
        pinned: bool | None = None,
        order: ListOrder = "created",
        **labels: str,
    ) -> Page:
        lister = functools.partial(
            self._store.list,
            limit,
            cursor,
            agent=agent,
            tags=tags,
            pinned=pinned,
            order=order,
            **labels,
        )
        return await call(self._kernel, lister)

    async def send(
        self,
        session_id: str,
        message: str | Message,
        *,
        model: str | None = None,
        output_type: type | None = None,
        **labels: str,
    ) -> RunResult:
        return await (await self.get_or_create(session_id, **labels)).send(
            message, model=model, output_type=output_type
        )

    @asynccontextmanager
    async def stream(
        self,
        session_id: str,
        message: str | Message,
        *,
        model: str | None = None,
        output_type: type | None = None,
        **labels: str,
    ) -> AsyncIterator[RunStream]:
        session = await self.get_or_create(session_id, **labels)
        async with session.stream(message, model=model, output_type=output_type) as events:
            yield events

    async def approve(
        self, session_id: str, approval_id: str, *, remember: _Remember | None = None
    ) -> RunResult | None:
        return await call(
            self._kernel, self._store.approve, session_id, approval_id, remember=remember
        )

    async def deny(
        self, session_id: str, approval_id: str, reason: str = "denied by the user"
    ) -> RunResult | None:
        return await call(self._kernel, self._store.deny, session_id, approval_id, reason)

    async def resume(self, session_id: str, call_id: str, data: Any = None) -> RunResult | None:
        return await call(self._kernel, self._store.resume, session_id, call_id, data)

    def pending_approvals(self, session_id: str | None = None) -> builtins.list[ApprovalHandle]:
        return self._store.pending_approvals(session_id)

    @asynccontextmanager
    async def subscribe(self, *, display: bool = True) -> AsyncIterator[StoreEvents]:
        """Iterate store events, as ``harness_kernel.SessionStore.subscribe``."""
        buffer = Buffer(self._kernel)
        opened = functools.partial(self._store.subscribe, display=display)
        async with held(self._kernel, opened, buffer.pump):
            yield StoreEvents(buffer)

    async def close(self, session_id: str) -> bool:
        return await call(self._kernel, self._store.close, session_id)

    async def delete(self, session_id: str) -> bool:
        return await call(self._kernel, self._store.delete, session_id)

    async def clear(self) -> None:
        await call(self._kernel, self._store.clear)

    async def aclose(self) -> None:
        """Close everything, as ``harness_kernel.SessionStore.aclose``."""
        if not self._store.closed:
            await call(self._kernel, self._store.aclose)


# -- opening -----------------------------------------------------------------------------


@asynccontextmanager
async def _open(
    open_cm: Callable[[], AbstractAsyncContextManager[_TrioSessionStore]],
) -> AsyncIterator[SessionStore]:
    kernel = await acquire()
    try:
        async with held(kernel, open_cm, store=True) as store:
            yield SessionStore(kernel, store)
    finally:
        await kernel.release()


def create_session_store(**options: Any) -> AbstractAsyncContextManager[SessionStore]:
    """Open a session store in the running asyncio loop: ``async with`` it.

    Takes the keyword arguments of ``harness_kernel.create_session_store`` and raises
    the same errors. The first store of a loop starts the kernel in it; the last one
    closing finishes the kernel.
    """
    return _open(functools.partial(_trio_create_session_store, **options))


def open_store_from_config(
    config: Any = None, *, resources: Mapping[str, Any] | None = None, **overrides: Any
) -> AbstractAsyncContextManager[SessionStore]:
    """``harness_kernel.open_store_from_config`` for asyncio: ``async with`` it."""
    arguments: dict[str, Any] = {"resources": resources, **overrides}
    if config is not None:
        arguments["config"] = config
    return _open(functools.partial(_trio_open_store_from_config, **arguments))
