"""The session store: plugins resolved once, sessions loaded on demand, runs in its nursery."""

from __future__ import annotations

import builtins
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, final

import trio

from ._agent import Agent
from ._plugins import PluginInfo, PluginRegistry
from ._policy import ErrorPolicy
from ._records import Message, RunResult, SessionRecord
from ._resolve import build_components
from ._runtime import Runtime, StoreEvent, validate_labels, validate_session_id
from ._session import ApprovalHandle, RunStream, Session
from .contracts import (
    LogSink,
    ModelProvider,
    Page,
    Sandbox,
    SessionFilter,
    SessionStorage,
)
from .errors import ConfigError, HarnessError, SessionExists, StoreClosed

__all__ = ["SessionStore", "close_session", "create_session_store"]

SUBSCRIBER_BUFFER = 10_000
"""Events a subscriber may fall behind by before it is dropped (its iteration ends)."""

@final
class SessionStore:
    """Owns loaded sessions and the plugins they use. Create with ``create_session_store``."""

    def __init__(self, runtime: Runtime, registry: PluginRegistry, owned: list[Any], built_sinks: list[LogSink]) -> None:
        self._rt = runtime
        self._registry = registry
        self._owned = owned
        self._sinks = built_sinks
        self._sessions: dict[str, Session] = {}
        self._loading: dict[str, trio.Lock] = {}
        self._subscribers: list[trio.MemorySendChannel[StoreEvent]] = []
        self._closed = False
        runtime.publish = self._publish
        runtime.forget = self._forget
        runtime.closing = lambda: self._closed
        runtime.has_subscribers = lambda: bool(self._subscribers)

    # -- plumbing ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the session store is closed")

    def _publish(self, event: StoreEvent) -> None:
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                self._subscribers.remove(channel)
                channel.close()
                self._rt.log.warning("subscriber_dropped", reason="fell too far behind")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.remove(channel)

    @property
    def agent(self) -> Agent:
        return self._rt.agent

    @property
    def storage(self) -> SessionStorage:
        return self._rt.storage

    @property
    def log_sinks(self) -> builtins.list[LogSink]:
        """The sinks the store built from names (instances passed in stay the caller's)."""
        return list(self._sinks)

    @property
    def closed(self) -> bool:
        return self._closed

    def plugins(self) -> builtins.list[PluginInfo]:
        """Every plugin component with its kind, name, distribution, version and status."""
        return self._registry.listing()

    # -- sessions ------------------------------------------------------------------

    async def _open(self, record: SessionRecord, events: Sequence[Any], created: bool) -> Session:
        session = Session(self._rt, record, events)
        self._sessions[record.id] = session
        self._publish(StoreEvent("session.created" if created else "session.opened", record.id))
        if self._rt.hooks.has("session_opened"):
            await self._rt.hooks.notify(
                "session_opened", session.disabled_hooks, session_id=record.id,
                agent=record.agent, labels=dict(record.labels),
            )
        # A hydrated session may hold queued follow-ups and approvals that expire.
        session.schedule_expiries()
        session.kick()
        return session

    def _new_record(self, session_id: str, labels: Mapping[str, Any]) -> SessionRecord:
        try:
            clean = validate_labels(labels)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        agent = self._rt.agent
        state = {}
        if agent.state is not None:
            from .codec import converter

            state = converter.unstructure(agent.state())
        now = time.time()
        return SessionRecord(
            session_id, agent.name, clean, now, now, mode=agent.default_mode, state=state
        )

    async def create(self, session_id: str | None = None, **labels: str) -> Session:
        """Create a new session (a generated id when ``None``). ``SessionExists`` if taken."""
        self._check_open()
        from ._records import new_id

        session_id = validate_session_id(session_id if session_id is not None else new_id("ses"))
        record = self._new_record(session_id, labels)
        async with self._lock_for(session_id):
            if session_id in self._sessions:
                raise SessionExists(f"session '{session_id}' already exists")
            await self._rt.storage.create(record)
            return await self._open(record, (), created=True)

    def get(self, session_id: str) -> Session | None:
        """The loaded session, or ``None`` (this never touches storage)."""
        self._check_open()
        return self._sessions.get(session_id)

    @asynccontextmanager
    async def _lock_for_cm(self, session_id: str) -> AsyncIterator[None]:
        lock = self._loading.setdefault(session_id, trio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._loading.pop(session_id, None)

    def _lock_for(self, session_id: str) -> Any:
        return self._lock_for_cm(session_id)

    async def get_or_create(self, session_id: str, **labels: str) -> Session:
        """The loaded session; else hydrate it from storage; else create it with ``labels``.

        Labels only apply to a session being created.
        """
        self._check_open()
        validate_session_id(session_id)
        session = self._sessions.get(session_id)
        if session is not None:
            return session
        async with self._lock_for(session_id):
            session = self._sessions.get(session_id)
            if session is not None:
                return session
            record = await self._rt.storage.load(session_id)
            if record is None:
                record = self._new_record(session_id, labels)
                try:
                    await self._rt.storage.create(record)
                except SessionExists:
                    record = await self._rt.storage.load(session_id)
                    if record is None:
                        raise
                else:
                    return await self._open(record, (), created=True)
            if record.agent != self._rt.agent.name:
                raise ConfigError(
                    f"session '{session_id}' belongs to agent '{record.agent}', and this store "
                    f"serves agent '{self._rt.agent.name}'"
                )
            events = await self._rt.storage.read(session_id)
            return await self._open(record, events, created=False)

    async def list(
        self, limit: int = 50, cursor: str | None = None, *, agent: str | None = None, **labels: str
    ) -> Page:
        """A page of session records, newest first; ``labels`` and ``agent`` filter.

        Pass ``page.next_cursor`` back for the next page (``None`` at the end).
        """
        self._check_open()
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be between 1 and 1000")
        return await self._rt.storage.list(SessionFilter(agent, dict(labels)), limit, cursor)

    # -- conveniences that go through a session ------------------------------------

    async def send(self, session_id: str, message: str | Message, *, model: str | None = None, **labels: str) -> RunResult:
        """``get_or_create(session_id, **labels)`` then ``session.send(message)``."""
        session = await self.get_or_create(session_id, **labels)
        return await session.send(message, model=model)

    @asynccontextmanager
    async def stream(
        self, session_id: str, message: str | Message, *, model: str | None = None, **labels: str
    ) -> AsyncIterator[RunStream]:
        """``get_or_create`` then ``session.stream(message)``."""
        session = await self.get_or_create(session_id, **labels)
        async with session.stream(message, model=model) as events:
            yield events

    async def approve(self, session_id: str, approval_id: str, *, remember: str | None = None) -> RunResult | None:
        session = await self.get_or_create(session_id)
        return await session.approve(approval_id, remember=remember)

    async def deny(self, session_id: str, approval_id: str, reason: str = "denied by the user") -> RunResult | None:
        session = await self.get_or_create(session_id)
        return await session.deny(approval_id, reason)

    async def resume(self, session_id: str, call_id: str, data: Any = None) -> RunResult | None:
        session = await self.get_or_create(session_id)
        return await session.resume(call_id, data)

    def pending_approvals(self, session_id: str | None = None) -> builtins.list[ApprovalHandle]:
        """Pending approvals of one loaded session, or of every loaded session.

        A parked session that is not loaded is listed once ``get_or_create`` loads it.
        """
        self._check_open()
        if session_id is not None:
            session = self._sessions.get(session_id)
            return session.pending_approvals if session else []
        return [h for s in self._sessions.values() for h in s.pending_approvals]

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[trio.MemoryReceiveChannel[StoreEvent]]:
        """Iterate store events (sessions created, opened, closed, deleted; every durable
        event of every loaded session). A subscriber that falls far behind is dropped:
        its iteration ends early."""
        self._check_open()
        send, receive = trio.open_memory_channel[StoreEvent](SUBSCRIBER_BUFFER)
        self._subscribers.append(send)
        try:
            async with receive:
                yield receive
        finally:
            if send in self._subscribers:
                self._subscribers.remove(send)
            send.close()

    # -- unloading -----------------------------------------------------------------

    async def close(self, session_id: str) -> bool:
        """Unload a session (its run is aborted, its sandbox closed); data is kept."""
        self._check_open()
        session = self._sessions.get(session_id)
        if session is None:
            return False
        await close_session(self._rt, session, "close")
        return True

    async def delete(self, session_id: str) -> bool:
        """Unload the session and remove its data and workspace. ``True`` if it existed."""
        self._check_open()
        validate_session_id(session_id)
        session = self._sessions.get(session_id)
        if session is not None:
            await close_session(self._rt, session, "delete")
        await self._rt.sandbox.destroy(session_id)
        existed = await self._rt.storage.delete(session_id)
        self._publish(StoreEvent("session.deleted", session_id))
        return existed or session is not None

    async def clear(self) -> None:
        """Unload every session; nothing is deleted."""
        self._check_open()
        async with trio.open_nursery() as nursery:
            for session in list(self._sessions.values()):
                nursery.start_soon(close_session, self._rt, session, "clear")
        self._publish(StoreEvent("session.cleared", None))

    def _forget(self, session: Session) -> None:
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]

    async def aclose(self) -> None:
        """Close everything: abort runs (each leaves its session loadable), close sessions,
        then the plugins the store created. Bounded by the store's grace period; later
        calls fail with ``StoreClosed``."""
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self._rt.grace * 2
            async with trio.open_nursery() as nursery:
                for session in list(self._sessions.values()):
                    nursery.start_soon(close_session, self._rt, session, "store_closed")
            for channel in self._subscribers:
                channel.close()
            self._subscribers.clear()
            for component in reversed(self._owned):
                try:
                    await component.aclose()
                except Exception as exc:
                    self._rt.log.error("plugin_close_failed", component=type(component).__name__, error=str(exc))
            for sink in self._sinks:  # only the sinks the store built; instances are the caller's
                try:
                    await sink.aclose()
                except Exception:
                    pass


async def close_session(runtime: Runtime, session: Session, reason: str) -> None:
    """Unload ``session`` from its store: abort, release, forget, tell the hooks."""
    if session.closed:
        return
    try:
        await session.shutdown(reason)
    except HarnessError as exc:
        # Closing must not fail because the last write of an aborted run was refused.
        runtime.log.error("session_close_incomplete", session_id=session.id, error=str(exc))
    runtime.forget(session)
    runtime.publish(StoreEvent("session.closed", session.id))
    if runtime.hooks.has("session_closed"):
        with trio.CancelScope(shield=True, deadline=trio.current_time() + runtime.grace):
            await runtime.hooks.notify("session_closed", session.disabled_hooks, session_id=session.id, reason=reason)


# -- construction ---------------------------------------------------------------------


@asynccontextmanager
async def create_session_store(
    *,
    agent: Agent,
    providers: Sequence[str | ModelProvider | Mapping[str, Any]] = ("scripted",),
    default_model: str = "scripted/echo",
    storage: str | SessionStorage = "memory",
    storage_options: Mapping[str, Any] | None = None,
    sandbox: str | Sandbox = "noop",
    sandbox_options: Mapping[str, Any] | None = None,
    resources: Mapping[str, Any] | None = None,
    logging: Mapping[str, Any] | None = None,
    error_policy: Mapping[str, Any] | ErrorPolicy | None = None,
    plugins: Sequence[object] = (),
    strict_plugins: bool = False,
    autoload_plugins: bool | None = None,
    tool_options: Mapping[str, Any] | None = None,
    grace_period: float = 5.0,
) -> AsyncIterator[SessionStore]:
    """Open a session store; closing the ``async with`` closes it (``aclose``).

    Plugins are named (``storage="sqlite"``, with ``storage_options``) or passed as
    instances. A named plugin is created and closed by the store; an instance belongs to
    the caller. ``providers`` entries are plugin names, ``{"plugin": ..., "options": ...}``
    tables or ``ModelProvider`` instances, each serving its own namespace.
    """
    parts = await build_components(
        agent=agent, providers=providers, default_model=default_model, storage=storage,
        storage_options=storage_options, sandbox=sandbox, sandbox_options=sandbox_options,
        logging=logging, error_policy=error_policy, plugins=plugins, strict_plugins=strict_plugins,
        autoload_plugins=autoload_plugins, tool_options=tool_options,
    )
    try:
        async with trio.open_nursery() as nursery:
            runtime = Runtime(
                agent=parts.agent, tools=dict(parts.tools), providers=dict(parts.providers),
                default_model=parts.default_model, storage=parts.storage, sandbox=parts.sandbox,
                resources=dict(resources or {}), policy=parts.policy, retry=parts.retry, hooks=parts.hooks,
                log=parts.log, redactor=parts.redactor, nursery=nursery, publish=lambda _e: None,
                forget=lambda _s: None, grace=grace_period,
            )
            store = SessionStore(runtime, parts.registry, list(parts.owned), list(parts.built_sinks))
            parts.log.info("store_opened", storage=type(parts.storage).__name__, providers=sorted(parts.providers))
            try:
                yield store
            finally:
                await store.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The store's own tasks never raise, so a group holding one exception carries the
        # host's: hand it back as raised, not wrapped by our nursery.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
