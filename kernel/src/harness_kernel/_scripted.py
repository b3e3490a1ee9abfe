"""The scripted model provider: host-supplied handlers answer, streamed like a real API."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from ._records import Usage, new_id
from .contracts import (
    Finish,
    ModelEvent,
    ModelProvider,
    ModelRequest,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from .errors import BadRequest

__all__ = ["Handler", "Reply", "ScriptedProvider", "ToolCall", "echo"]


@attrs.frozen
class ToolCall:
    """A tool call a scripted reply makes. ``call_id`` is generated when omitted."""

    name: str
    arguments: Mapping[str, Any] | str = attrs.field(factory=dict)
    call_id: str | None = None


@attrs.frozen
class Reply:
    """A scripted model response: text (streamed word by word), tool calls, usage."""

    text: str = ""
    tool_calls: Sequence[ToolCall] = ()
    usage: Usage | None = None
    finish_reason: str | None = None


Handler = Callable[[ModelRequest], "Reply | Awaitable[Reply] | AsyncIterable[ModelEvent]"]


def echo(request: ModelRequest) -> Reply:
    """Answer with the text of the last user message."""
    for message in reversed(request.messages):
        if message.role == "user":
            return Reply(text=message.text)
    return Reply(text="")


def _chunks(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text) or ([text] if text else [])


class ScriptedProvider(ModelProvider):
    """Serves ``scripted/<name>`` from ``handlers``; ``scripted/echo`` is always there.

    A handler gets the ``ModelRequest`` and returns a ``Reply`` (sync or async), or an
    async iterable of raw ``ModelEvent`` values for full control (used to script slow or
    broken streams). It may raise any ``ProviderError`` to script a failure.
    """

    def __init__(
        self, handlers: Mapping[str, Handler] | None = None, *, name: str = "scripted"
    ) -> None:
        self.name = name
        self.handlers: dict[str, Handler] = {"echo": echo, **(handlers or {})}

    def models(self) -> Sequence[str]:
        """The handler names: a store whose default model (or a mode's model) names
        another ``scripted/<name>`` refuses to start."""
        return sorted(self.handlers)

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        handler = self.handlers.get(request.model)
        if handler is None:
            raise BadRequest(
                f"scripted model '{request.model}' has no handler (known: {', '.join(self.models())})"
            )
        reply = handler(request)
        if isinstance(reply, AsyncIterable):
            events = aiter(reply)
            try:
                async for event in events:
                    yield event
            finally:
                # Close the handler's generator now, not whenever it is collected.
                close = getattr(events, "aclose", None)
                if close is not None:
                    await close()
            return
        if inspect.isawaitable(reply):
            reply = await reply
        if not isinstance(reply, Reply):
            raise TypeError(
                f"scripted handler for '{request.model}' returned {type(reply).__name__}, not Reply"
            )
        for chunk in _chunks(reply.text):
            yield TextDelta(chunk)
        for call in reply.tool_calls:
            call_id = call.call_id or new_id("call")
            arguments = (
                call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
            )
            yield ToolCallStart(call_id, call.name)
            middle = len(arguments) // 2
            for fragment in (arguments[:middle], arguments[middle:]):
                if fragment:
                    yield ToolCallDelta(call_id, fragment)
            yield ToolCallEnd(call_id)
        # A rough estimate from the newest message only: summing the whole history would
        # make every call cost O(history), and scripted usage is illustrative anyway.
        newest = len(request.messages[-1].text) if request.messages else 0
        estimate = Usage(
            input_tokens=max(1, newest // 4), output_tokens=max(1, len(reply.text) // 4)
        )
        yield reply.usage or estimate
        yield Finish(reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop"))
