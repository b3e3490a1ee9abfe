"""The run loop keeps the model's reasoning: ``ReasoningDelta``s stream to the caller and
become ``ReasoningPart``s of the assistant message, before its text and tool calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from harness_kernel import (
    Finish,
    ImagePart,
    Message,
    ModelProvider,
    ModelRequest,
    ReasoningDelta,
    ReasoningEnd,
    ReasoningPart,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallPart,
    ToolCallStart,
    create_session_store,
    define_agent,
    tool,
)


@tool
async def lookup(q: str) -> str:
    """Look something up."""
    return f"found {q}"


class Thinker(ModelProvider):
    """Thinks in two blocks, then calls a tool; after the result, thinks without an end
    marker (as Chat Completions servers do) and answers."""

    name = "thinker"

    def __init__(self) -> None:
        self.requests: list[ModelRequest] = []

    async def stream(self, request: ModelRequest) -> AsyncIterator[Any]:
        self.requests.append(request)
        if len(self.requests) == 1:
            for event in (
                ReasoningDelta("Let me "), ReasoningDelta("think."), ReasoningEnd(signature="sig-1", source="test"),
                ReasoningEnd(redacted=True, encrypted="opaque", source="test"),
                TextDelta("Checking."), ToolCallStart("c1", "lookup"), ToolCallDelta("c1", '{"q": "trio"}'),
                ToolCallEnd("c1"), Finish("tool_calls"),
            ):
                yield event
        else:
            for event in (ReasoningDelta("It was ", summary=True), ReasoningDelta("found.", summary=True),
                          TextDelta("Trio it is."), Finish("stop")):
                yield event


async def test_reasoning_becomes_parts_before_the_text_and_calls() -> None:
    """Deltas and ends assemble into ReasoningParts in the order sent, placed first; the
    opaque fields are kept; a block with no end closes when text begins; the stream
    carries the ReasoningDeltas; ``text`` stays the visible text; the next request
    carries the reasoning back to the provider."""
    provider = Thinker()
    agent = define_agent(name="a", instructions="", tools=[lookup])
    async with create_session_store(agent=agent, providers=[provider], default_model="thinker/m") as store:
        session = await store.create("s1")
        seen: list[Any] = []
        async with session.stream(Message.user("trio?", ImagePart("image/png", b"png"))) as events:
            async for event in events:
                if isinstance(event, ReasoningDelta):
                    seen.append(event)
        result = events.result
        assert result is not None
        assert (result.status, result.text) == ("completed", "Trio it is.")
        history = await session.history()
    assert [e.text for e in seen] == ["Let me ", "think.", "It was ", "found."]
    first, last = history[1], history[-1]
    assert first.parts == (
        ReasoningPart("Let me think.", signature="sig-1", source="test"),
        ReasoningPart("", redacted=True, encrypted="opaque", source="test"),
        TextPart("Checking."),
        ToolCallPart("c1", "lookup", {"q": "trio"}),
    )
    assert first.text == "Checking."
    assert last.parts == (ReasoningPart("It was found.", summary=True), TextPart("Trio it is."))
    assert provider.requests[1].messages[1] == first
    assert isinstance(provider.requests[0].messages[0].parts[1], ImagePart)


class LateEnd(ModelProvider):
    """Reasoning text, then answer text, then the reasoning item's end (OpenRouter's order)."""

    name = "late"

    async def stream(self, request: ModelRequest) -> AsyncIterator[Any]:
        for event in (ReasoningDelta("2+2 is 4."), TextDelta("4"), ReasoningEnd(id="rs_1", source="test"), Finish("stop")):
            yield event


async def test_an_end_after_the_text_began_completes_its_block() -> None:
    """A ReasoningEnd that arrives after the text started completes the block the text
    closed, instead of adding an empty one."""
    agent = define_agent(name="a", instructions="")
    async with create_session_store(agent=agent, providers=[LateEnd()], default_model="late/m") as store:
        result = await store.send("s1", "2+2?")
    assert result.messages[-1].parts == (ReasoningPart("2+2 is 4.", id="rs_1", source="test"), TextPart("4"))


async def test_the_conformance_kit_accepts_a_thinking_provider() -> None:
    """check_provider allows reasoning events in a response (a thinking model passes)."""
    from harness_kernel.testing import check_provider

    class Thinks(ModelProvider):
        name = "thinks"

        async def stream(self, request: ModelRequest) -> AsyncIterator[Any]:
            if request.model == "missing":
                from harness_kernel.errors import BadRequest

                raise BadRequest("no such model")
            yield ReasoningDelta("hm")
            yield ReasoningEnd(signature="s", source="test")
            if request.tools:
                for event in (ToolCallStart("c1", "lookup"), ToolCallDelta("c1", '{"q": "x"}'), ToolCallEnd("c1")):
                    yield event
                yield Finish("tool_calls")
            else:
                yield TextDelta("Hello there.")
                yield Finish("stop")

    passed = await check_provider(Thinks, model="m", missing_model="missing")
    assert "an_unknown_model_raises_provider_error" in passed
