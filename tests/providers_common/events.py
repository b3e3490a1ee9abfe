"""Collecting a provider's model events and checking their grammar."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import attrs

from harness_kernel import (
    Finish,
    Message,
    ModelProvider,
    ModelRequest,
    ReasoningDelta,
    ReasoningEnd,
    ReasoningPart,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)

__all__ = ["Assembled", "assemble", "collect", "request"]


def request(model: str, text: str = "Say hello.", **kwargs: Any) -> ModelRequest:
    return ModelRequest(model, (Message.user(text),), **kwargs)


async def collect(provider: ModelProvider, req: ModelRequest) -> list[Any]:
    """Every event of one ``stream`` call, closing the stream afterwards."""
    async with aclosing(provider.stream(req)) as events:  # type: ignore[type-var]
        return [event async for event in events]


@attrs.frozen
class Assembled:
    text: str
    calls: list[tuple[str, str, str]]
    """(call_id, name, raw JSON arguments) in the order the calls started."""
    usage: Usage | None
    finish: str
    reasoning: list[ReasoningPart] = attrs.Factory(list)
    """The reasoning blocks, assembled as the kernel does (a block ends at its
    ``ReasoningEnd`` or when text or a tool call follows)."""


def assemble(events: list[Any]) -> Assembled:
    """Assert the contract's event grammar and put the response together."""
    assert events, "no events"
    assert isinstance(events[-1], Finish), f"last event is {events[-1]!r}, not Finish"
    assert sum(isinstance(e, Finish) for e in events) == 1
    usages = [e for e in events if isinstance(e, Usage)]
    assert len(usages) <= 1
    open_calls: dict[str, tuple[str, list[str]]] = {}
    calls: list[tuple[str, str, str]] = []
    order: list[str] = []
    for event in events:
        if isinstance(event, ToolCallStart):
            assert event.call_id not in order, "call started twice"
            open_calls[event.call_id] = (event.name, [])
            order.append(event.call_id)
        elif isinstance(event, ToolCallDelta):
            assert event.call_id in open_calls, "delta outside start/end"
            open_calls[event.call_id][1].append(event.arguments)
        elif isinstance(event, ToolCallEnd):
            assert event.call_id in open_calls, "end of a call that is not open"
        else:
            assert isinstance(event, TextDelta | Usage | Finish | ReasoningDelta | ReasoningEnd), (
                f"unexpected event {event!r}"
            )
    ended = {e.call_id for e in events if isinstance(e, ToolCallEnd)}
    assert ended == set(order), "every started call ends"
    for call_id in order:
        name, fragments = open_calls[call_id]
        calls.append((call_id, name, "".join(fragments)))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    return Assembled(text, calls, usages[0] if usages else None, events[-1].reason, _reasoning(events))


def _reasoning(events: list[Any]) -> list[ReasoningPart]:
    blocks: list[ReasoningPart] = []
    fragments: list[str] | None = None
    summary = unended = False
    for event in events:
        if isinstance(event, ReasoningDelta):
            if fragments is None:
                fragments, summary, unended = [], event.summary, False
            fragments.append(event.text)
        elif isinstance(event, ReasoningEnd):
            if fragments is None and unended:  # the end came after the text began
                fragments = [blocks.pop().text]
            elif fragments is None:
                summary = False
            blocks.append(ReasoningPart(
                "".join(fragments or ()), summary, event.signature, event.encrypted, event.redacted, event.id, event.source,
            ))
            fragments, unended = None, False
        elif fragments is not None and isinstance(event, TextDelta | ToolCallStart):
            blocks.append(ReasoningPart("".join(fragments), summary))
            fragments, unended = None, True
    return blocks
