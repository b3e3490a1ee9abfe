"""What a store shares with its sessions: resolved plugins, policy, logging, the hub.

``Runtime`` is frozen and built once per store, before the store itself. Its ``hub``
is the one mutable thing sessions share: the store's nursery, the loaded sessions and
the subscribers of store events.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final

import attrs
import trio

from ._agent import Agent, Mode
from ._cost import Costs
from ._logging import Redactor
from ._plugins import HookRunner
from ._policy import ErrorPolicy
from ._records import Event
from ._tools import Tool
from .contracts import ModelProvider, RetryPolicy, Sandbox, SessionStorage, ToolSpec
from .errors import InvalidArgument, InvalidSessionId, UnknownModel

__all__ = ["Hub", "Loaded", "Runtime", "StoreEvent", "validate_labels", "validate_session_id"]

_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_LABEL_VALUE = 512


def validate_session_id(session_id: object) -> str:
    """The id if it is safe; ``InvalidSessionId`` saying why otherwise.

    Ids are 1-128 characters from letters, digits and ``._:@-``, starting with a letter
    or digit: no path separators, no NUL, nothing a backend could misread. Backends still
    encode ids before using them in paths or keys.
    """
    if not isinstance(session_id, str):
        raise InvalidSessionId(f"session id must be a string, got {type(session_id).__name__}")
    if not _SESSION_ID.match(session_id):
        shown = session_id[:40].encode("unicode_escape").decode()
        raise InvalidSessionId(
            f"invalid session id '{shown}{'...' if len(session_id) > 40 else ''}': use 1-128 "
            "characters from letters, digits and . _ : @ -, starting with a letter or digit"
        )
    return session_id


def validate_labels(labels: Mapping[str, Any]) -> dict[str, str]:
    """The labels if every name and value is acceptable; ``InvalidArgument`` otherwise."""
    clean = {}
    for key, value in labels.items():
        if not _LABEL_KEY.match(key):
            raise InvalidArgument(f"label name {key!r} must match {_LABEL_KEY.pattern}")
        if not isinstance(value, str) or len(value) > MAX_LABEL_VALUE:
            raise InvalidArgument(
                f"label '{key}' must be a string of at most {MAX_LABEL_VALUE} characters"
            )
        clean[key] = value
    return clean


@attrs.frozen
class StoreEvent:
    """What ``store.subscribe()`` yields.

    ``kind``: ``session.created``, ``session.opened``, ``session.closed``,
    ``session.deleted``, ``session.cleared``, ``event`` (a durable event, in ``event``)
    or ``display_state_changed`` (the session's new ``DisplayState``, in ``display``).
    """

    kind: str
    session_id: str | None
    event: Event | None = None
    display: Any = None


NOTICE_BUFFER: Final = 16
"""Notices a waiting owner or caller may have pending (each only wakes it)."""

SUBSCRIBER_BUFFER: Final = 10_000
"""Events a subscriber may fall behind by before it is dropped (its iteration ends)."""


@attrs.frozen(eq=False)
class Loaded:
    """A loaded session as the hub keeps it: its internal ``runner`` and the public
    ``handle`` the store hands out (the same object every time)."""

    runner: Any
    handle: Any


class Hub:
    """The store's shared, mutable side: its nursery, loaded sessions, subscribers.

    Built before the store and handed to every session through the runtime, so a
    session can unload itself (after a fatal error) without knowing the store.
    """

    def __init__(self, nursery: trio.Nursery, log: Any) -> None:
        self.nursery = nursery
        self.sessions: dict[str, Loaded] = {}
        """Loaded sessions by id."""
        self.closing = False
        self.listening = False
        """The store-wide watch is open: per-session notices come through ``notices``."""
        self._log = log
        self._subscribers: list[trio.MemorySendChannel[StoreEvent]] = []
        self._without_display: set[trio.MemorySendChannel[StoreEvent]] = set()
        self._notices: dict[str, set[trio.MemorySendChannel[Any]]] = {}

    def forget(self, session_id: str, runner: Any) -> bool:
        """Drop ``runner``'s entry (not a newer session of the same id); True if it was there."""
        entry = self.sessions.get(session_id)
        if entry is None or entry.runner is not runner:
            return False
        del self.sessions[session_id]
        return True

    @property
    def has_subscribers(self) -> bool:
        return bool(self._subscribers)

    @property
    def has_display_subscribers(self) -> bool:
        """Some subscriber wants ``display_state_changed`` items."""
        return len(self._subscribers) > len(self._without_display)

    def publish(self, event: StoreEvent) -> None:
        """Hand ``event`` to every subscriber (display states only to those that want
        them); one that fell too far behind is dropped."""
        display = event.kind == "display_state_changed"
        for channel in list(self._subscribers):
            if display and channel in self._without_display:
                continue
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                self._drop(channel)
                channel.close()
                self._log.warning("subscriber_dropped", reason="fell too far behind")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._drop(channel)

    def _drop(self, channel: trio.MemorySendChannel[StoreEvent]) -> None:
        if channel in self._subscribers:
            self._subscribers.remove(channel)
        self._without_display.discard(channel)

    @asynccontextmanager
    async def subscribe(
        self, *, display: bool = True
    ) -> AsyncIterator[trio.MemoryReceiveChannel[StoreEvent]]:
        send, receive = trio.open_memory_channel[StoreEvent](SUBSCRIBER_BUFFER)
        self._subscribers.append(send)
        if not display:
            self._without_display.add(send)
        try:
            async with receive:
                yield receive
        finally:
            self._drop(send)
            send.close()

    @asynccontextmanager
    async def notices(self, session_id: str) -> AsyncIterator[trio.MemoryReceiveChannel[Any]]:
        """The store-wide watch's notices of one session, for an owner or a waiting
        caller: one watch connection per store, however many runs wait."""
        send, receive = trio.open_memory_channel[Any](NOTICE_BUFFER)
        self._notices.setdefault(session_id, set()).add(send)
        try:
            async with receive:
                yield receive
        finally:
            waiting = self._notices.get(session_id)
            if waiting is not None:
                waiting.discard(send)
                if not waiting:
                    del self._notices[session_id]
            send.close()

    def announce(self, notice: Any) -> None:
        """Hand a storage notice to those waiting on its session. A full channel
        already holds a wake-up, which is all a notice is to them."""
        for channel in self._notices.get(notice.session_id, ()):
            try:
                channel.send_nowait(notice)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    def close_subscribers(self) -> None:
        for channel in self._subscribers:
            channel.close()
        self._subscribers.clear()
        self._without_display.clear()


@attrs.frozen(eq=False)
class Runtime:
    """Everything a store's sessions share; nothing here changes after the store opens."""

    agent: Agent
    tools: Mapping[str, Tool]
    providers: Mapping[str, ModelProvider]
    default_model: str
    storage: SessionStorage
    sandbox: Sandbox
    resources: Mapping[str, Any]
    policy: ErrorPolicy
    retry: RetryPolicy
    hooks: HookRunner
    log: Any
    redactor: Redactor
    hub: Hub
    grace: float = 5.0
    owner: str = ""
    """This store's identity in leases: host, pid and a random part."""
    lease_ttl: float = 30.0
    lease_clock: Callable[[], float] = time.time
    """Epoch seconds for leases: taking, renewing and judging one expired."""
    poll_interval: float = 0.5
    owner_timeout: float = 300.0
    storage_checks_incarnation: bool = True
    """The storage's ``append`` takes ``incarnation=`` (every backend of this version does)."""
    costs: Costs = Costs()
    """Prices (model calls' usage gets its cost) and the budget runs are held to."""
    storage_appends_records: bool = False
    """The storage's ``append`` takes ``record=`` (``capabilities.append_record``, and a
    subclass did not override ``append`` without it)."""
    _mode_tools: dict[str, tuple[dict[str, Tool], tuple[ToolSpec, ...]]] = attrs.field(factory=dict)

    def mode_tools(self, mode: str) -> tuple[dict[str, Tool], tuple[ToolSpec, ...]]:
        """The tools a mode may call and their specs (computed once per mode)."""
        cached = self._mode_tools.get(mode)
        if cached is None:
            spec = self.agent.mode(mode) or Mode(mode)
            if spec.tools is None:
                tools = dict(self.tools)
            else:
                tools = {}
                for item in spec.tools:
                    name = item if isinstance(item, str) else item.name
                    tools[name] = item if isinstance(item, Tool) else self.tools[name]
            cached = (tools, tuple(t.spec() for t in tools.values()))
            self._mode_tools[mode] = cached
        return cached

    def resolve_model(self, ref: str) -> tuple[ModelProvider, str]:
        """The provider serving ``ref`` and the model name within it; ``UnknownModel``."""
        namespace, sep, name = ref.partition("/") if isinstance(ref, str) else ("", "", "")
        if not (sep and namespace and name):
            raise UnknownModel(f"model ref '{ref}' must look like '<provider>/<model>'")
        provider = self.providers.get(namespace)
        if provider is None:
            known = ", ".join(sorted(self.providers)) or "none"
            raise UnknownModel(
                f"no provider serves '{namespace}/' (configured namespaces: {known})"
            )
        return provider, name
