"""What a store shares with its sessions: resolved plugins, policy, logging, the nursery."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio

from ._agent import Agent, Mode
from ._logging import Redactor
from ._plugins import HookRunner
from ._policy import ErrorPolicy
from ._records import Event
from ._tools import Tool
from .contracts import ModelProvider, RetryPolicy, Sandbox, SessionStorage, ToolSpec
from .errors import InvalidSessionId, UnknownModel

__all__ = ["Runtime", "StoreEvent", "validate_labels", "validate_session_id"]

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
    clean = {}
    for key, value in labels.items():
        if not _LABEL_KEY.match(key):
            raise ValueError(f"label name {key!r} must match {_LABEL_KEY.pattern}")
        if not isinstance(value, str) or len(value) > MAX_LABEL_VALUE:
            raise ValueError(f"label '{key}' must be a string of at most {MAX_LABEL_VALUE} characters")
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


@attrs.define
class Runtime:
    agent: Agent
    tools: dict[str, Tool]
    providers: dict[str, ModelProvider]
    default_model: str
    storage: SessionStorage
    sandbox: Sandbox
    resources: Mapping[str, Any]
    policy: ErrorPolicy
    retry: RetryPolicy
    hooks: HookRunner
    log: Any
    redactor: Redactor
    nursery: trio.Nursery
    publish: Callable[[StoreEvent], None]
    forget: Callable[[Any], None]
    closing: Callable[[], bool] = lambda: False
    has_subscribers: Callable[[], bool] = lambda: False
    grace: float = 5.0
    _mode_tools: dict[str, tuple[dict[str, Tool], tuple[ToolSpec, ...]]] = attrs.Factory(dict)

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
        namespace, sep, name = ref.partition("/")
        if not (sep and namespace and name):
            raise UnknownModel(f"model ref '{ref}' must look like '<provider>/<model>'")
        provider = self.providers.get(namespace)
        if provider is None:
            known = ", ".join(sorted(self.providers)) or "none"
            raise UnknownModel(f"no provider serves '{namespace}/' (configured namespaces: {known})")
        return provider, name
