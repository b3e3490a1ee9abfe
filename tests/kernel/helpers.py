"""Scripted model behaviours and store shortcuts shared by the kernel tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from harness_kernel import (
    Finish,
    ModelRequest,
    SessionStore,
    TextDelta,
    ToolResultPart,
    create_session_store,
    define_agent,
    tool,
)
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall


@tool
async def lookup(q: str) -> str:
    """Look up a word."""
    return "result"


def last_tool_result(request: ModelRequest) -> ToolResultPart | None:
    last = request.messages[-1]
    part = last.parts[0] if last.parts else None
    return part if isinstance(part, ToolResultPart) else None


def calls_then_answers(name: str = "lookup", arguments: Any = None) -> Callable[[ModelRequest], Reply]:
    """First step: call ``name``; next step: answer with the tool's result."""

    def handler(request: ModelRequest) -> Reply:
        result = last_tool_result(request)
        if result is None:
            return Reply(tool_calls=[ToolCall(name, {"q": request.messages[-1].text} if arguments is None else arguments)])
        return Reply(text=f"{'error' if result.is_error else 'ok'}: {result.content}")

    return handler


def slow_stream(first: str = "partial ", then_sleep: float = 3600) -> Callable[[ModelRequest], Any]:
    """Streams ``first`` then hangs: for abort and shutdown tests."""

    async def events(_request: ModelRequest) -> AsyncIterator[Any]:
        yield TextDelta(first)
        await trio.sleep(then_sleep)
        yield Finish("stop")

    return events


@asynccontextmanager
async def open_store(handlers: dict[str, Any] | None = None, **kwargs: Any) -> AsyncIterator[SessionStore]:
    """A store on the scripted provider with ``handlers``; kwargs go to the store."""
    kwargs.setdefault("agent", define_agent(name="tester", tools=[lookup]))
    kwargs.setdefault("default_model", "scripted/main" if handlers and "main" in handlers else "scripted/echo")
    async with create_session_store(
        providers=[ScriptedProvider(handlers or {})], autoload_plugins=False, **kwargs
    ) as store:
        yield store
