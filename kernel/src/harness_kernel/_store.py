"""The session store: plugins resolved once, sessions loaded on demand, runs in its nursery."""

from __future__ import annotations

import builtins
import inspect
import math
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, final

import trio

from ._agent import Agent
from ._cost import Budget, Price, resolve_costs
from ._follow import follow_other_hosts
from ._log import SessionLog
from ._loopcheck import require_trio
from ._mcp_servers import renamed, with_mcp_servers
from ._metadata import clean_tags
from ._plugins import HookRunner, PluginInfo, PluginRegistry
from ._policy import ErrorPolicy
from ._records import Message, Remember, RunResult, SessionRecord, new_id
from ._resolve import build_components
from ._run import Runner
from ._runtime import Hub, Loaded, Runtime, StoreEvent, validate_labels, validate_session_id
from ._session import ApprovalHandle, RunStream, Session
from ._tracing import attach_tracing
from .codec import converter
from .contracts import (
    ListOrder,
    LogSink,
    ModelProvider,
    Page,
    Sandbox,
    SessionFilter,
    SessionStorage,
)
from .errors import (
    ConfigError,
    InvalidArgument,
    SessionExists,
    StoreClosed,
)

__all__ = ["SessionStore", "create_session_store"]


@final
class SessionStore:
    """Owns loaded sessions and the plugins they use. Create with ``create_session_store``."""

    def __init__(
        self,
        runtime: Runtime,
        registry: PluginRegistry,
        owned: Sequence[Any],
        built_sinks: Sequence[LogSink],
        host_sinks: Sequence[LogSink],
    ) -> None:
        self._rt = runtime
        self._hub = runtime.hub
        self._registry = registry
        self._owned = tuple(owned)
        self._built_sinks = tuple(built_sinks)
        self._host_sinks = tuple(host_sinks)
        self._loading: dict[str, trio.Lock] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the session store is closed")

    @property
    def agent(self) -> Agent:
        return self._rt.agent

    @property
    def storage(self) -> SessionStorage:
        return self._rt.storage

    @property
    def log_sinks(self) -> builtins.list[LogSink]:
        """The sinks the store built from names (instances passed in stay the caller's)."""
        return list(self._built_sinks)

    @property
    def closed(self) -> bool:
        return self._closed

    def plugins(self) -> builtins.list[PluginInfo]:
        """Every plugin component with its kind, name, distribution, version and status."""
        return self._registry.listing()

    # -- sessions ------------------------------------------------------------------

    async def _open(self, log: SessionLog, created: bool) -> Session:
        runner = Runner(self._rt, log)
        session = Session(runner)
        self._hub.sessions[log.id] = Loaded(runner, session)
        self._hub.publish(StoreEvent("session.created" if created else "session.opened", log.id))
        record = log.record
        if self._rt.hooks.has("session_opened"):
            await self._rt.hooks.notify(
                "session_opened",
                log.disabled_hooks,
                session_id=record.id,
                agent=record.agent,
                labels=dict(record.labels),
            )
        # A hydrated session may hold queued follow-ups and approvals that expire.
        runner.wake()
        return session

    def _loaded(self, session_id: str) -> Session | None:
        entry = self._hub.sessions.get(session_id)
        if entry is None:
            return None
        session: Session = entry.handle
        return session

    def _new_record(self, session_id: str, labels: Mapping[str, Any]) -> SessionRecord:
        clean = validate_labels(labels)
        agent = self._rt.agent
        state = converter.unstructure(agent.state()) if agent.state is not None else {}
        now = time.time()
        return SessionRecord(
            session_id,
            agent.name,
            clean,
            now,
            now,
            mode=agent.default_mode,
            state=state,
            incarnation=new_id("inc"),
        )

    @asynccontextmanager
    async def _lock_for(self, session_id: str) -> AsyncIterator[None]:
        lock = self._loading.setdefault(session_id, trio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._loading.pop(session_id, None)

    async def create(self, session_id: str | None = None, **labels: str) -> Session:
        """Create a new session (a generated id when ``None``). ``SessionExists`` if taken."""
        self._check_open()
        session_id = validate_session_id(session_id if session_id is not None else new_id("ses"))
        record = self._new_record(session_id, labels)
        async with self._lock_for(session_id):
            if session_id in self._hub.sessions:
                raise SessionExists(f"session '{session_id}' already exists")
            await self._rt.storage.create(record)
            return await self._open(SessionLog.created(self._rt, record), created=True)

    def get(self, session_id: str) -> Session | None:
        """The loaded session, or ``None`` (this never touches storage)."""
        self._check_open()
        return self._loaded(session_id)

    async def get_or_create(self, session_id: str, **labels: str) -> Session:
        """The loaded session; else hydrate it from storage (its record's snapshot plus
        the events after it); else create it with ``labels``.

        Labels only apply to a session being created.
        """
        self._check_open()
        validate_session_id(session_id)
        session = self._loaded(session_id)
        if session is not None:
            return session
        async with self._lock_for(session_id):
            session = self._loaded(session_id)
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
                    return await self._open(SessionLog.created(self._rt, record), created=True)
            if record.agent != self._rt.agent.name:
                raise ConfigError(
                    f"session '{session_id}' belongs to agent '{record.agent}', and this store "
                    f"serves agent '{self._rt.agent.name}'"
                )
            return await self._open(await SessionLog.hydrate(self._rt, record), created=False)

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
        """A page of session records, newest first (``order="updated"``: most recently
        updated first); ``labels``, ``agent``, ``tags`` (all of them) and ``pinned`` filter.

        Pass ``page.next_cursor`` back for the next page (``None`` at the end), with
        the same ``order``.
        """
        self._check_open()
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidArgument("limit must be between 1 and 1000")
        if order not in ("created", "updated"):
            raise InvalidArgument("order must be 'created' or 'updated'")
        if pinned is not None and not isinstance(pinned, bool):
            raise InvalidArgument("pinned must be true, false or None")
        wanted = SessionFilter(agent, dict(labels), clean_tags(tags), pinned)
        storage = self._rt.storage
        if order == "created":
            return await storage.list(wanted, limit, cursor)
        if "order" not in inspect.signature(storage.list).parameters:
            raise InvalidArgument(f"{type(storage).__name__} lists sessions only by creation")
        return await storage.list(wanted, limit, cursor, order=order)

    # -- conveniences that go through a session ------------------------------------

    async def send(
        self,
        session_id: str,
        message: str | Message,
        *,
        model: str | None = None,
        output_type: type | None = None,
        **labels: str,
    ) -> RunResult:
        """``get_or_create(session_id, **labels)`` then ``session.send(message)``."""
        session = await self.get_or_create(session_id, **labels)
        return await session.send(message, model=model, output_type=output_type)

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
        """``get_or_create`` then ``session.stream(message)``."""
        session = await self.get_or_create(session_id, **labels)
        async with session.stream(message, model=model, output_type=output_type) as events:
            yield events

    async def approve(
        self, session_id: str, approval_id: str, *, remember: Remember | None = None
    ) -> RunResult | None:
        """``get_or_create(session_id)`` then ``session.approve(approval_id)``."""
        session = await self.get_or_create(session_id)
        return await session.approve(approval_id, remember=remember)

    async def deny(
        self, session_id: str, approval_id: str, reason: str = "denied by the user"
    ) -> RunResult | None:
        """``get_or_create(session_id)`` then ``session.deny(approval_id, reason)``."""
        session = await self.get_or_create(session_id)
        return await session.deny(approval_id, reason)

    async def resume(self, session_id: str, call_id: str, data: Any = None) -> RunResult | None:
        """``get_or_create(session_id)`` then ``session.resume(call_id, data)``."""
        session = await self.get_or_create(session_id)
        return await session.resume(call_id, data)

    def pending_approvals(self, session_id: str | None = None) -> builtins.list[ApprovalHandle]:
        """Pending approvals of one loaded session, or of every loaded session.

        A parked session that is not loaded is listed once ``get_or_create`` loads it.
        """
        self._check_open()
        if session_id is not None:
            session = self._loaded(session_id)
            return session.pending_approvals if session else []
        return [h for entry in self._hub.sessions.values() for h in entry.handle.pending_approvals]

    @asynccontextmanager
    async def subscribe(
        self, *, display: bool = True
    ) -> AsyncIterator[trio.MemoryReceiveChannel[StoreEvent]]:
        """Iterate store events (sessions created, opened, closed, deleted; every durable
        event of every loaded session; with ``display``, each session's new display
        state, at most one per tick). Where the storage can watch
        (``capabilities.watch``), also the events other hosts append to sessions not
        loaded here, from the first append this store hears of. A subscriber that falls
        far behind is dropped: its iteration ends early. With ``display=False`` no
        display state is built for this subscriber."""
        self._check_open()
        async with self._hub.subscribe(display=display) as receive:
            yield receive

    # -- unloading -----------------------------------------------------------------

    async def close(self, session_id: str) -> bool:
        """Unload a session (its run is aborted, its sandbox closed); data is kept."""
        self._check_open()
        entry = self._hub.sessions.get(session_id)
        if entry is None:
            return False
        await entry.runner.unload("close")
        return True

    async def delete(self, session_id: str) -> bool:
        """Unload the session and remove its data and workspace. ``True`` if it existed."""
        self._check_open()
        validate_session_id(session_id)
        entry = self._hub.sessions.get(session_id)
        if entry is not None:
            await entry.runner.unload("delete")
        await self._rt.sandbox.destroy(session_id)
        existed = await self._rt.storage.delete(session_id)
        self._hub.publish(StoreEvent("session.deleted", session_id))
        return existed or entry is not None

    async def clear(self) -> None:
        """Unload every session; nothing is deleted."""
        self._check_open()
        await self._unload_all("clear")
        self._hub.publish(StoreEvent("session.cleared", None))

    async def _unload_all(self, reason: str) -> None:
        async with trio.open_nursery() as nursery:
            for entry in builtins.list(self._hub.sessions.values()):
                nursery.start_soon(entry.runner.unload, reason)

    async def aclose(self) -> None:
        """Close everything: abort runs (each leaves its session loadable), close sessions,
        then the plugins the store created; flush the sinks passed in (the host closes
        them). Bounded by the store's grace period; later calls fail with ``StoreClosed``."""
        if self._closed:
            return
        self._closed = True
        self._hub.closing = True
        log = self._rt.log
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self._rt.grace * 2
            await self._unload_all("store_closed")
            self._hub.close_subscribers()
            for component in reversed(self._owned):
                try:
                    await component.aclose()
                except Exception as exc:
                    log.error(
                        "plugin_close_failed", component=type(component).__name__, error=str(exc)
                    )
            log.info("store_closed")
            for sink in self._host_sinks:
                try:
                    sink.flush()
                except Exception:
                    pass  # a sink that cannot flush has nowhere to report it
            for sink in self._built_sinks:
                try:
                    await sink.aclose()
                except Exception:
                    pass


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
    mcp_servers: Sequence[Mapping[str, Any]] | None = None,
    prices: Mapping[str, Price | Mapping[str, Any]] | None = None,
    budget: Budget | Mapping[str, Any] | None = None,
    tracing: Mapping[str, Any] | None = None,
    grace_period: float = 5.0,
    hook_deadline: float = 10.0,
    lease_ttl: float = 30.0,
    poll_interval: float = 0.5,
    owner_timeout: float = 300.0,
    lease_clock: Callable[[], float] = time.time,
) -> AsyncIterator[SessionStore]:
    """Open a session store; closing the ``async with`` closes it (``aclose``).

    Plugins are named (``storage="sqlite"``, with ``storage_options``) or passed as
    instances. A named plugin is created and closed by the store; an instance belongs to
    the caller. ``providers`` entries are plugin names, ``{"plugin": ..., "options": ...}``
    tables or ``ModelProvider`` instances, each serving its own namespace.

    ``mcp_servers`` declares Model Context Protocol servers whose tools the agent gets
    too: each a table with ``name`` and ``command`` (stdio) or ``url`` (streamable HTTP),
    the ``[[mcp_servers]]`` fields of docs/mcp.md (the ``harness-kernel-mcp`` plugin
    runs them as its ``mcp`` tool kit).

    ``prices`` maps a model ref to its ``Price`` (or a table of its fields): each model
    call's usage gets its ``cost``. ``budget`` (a ``Budget`` or a table of its fields)
    limits the tokens and cost of each run and each session; a run that reaches a
    limit ends ``failed`` with ``budget.exceeded`` (see docs/cost.md).

    ``tracing`` (``{"plugin": "otel", "options": {...}}``) sets tracing up the way
    ``[tracing]`` in ``harness.toml`` does: a plugin registered with
    ``harness_kernel_tracing`` builds it (docs/tracing.md).

    ``grace_period`` bounds the cleanup of a cancelled run or a closing session;
    ``hook_deadline`` bounds each awaited observer hook (one that outlives it is
    cancelled, logged and disabled for that session, and the run goes on).

    One store runs a session at a time: it holds a lease of ``lease_ttl`` seconds,
    renewed while the run lives. Another store acting on that session appends control
    events the owner reads every ``poll_interval`` seconds, and waits up to
    ``owner_timeout`` seconds for the owner's answer (``OwnerTimeout``). ``lease_clock``
    gives the epoch seconds leases are written and judged by (``time.time``); every
    store on one storage must share it. Tests pass one driven by trio's clock (see
    ``harness_kernel.testing.trio_lease_clock``) so a ``MockClock`` expires leases.
    """
    require_trio("create_session_store")
    for name, value in (
        ("hook_deadline", hook_deadline),
        ("lease_ttl", lease_ttl),
        ("poll_interval", poll_interval),
        ("owner_timeout", owner_timeout),
    ):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ConfigError(f"{name}: expected a positive number of seconds, got {value!r}")
    if not callable(lease_clock):
        raise ConfigError(
            f"lease_clock: expected a callable returning epoch seconds, got {lease_clock!r}"
        )
    if poll_interval * 3 > lease_ttl:
        raise ConfigError(
            "poll_interval: must be at most a third of lease_ttl (the lease is renewed between polls)"
        )
    problems: list[str] = []
    models = [("default_model", default_model)] + [
        (f"agent.modes[{i}].model", m.model)
        for i, m in enumerate(getattr(agent, "modes", ()))
        if m.model
    ]
    costs = resolve_costs(prices, budget, models=models, errors=problems)
    declared, tool_options = with_mcp_servers(
        agent if isinstance(agent, Agent) else None, tool_options, mcp_servers, problems
    )
    agent = declared or agent
    if costs is None or problems:
        raise ConfigError("\n".join(problems))
    try:
        parts = await build_components(
            agent=agent,
            providers=providers,
            default_model=default_model,
            storage=storage,
            storage_options=storage_options,
            sandbox=sandbox,
            sandbox_options=sandbox_options,
            logging=logging,
            error_policy=error_policy,
            plugins=plugins,
            strict_plugins=strict_plugins,
            autoload_plugins=autoload_plugins,
            tool_options=tool_options,
        )
    except ConfigError as exc:
        if not mcp_servers:
            raise
        raise ConfigError("\n".join(renamed(str(exc).splitlines()))) from None
    owned = await attach_tracing(parts, tracing)
    append_parameters = inspect.signature(parts.storage.append).parameters
    try:
        async with trio.open_nursery() as nursery:
            runtime = Runtime(
                agent=parts.agent,
                tools=dict(parts.tools),
                providers=dict(parts.providers),
                default_model=parts.default_model,
                storage=parts.storage,
                sandbox=parts.sandbox,
                resources=dict(resources or {}),
                policy=parts.policy,
                retry=parts.retry,
                hooks=HookRunner(parts.registry.pm, parts.log, deadline=hook_deadline),
                log=parts.log,
                redactor=parts.redactor,
                hub=Hub(nursery, parts.log),
                grace=grace_period,
                owner=f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}",
                lease_ttl=lease_ttl,
                lease_clock=lease_clock,
                poll_interval=poll_interval,
                owner_timeout=owner_timeout,
                storage_checks_incarnation="incarnation" in append_parameters,
                storage_appends_records=parts.storage.capabilities.append_record
                and "record" in append_parameters,
                costs=costs,
            )
            host_sinks = [sink for sink in parts.sinks if sink not in parts.built_sinks]
            store = SessionStore(runtime, parts.registry, owned, parts.built_sinks, host_sinks)
            parts.log.info(
                "store_opened",
                storage=type(parts.storage).__name__,
                providers=sorted(parts.providers),
            )
            if parts.storage.capabilities.watch:
                await nursery.start(follow_other_hosts, runtime)
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
