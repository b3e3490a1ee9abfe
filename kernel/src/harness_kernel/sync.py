"""harness_kernel for synchronous code: the same store and session API, blocking.

::

    from harness_kernel import define_agent
    from harness_kernel.sync import create_session_store

    with create_session_store(agent=define_agent(name="support")) as store:
        result = store.send("customer-42", "Hello!")

For scripts, notebooks, Django views and WSGI apps. The trio kernel runs in one
background thread (a portal), started by the first store and finished when the last
one closes, or at interpreter exit for stores left open. Calls may come from any
thread; each blocks until the kernel answered, with the errors of its trio twin
(``harness_kernel.SessionStore``, ``harness_kernel.Session``). Ctrl-C while a call or
a stream waits cancels it as cancelling a trio caller does: the run is aborted and
recorded, then ``KeyboardInterrupt`` goes on. Streams are plain iterators.

Code the kernel calls (tools, hooks, providers) runs in the kernel's thread, in trio;
it must not call this module (that would wait for itself), and says so if it does.
"""

from __future__ import annotations

import builtins
import functools
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager
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
from ._portal import Buffer, Portal, acquire, held, release
from .contracts import ListOrder, Page, SessionStorage
from .errors import StoreClosed

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
_EXIT_JOIN = 60.0  # seconds: stores left open close within twice their grace period


@final
class RunStream:
    """What ``stream()`` yields: a plain iterator of the run's events (the items of
    ``harness_kernel.RunStream``); ``result`` once iteration ended."""

    def __init__(self, portal: Portal, events: _TrioRunStream, buffer: Buffer) -> None:
        self._portal = portal
        self._events = events
        self._buffer = buffer
        self.run_id: str = events.run_id

    def __iter__(self) -> RunStream:
        return self

    def __next__(self) -> Any:
        return self._buffer.next()

    @property
    def result(self) -> RunResult | None:
        """The run's result once it ended (``None`` before)."""
        return self._portal.read(lambda: self._events.result)

    def wait(self) -> RunResult:
        """Wait for the run to end (consuming nothing) and return its result."""
        return self._portal.call(self._events.wait)


@final
class StoreEvents:
    """What ``subscribe()`` yields: a plain iterator of ``StoreEvent`` values."""

    def __init__(self, buffer: Buffer) -> None:
        self._buffer = buffer

    def __iter__(self) -> StoreEvents:
        return self

    def __next__(self) -> StoreEvent:
        item: StoreEvent = self._buffer.next()
        return item


# -- sessions and stores -----------------------------------------------------------------


@final
class Session:
    """``harness_kernel.Session`` for synchronous code: the same names, blocking."""

    def __init__(self, portal: Portal, session: _TrioSession) -> None:
        self._portal = portal
        self._session = session
        self._id = session.id

    @property
    def id(self) -> str:
        return self._id

    @property
    def labels(self) -> Mapping[str, str]:
        return self._portal.read(lambda: self._session.labels)

    @property
    def title(self) -> str:
        return self._portal.read(lambda: self._session.title)

    @property
    def preview(self) -> str:
        return self._portal.read(lambda: self._session.preview)

    @property
    def tags(self) -> tuple[str, ...]:
        return self._portal.read(lambda: self._session.tags)

    @property
    def pinned(self) -> bool:
        return self._portal.read(lambda: self._session.pinned)

    def set_metadata(
        self,
        *,
        title: str | None = None,
        tags: Iterable[str] | None = None,
        pinned: bool | None = None,
    ) -> None:
        self._portal.call(
            functools.partial(self._session.set_metadata, title=title, tags=tags, pinned=pinned)
        )

    @property
    def is_running(self) -> bool:
        return self._portal.read(lambda: self._session.is_running)

    @property
    def closed(self) -> bool:
        return self._portal.read(lambda: self._session.closed)

    @property
    def mode(self) -> str:
        return self._portal.read(lambda: self._session.mode)

    @property
    def model(self) -> str:
        return self._portal.read(lambda: self._session.model)

    @property
    def model_override(self) -> str | None:
        return self._portal.read(lambda: self._session.model_override)

    @property
    def state(self) -> Any:
        return self._portal.read(lambda: self._session.state)

    @property
    def usage(self) -> Usage:
        return self._portal.read(lambda: self._session.usage)

    @property
    def last_seq(self) -> int:
        return self._portal.read(lambda: self._session.last_seq)

    @property
    def current_run(self) -> RunSummary | None:
        return self._portal.read(lambda: self._session.current_run)

    @property
    def pending_approvals(self) -> list[ApprovalHandle]:
        return self._portal.read(lambda: self._session.pending_approvals)

    @property
    def pending_suspensions(self) -> list[SuspensionHandle]:
        return self._portal.read(lambda: self._session.pending_suspensions)

    @property
    def queued_follow_ups(self) -> list[Message]:
        return self._portal.read(lambda: self._session.queued_follow_ups)

    @property
    def grants(self) -> tuple[str, ...]:
        return self._portal.read(lambda: self._session.grants)

    @property
    def display_state(self) -> DisplayState:
        return self._portal.read(lambda: self._session.display_state)

    def send(
        self, message: str | Message, *, model: str | None = None, output_type: type | None = None
    ) -> RunResult:
        """Run the agent on ``message``; Ctrl-C while it waits aborts the run."""
        return self._portal.call(self._session.send, message, model=model, output_type=output_type)

    @contextmanager
    def stream(
        self, message: str | Message, *, model: str | None = None, output_type: type | None = None
    ) -> Iterator[RunStream]:
        """Run the agent and iterate its events. Leaving the block before the run ended
        (a ``break``, an exception, Ctrl-C) aborts the run; the block exits once the run
        has recorded its end."""
        buffer = Buffer(self._portal)
        opener = functools.partial(
            self._session.stream, message, model=model, output_type=output_type
        )
        with held(self._portal, opener, buffer.pump) as events:
            yield RunStream(self._portal, events, buffer)

    def abort(self) -> bool:
        return self._portal.call(self._session.abort)

    def follow_up(self, message: str | Message) -> None:
        self._portal.call(self._session.follow_up, message)

    def steer(self, message: str | Message) -> None:
        self._portal.call(self._session.steer, message)

    def btw(self, question: str, *, model: str | None = None) -> str:
        return self._portal.call(self._session.btw, question, model=model)

    def compact(
        self, *, keep_tokens: int | None = None, summarizer: Any = None
    ) -> ContextCompacted | None:
        return self._portal.call(
            self._session.compact, keep_tokens=keep_tokens, summarizer=summarizer
        )

    def switch_mode(self, name: str) -> None:
        self._portal.call(self._session.switch_mode, name)

    def set_model(self, ref: str | None) -> None:
        self._portal.call(self._session.set_model, ref)

    def update_state(self, **changes: Any) -> Any:
        return self._portal.call(self._session.update_state, **changes)

    def approve(self, approval_id: str, *, remember: _Remember | None = None) -> RunResult | None:
        return self._portal.call(self._session.approve, approval_id, remember=remember)

    def deny(self, approval_id: str, reason: str = "denied by the user") -> RunResult | None:
        return self._portal.call(self._session.deny, approval_id, reason)

    def resume(self, call_id: str, data: Any = None) -> RunResult | None:
        return self._portal.call(self._session.resume, call_id, data)

    def grant_tool(self, name: str) -> None:
        self._portal.call(self._session.grant_tool, name)

    def grant_category(self, category: str) -> None:
        self._portal.call(self._session.grant_category, category)

    def revoke(self, grant: str) -> None:
        self._portal.call(self._session.revoke, grant)

    def history(self, limit: int | None = None, before: str | None = None) -> list[Message]:
        return self._portal.call(self._session.history, limit, before)

    def runs(self) -> list[RunSummary]:
        return self._portal.call(self._session.runs)

    def run_events(self, run_id: str) -> list[Event]:
        return self._portal.call(self._session.run_events, run_id)

    def close(self) -> None:
        self._portal.call(self._session.close)

    def __repr__(self) -> str:
        return self._portal.read(lambda: repr(self._session))


@final
class SessionStore:
    """``harness_kernel.SessionStore`` for synchronous code. Open with
    ``create_session_store``; safe to share between threads."""

    def __init__(self, portal: Portal, store: _TrioSessionStore) -> None:
        self._portal = portal
        self._store = store
        self._sessions: weakref.WeakValueDictionary[str, Session] = weakref.WeakValueDictionary()
        self._wrapping = threading.Lock()

    def _wrap(self, session: _TrioSession) -> Session:
        with self._wrapping:
            known = self._sessions.get(session.id)
            if known is None or known._session is not session:
                known = self._sessions[session.id] = Session(self._portal, session)
            return known

    @property
    def agent(self) -> Agent:
        return self._store.agent

    @property
    def storage(self) -> SessionStorage:
        return self._store.storage

    @property
    def log_sinks(self) -> builtins.list[LogSink]:
        return self._portal.read(lambda: self._store.log_sinks)

    @property
    def closed(self) -> bool:
        try:
            return self._portal.read(lambda: self._store.closed)
        except StoreClosed:  # the kernel itself has finished
            return True

    def plugins(self) -> builtins.list[PluginInfo]:
        return self._portal.read(self._store.plugins)

    def create(self, session_id: str | None = None, **labels: str) -> Session:
        return self._wrap(self._portal.call(self._store.create, session_id, **labels))

    def get(self, session_id: str) -> Session | None:
        session = self._portal.read(lambda: self._store.get(session_id))
        return self._wrap(session) if session is not None else None

    def get_or_create(self, session_id: str, **labels: str) -> Session:
        return self._wrap(self._portal.call(self._store.get_or_create, session_id, **labels))

    def list(
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
        return self._portal.call(lister)

    def send(
        self,
        session_id: str,
        message: str | Message,
        *,
        model: str | None = None,
        output_type: type | None = None,
        **labels: str,
    ) -> RunResult:
        return self.get_or_create(session_id, **labels).send(
            message, model=model, output_type=output_type
        )

    @contextmanager
    def stream(
        self,
        session_id: str,
        message: str | Message,
        *,
        model: str | None = None,
        output_type: type | None = None,
        **labels: str,
    ) -> Iterator[RunStream]:
        with self.get_or_create(session_id, **labels).stream(
            message, model=model, output_type=output_type
        ) as events:
            yield events

    def approve(
        self, session_id: str, approval_id: str, *, remember: _Remember | None = None
    ) -> RunResult | None:
        return self._portal.call(self._store.approve, session_id, approval_id, remember=remember)

    def deny(
        self, session_id: str, approval_id: str, reason: str = "denied by the user"
    ) -> RunResult | None:
        return self._portal.call(self._store.deny, session_id, approval_id, reason)

    def resume(self, session_id: str, call_id: str, data: Any = None) -> RunResult | None:
        return self._portal.call(self._store.resume, session_id, call_id, data)

    def pending_approvals(self, session_id: str | None = None) -> builtins.list[ApprovalHandle]:
        return self._portal.read(lambda: self._store.pending_approvals(session_id))

    @contextmanager
    def subscribe(self, *, display: bool = True) -> Iterator[StoreEvents]:
        """Iterate store events, as ``harness_kernel.SessionStore.subscribe``."""
        buffer = Buffer(self._portal)
        opened = functools.partial(self._store.subscribe, display=display)
        with held(self._portal, opened, buffer.pump):
            yield StoreEvents(buffer)

    def close(self, session_id: str) -> bool:
        return self._portal.call(self._store.close, session_id)

    def delete(self, session_id: str) -> bool:
        return self._portal.call(self._store.delete, session_id)

    def clear(self) -> None:
        self._portal.call(self._store.clear)

    def aclose(self) -> None:
        """Close everything, as ``harness_kernel.SessionStore.aclose`` (blocking)."""
        self._portal.call(self._store.aclose)


# -- opening -----------------------------------------------------------------------------


@contextmanager
def _open(
    open_cm: Callable[[], AbstractAsyncContextManager[_TrioSessionStore]],
) -> Iterator[SessionStore]:
    portal = acquire()
    try:
        with held(portal, open_cm, store=True) as store:
            yield SessionStore(portal, store)
    finally:
        release(portal)


def create_session_store(**options: Any) -> AbstractContextManager[SessionStore]:
    """Open a session store: ``with`` it.

    Takes the keyword arguments of ``harness_kernel.create_session_store`` and raises
    the same errors. The first store starts the kernel's thread; the last one closing
    finishes it.
    """
    return _open(functools.partial(_trio_create_session_store, **options))


def open_store_from_config(
    config: Any = None, *, resources: Mapping[str, Any] | None = None, **overrides: Any
) -> AbstractContextManager[SessionStore]:
    """``harness_kernel.open_store_from_config`` for synchronous code: ``with`` it."""
    arguments: dict[str, Any] = {"resources": resources, **overrides}
    if config is not None:
        arguments["config"] = config
    return _open(functools.partial(_trio_open_store_from_config, **arguments))
