"""``check_provider``: the ``ModelProvider`` contract, executable."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .._records import Message, Usage
from ..contracts import (
    Finish,
    ModelProvider,
    ModelRequest,
    ReasoningDelta,
    ReasoningEnd,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolSpec,
)
from ..errors import ProviderError
from ._report import Checks

__all__ = ["ProviderFactory", "check_provider"]

ProviderFactory = Callable[[], "ModelProvider | Awaitable[ModelProvider]"]

LOOKUP = ToolSpec(
    "lookup",
    "Look up a word.",
    {
        "type": "object",
        "properties": {"q": {"type": "string"}},
        "required": ["q"],
        "additionalProperties": False,
    },
)


def _validate_sequence(checks: Checks, events: list[Any]) -> tuple[str, dict[str, tuple[str, str]]]:
    """Check the event grammar; return the text and the assembled tool calls."""
    allowed = (
        TextDelta,
        ReasoningDelta,
        ReasoningEnd,
        ToolCallStart,
        ToolCallDelta,
        ToolCallEnd,
        Usage,
        Finish,
    )
    for event in events:
        checks.check(isinstance(event, allowed), f"unexpected event {event!r:.100}")
    finishes = [e for e in events if isinstance(e, Finish)]
    checks.equal(len(finishes), 1, "number of Finish events")
    checks.check(isinstance(events[-1], Finish), "the last event must be Finish")
    usages = [e for e in events if isinstance(e, Usage)]
    checks.check(len(usages) <= 1, f"at most one Usage event, got {len(usages)}")
    for usage in usages:
        checks.check(
            min(
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read_tokens,
                usage.cache_write_tokens,
            )
            >= 0,
            "token counts are non-negative",
        )
    open_calls: dict[str, tuple[str, list[str]]] = {}
    closed: dict[str, tuple[str, str]] = {}
    for event in events:
        if isinstance(event, ToolCallStart):
            checks.check(
                event.call_id not in open_calls and event.call_id not in closed,
                f"call {event.call_id} started twice",
            )
            checks.check(bool(event.name), "a tool call has a name")
            open_calls[event.call_id] = (event.name, [])
        elif isinstance(event, ToolCallDelta):
            checks.check(
                event.call_id in open_calls, f"delta for call {event.call_id} outside start/end"
            )
            open_calls[event.call_id][1].append(event.arguments)
        elif isinstance(event, ToolCallEnd):
            checks.check(
                event.call_id in open_calls, f"end of call {event.call_id} that is not open"
            )
            name, fragments = open_calls.pop(event.call_id)
            closed[event.call_id] = (name, "".join(fragments))
    checks.equal(sorted(open_calls), [], "tool calls never ended")
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    return text, closed


async def _collect(provider: ModelProvider, request: ModelRequest) -> list[Any]:
    events = []
    stream = provider.stream(request)
    try:
        async for event in stream:
            events.append(event)
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
    return events


async def check_provider(
    make_provider: Callable[[], Any],
    *,
    model: str,
    tool_model: str | None = None,
    missing_model: str | None = None,
    timeout: float = 30.0,
) -> list[str]:
    """Run the provider contract; returns the passed check names.

    ``model`` must answer a plain prompt with text; ``tool_model`` (default ``model``),
    offered one tool ``lookup(q: str)``, must call it. ``missing_model``, when given, must
    fail with a ``ProviderError``. Raises ``ConformanceFailure`` listing failures.
    """
    provider = make_provider()
    if inspect.isawaitable(provider):
        provider = await provider
    checks = Checks("provider")

    async with checks.case("has_a_namespace_name"):
        checks.check(
            isinstance(provider.name, str) and bool(provider.name) and "/" not in provider.name,
            f"name must be a non-empty string without '/', got {getattr(provider, 'name', None)!r}",
        )
        models = provider.models()
        checks.check(
            models is None or all(isinstance(m, str) for m in models),
            "models() returns None or strings",
        )

    async with checks.case("streams_text_and_one_finish"):
        with trio.fail_after(timeout):
            events = await _collect(
                provider, ModelRequest(model, (Message.user("Say hello."),), system="Be brief.")
            )
        text, calls = _validate_sequence(checks, events)
        checks.check(bool(text), "a plain prompt produced no text")
        checks.check(
            any(isinstance(e, TextDelta) for e in events), "text arrives as TextDelta events"
        )

    async with checks.case("tool_calls_assemble_into_json_objects"):
        request = ModelRequest(
            tool_model or model, (Message.user("Look up the word 'trio'."),), tools=(LOOKUP,)
        )
        with trio.fail_after(timeout):
            events = await _collect(provider, request)
        _, calls = _validate_sequence(checks, events)
        checks.check(bool(calls), "the tool model made no tool call")
        for call_id, (name, raw) in calls.items():
            checks.equal(name, "lookup", f"name of call {call_id}")
            arguments = json.loads(raw or "{}")
            checks.check(isinstance(arguments, dict), f"arguments of {call_id} are a JSON object")
        finish = next(e for e in events if isinstance(e, Finish))
        checks.check(bool(finish.reason), "Finish carries a reason")

    async with checks.case("closing_the_stream_early_returns_promptly"):
        stream = provider.stream(ModelRequest(model, (Message.user("Say hello."),)))
        with trio.fail_after(timeout):
            async for _event in stream:
                break
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()

    async with checks.case("cancellation_is_not_swallowed"):
        with trio.move_on_after(timeout) as outer:
            with trio.CancelScope() as scope:
                stream = provider.stream(ModelRequest(model, (Message.user("Say hello."),)))
                try:
                    async for _event in stream:
                        scope.cancel()
                        await trio.lowlevel.checkpoint()
                        raise AssertionError("the stream went on after cancellation")
                finally:
                    close = getattr(stream, "aclose", None)
                    if close is not None:
                        with trio.CancelScope(shield=True):
                            await close()
        checks.check(not outer.cancelled_caught, "the provider hung after cancellation")

    if missing_model is not None:
        async with checks.case("an_unknown_model_raises_provider_error"):
            with trio.fail_after(timeout):
                await checks.raises(
                    ProviderError,
                    _collect(provider, ModelRequest(missing_model, (Message.user("hi"),))),
                )

    await provider.aclose()
    return checks.finish()
