"""Agent definitions: ``define_agent``, ``Mode`` and context providers."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from ._compaction import CompactionPolicy
from ._output import check_output_type
from ._tools import ApprovalPolicy, Tool
from .errors import ConfigError

__all__ = [
    "Agent",
    "ContextProvider",
    "InstructionsContext",
    "Mode",
    "context_provider",
    "define_agent",
]

DEFAULT_MODE = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@attrs.frozen
class InstructionsContext:
    """What dynamic instructions and context providers receive."""

    session_id: str
    run_id: str
    mode: str
    model: str
    state: Any
    labels: Mapping[str, str]
    resources: Mapping[str, Any]


Instructions = str | Callable[[InstructionsContext], "str | Awaitable[str]"]


@attrs.frozen
class ContextProvider:
    """Renders context for each model call; a ``None`` or empty result adds nothing.

    ``required`` providers fail the run when they raise; optional ones are skipped when
    the error policy's ``context_failure`` is ``"skip_optional"``.
    """

    name: str
    render: Callable[[InstructionsContext], str | Awaitable[str | None] | None]
    required: bool = True


def context_provider(
    fn: Callable[..., Any] | None = None, /, *, name: str | None = None, required: bool = True
) -> Any:
    """Decorator form of ``ContextProvider``; bare or with arguments."""

    def wrap(f: Callable[..., Any]) -> ContextProvider:
        return ContextProvider(name or f.__name__, f, required)

    return wrap(fn) if fn is not None else wrap


@attrs.frozen
class Mode:
    """A named way of working: its own instructions, tools, model and approval policy.

    ``tools=None`` keeps all of the agent's tools; a list narrows them (tool objects or
    names of the agent's tools). ``approval`` overrides every tool's own policy.
    """

    name: str
    instructions: Instructions | None = None
    tools: Sequence[Tool | str] | None = None
    model: str | None = None
    approval: ApprovalPolicy | None = None


@attrs.frozen
class Agent:
    """An agent definition; build it with ``define_agent``."""

    name: str
    instructions: Instructions
    tools: tuple[Tool | str, ...]
    modes: tuple[Mode, ...]
    state: type | None
    context_providers: tuple[ContextProvider, ...]
    max_steps: int
    model_settings: Mapping[str, Any]
    deny: tuple[str, ...]
    output_type: type | None = None
    output_retries: int = 2
    compaction: CompactionPolicy | None = None

    @property
    def default_mode(self) -> str:
        return self.modes[0].name

    def mode(self, name: str) -> Mode | None:
        return next((m for m in self.modes if m.name == name), None)


def define_agent(
    *,
    name: str,
    instructions: Instructions = "",
    tools: Sequence[Tool | str] = (),
    modes: Sequence[Mode] = (),
    state: type | None = None,
    context_providers: Sequence[ContextProvider] = (),
    max_steps: int = 20,
    model_settings: Mapping[str, Any] | None = None,
    deny: Sequence[str] = (),
    output_type: type | None = None,
    output_retries: int = 2,
    compaction: CompactionPolicy | None = None,
) -> Agent:
    """Define an agent. The first mode is the initial one (a ``default`` mode if none).

    ``tools`` holds ``@tool`` objects and names of registered tool kits. ``state`` is an
    attrs class whose fields all have defaults: the schema of the session state.
    ``deny`` lists tool names or ``category:<name>`` rules that are always refused.
    ``output_type`` (an attrs class) makes every run answer with a value of that type
    (``RunResult.output``); an answer that does not validate goes back to the model up
    to ``output_retries`` times. ``compaction`` (a ``CompactionPolicy``) keeps long
    sessions within a token budget by summarizing their start.
    """
    if not _NAME.match(name or ""):
        raise ConfigError(f"agent name {name!r} must match {_NAME.pattern}")
    if max_steps < 1:
        raise ConfigError("max_steps must be at least 1")
    for item in tools:
        if not isinstance(item, Tool | str):
            raise ConfigError(
                f"agent '{name}': tools must be @tool objects or kit names, got {item!r}"
            )
    seen: set[str] = set()
    for item in tools:
        if isinstance(item, Tool):
            if item.name in seen:
                raise ConfigError(f"agent '{name}': two tools are named '{item.name}'")
            seen.add(item.name)
    mode_list = tuple(modes) or (Mode(DEFAULT_MODE),)
    for mode in mode_list:
        if (
            mode.approval is not None
            and not callable(mode.approval)
            and mode.approval not in ("auto", "ask", "deny")
        ):
            raise ConfigError(
                f"mode '{mode.name}': approval must be 'auto', 'ask', 'deny', a callable or None"
            )
    names = [m.name for m in mode_list]
    if len(set(names)) != len(names):
        raise ConfigError(f"agent '{name}': mode names must be unique")
    if state is not None:
        if not attrs.has(state):
            raise ConfigError(f"agent '{name}': state must be an attrs class")
        try:
            state()
        except TypeError as exc:
            raise ConfigError(
                f"agent '{name}': every field of the state class needs a default"
            ) from exc
    if compaction is not None and not isinstance(compaction, CompactionPolicy):
        raise ConfigError(f"agent '{name}': compaction must be a CompactionPolicy")
    if output_type is not None:
        check_output_type(output_type, f"agent '{name}'")
    if (
        isinstance(output_retries, bool)
        or not isinstance(output_retries, int)
        or output_retries < 0
    ):
        raise ConfigError(f"agent '{name}': output_retries must be a whole number >= 0")
    return Agent(
        name=name,
        instructions=instructions,
        tools=tuple(tools),
        modes=mode_list,
        state=state,
        context_providers=tuple(context_providers),
        max_steps=max_steps,
        model_settings=dict(model_settings or {}),
        deny=tuple(deny),
        output_type=output_type,
        output_retries=output_retries,
        compaction=compaction,
    )
