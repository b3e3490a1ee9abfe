"""The session store: plugins resolved once, sessions loaded on demand, runs in its nursery."""

from __future__ import annotations

import builtins
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, final

import attrs
import trio

from ._agent import Agent
from ._logging import Redactor, build_logger, parse_level
from ._plugins import PluginInfo, PluginRegistry
from ._policy import ErrorPolicy, RetrySettings
from ._records import Message, RunResult, SessionRecord
from ._runtime import Runtime, StoreEvent, validate_labels, validate_session_id
from ._session import ApprovalHandle, RunStream, Session
from ._tools import Tool
from ._validation import ValidationFailed, structure_strictly
from .contracts import (
    LogSink,
    ModelProvider,
    Page,
    RetryPolicy,
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


def _component(
    registry: PluginRegistry, kind: Any, spec: Any, options: Mapping[str, Any] | None, cls: type, path: str, owned: list[Any]
) -> Any:
    """An instance from a plugin name (built, owned by the store) or a ready instance."""
    if isinstance(spec, cls):
        if options:
            raise ConfigError(f"{path}: options only apply when the plugin is named, not to an instance")
        return spec
    if not isinstance(spec, str):
        raise ConfigError(f"{path}: expected a plugin name or a {cls.__name__} instance, got {type(spec).__name__}")
    instance = registry.build(kind, spec, options, path=f"{path}.options")
    if not isinstance(instance, cls):
        raise ConfigError(f"{path}: plugin '{spec}' did not build a {cls.__name__}")
    owned.append(instance)
    return instance


def _option_secrets(registry: PluginRegistry, kind: Any, name: Any, options: Mapping[str, Any] | None) -> list[str]:
    """Secret values in a plugin's (already validated) options, for the redactor."""
    if not options or not isinstance(name, str):
        return []
    reg = registry.get(kind, name)
    if reg.options is None:
        return []
    return _secret_values(structure_strictly(dict(options), reg.options))


def _secret_values(options: Any) -> list[str]:
    """String values of option fields that are marked secret or named like secrets."""
    from ._logging import SENSITIVE_KEY

    if not attrs.has(type(options)):
        return []
    values = []
    for field in attrs.fields(type(options)):
        value = getattr(options, field.name)
        if isinstance(value, str) and (field.metadata.get("secret") or SENSITIVE_KEY.search(field.name)):
            values.append(value)
    return values


@attrs.frozen
class LoggingSettings:
    """The ``logging`` argument: a default ``level``, ``sinks`` (names, tables with
    ``plugin``/``level``/``options``, or ``LogSink`` instances) and extra ``redact``
    values and ``redact_keys``."""

    level: str = "info"
    sinks: tuple[Any, ...] = ()
    redact: tuple[str, ...] = ()
    redact_keys: tuple[str, ...] = ()


def _build_sinks(
    registry: PluginRegistry, settings: Mapping[str, Any] | None
) -> tuple[list[LogSink], list[LogSink], list[str], LoggingSettings]:
    """The sinks, those the store built (and so closes), secret option values, settings."""
    raw = dict(settings or {})
    unknown = set(raw) - {f.name for f in attrs.fields(LoggingSettings)}
    if unknown:
        raise ConfigError(f"logging: unknown key(s): {', '.join(sorted(unknown))}")
    config = LoggingSettings(
        level=raw.get("level", "info"),
        sinks=tuple(raw.get("sinks", ())),
        redact=tuple(raw.get("redact", ())),
        redact_keys=tuple(raw.get("redact_keys", ())),
    )
    try:
        default_level = parse_level(config.level)
    except ValueError as exc:
        raise ConfigError(f"logging.level: {exc}") from None
    sinks: list[LogSink] = []
    built: list[LogSink] = []
    secrets: list[str] = []
    for index, spec in enumerate(config.sinks):
        path = f"logging.sinks[{index}]"
        if isinstance(spec, LogSink):
            sinks.append(spec)
            continue
        if isinstance(spec, str):
            spec = {"plugin": spec}
        if not isinstance(spec, Mapping) or "plugin" not in spec:
            raise ConfigError(f"{path}: expected a sink name, a table with 'plugin', or a LogSink")
        extra = set(spec) - {"plugin", "level", "options"}
        if extra:
            raise ConfigError(f"{path}: unknown key(s): {', '.join(sorted(extra))}")
        sink = registry.build("log_sink", spec["plugin"], spec.get("options"), path=f"{path}.options")
        secrets += _option_secrets(registry, "log_sink", spec["plugin"], spec.get("options"))
        try:
            sink.level = parse_level(spec.get("level", default_level))
        except ValueError as exc:
            raise ConfigError(f"{path}.level: {exc}") from None
        sinks.append(sink)
        built.append(sink)
    return sinks, built, secrets, config


def _resolve_tools(registry: PluginRegistry, agent: Agent, tool_options: Mapping[str, Any]) -> dict[str, Tool]:
    tools: dict[str, Tool] = {}
    for item in agent.tools:
        kit = [item] if isinstance(item, Tool) else registry.build(
            "tools", item, tool_options.get(item), path=f"tools.{item}.options"
        )
        for tool in kit:
            if not isinstance(tool, Tool):
                raise ConfigError(f"tool kit '{item}' returned {type(tool).__name__}, not a Tool")
            if tool.name in tools:
                raise ConfigError(f"agent '{agent.name}': two tools are named '{tool.name}'")
            tools[tool.name] = tool
    for mode in agent.modes:
        for entry in mode.tools or ():
            if isinstance(entry, str) and entry not in tools:
                raise ConfigError(f"mode '{mode.name}' names tool '{entry}', which the agent does not have")
    return tools


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
    if not isinstance(agent, Agent):
        raise ConfigError("agent: expected the result of define_agent(...)")
    registry = PluginRegistry(plugins=plugins, strict=strict_plugins, autoload=autoload_plugins)
    sinks, built_sinks, sink_secrets, log_settings = _build_sinks(registry, logging)
    redactor = Redactor([*log_settings.redact, *sink_secrets], log_settings.redact_keys)
    owned: list[Any] = []
    try:
        provider_map: dict[str, ModelProvider] = {}
        for index, spec in enumerate(providers):
            path = f"providers[{index}]"
            options: Mapping[str, Any] | None = None
            if isinstance(spec, Mapping):
                extra = set(spec) - {"plugin", "options"}
                if "plugin" not in spec or extra:
                    raise ConfigError(f"{path}: expected a table with 'plugin' and optional 'options'")
                spec, options = spec["plugin"], spec.get("options")
            provider = _component(registry, "provider", spec, options, ModelProvider, path, owned)
            redactor.add_values(_option_secrets(registry, "provider", spec, options))
            redactor.add_values(getattr(provider, "secret_values", lambda: [])())
            if provider.name in provider_map:
                raise ConfigError(f"{path}: two providers serve the namespace '{provider.name}'")
            provider_map[provider.name] = provider
        store_storage = _component(registry, "storage", storage, storage_options, SessionStorage, "storage", owned)
        store_sandbox = _component(registry, "sandbox", sandbox, sandbox_options, Sandbox, "sandbox", owned)
        redactor.add_values(_option_secrets(registry, "storage", storage, storage_options))
        redactor.add_values(_option_secrets(registry, "sandbox", sandbox, sandbox_options))
        if "/" not in default_model or default_model.split("/", 1)[0] not in provider_map:
            known = ", ".join(sorted(provider_map)) or "none"
            raise ConfigError(f"default_model: '{default_model}' is not '<provider>/<model>' with a configured provider (namespaces: {known})")
        if isinstance(error_policy, ErrorPolicy):
            policy = error_policy
        else:
            raw = dict(error_policy or {})
            try:
                policy = structure_strictly(raw, ErrorPolicy, root="error_policy")
            except ValidationFailed as exc:
                raise ConfigError("\n".join(exc.errors)) from None
        retry = _retry_policy(registry, policy.retry)
        tools = _resolve_tools(registry, agent, tool_options or {})
        log = build_logger(sinks, redactor, store_agent=agent.name)
    except BaseException:
        for component in [*reversed(owned), *built_sinks]:
            try:
                await component.aclose()
            except Exception:
                pass
        raise
    try:
        async with trio.open_nursery() as nursery:
            runtime = Runtime(
                agent=agent, tools=tools, providers=provider_map, default_model=default_model,
                storage=store_storage, sandbox=store_sandbox, resources=dict(resources or {}),
                policy=policy, retry=retry, hooks=_hooks(registry, log), log=log, redactor=redactor,
                nursery=nursery, publish=lambda _e: None, forget=lambda _s: None, grace=grace_period,
            )
            store = SessionStore(runtime, registry, owned, built_sinks)
            log.info("store_opened", storage=type(store_storage).__name__, providers=sorted(provider_map))
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


def _hooks(registry: PluginRegistry, log: Any) -> Any:
    from ._plugins import HookRunner

    return HookRunner(registry.pm, log)


def _retry_policy(registry: PluginRegistry, settings: RetrySettings) -> RetryPolicy:
    name = settings.policy
    if name is None:
        first = registry.first("retry_policy")
        name = first.name if first else "none"
    policy = registry.build("retry_policy", name, settings.model, path="error_policy.retry.model")
    if not isinstance(policy, RetryPolicy):
        raise ConfigError(f"retry policy '{name}' did not build a RetryPolicy")
    return policy


