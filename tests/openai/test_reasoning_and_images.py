"""Chat Completions: reasoning deltas of compatible servers, and images in user messages."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from harness_kernel import (
    FilePart,
    ImagePart,
    Message,
    ModelRequest,
    ReasoningPart,
    TextPart,
    create_session_store,
    define_agent,
    tool,
)
from harness_kernel.errors import BadRequest
from harness_kernel_openai import OpenAIProvider, chat_messages
from tests.providers_common.loopback import LoopbackServer
from tests.providers_common.scripted import Raw, Reply, ScriptedAPI
from tests.providers_common.wire_fixtures import WIRE_DIR, load

KEY = "sk-reasoning-0123456789abcdef"


@tool
async def weather(location: str) -> str:
    """Get weather information for a location"""
    return "40 C"


def _sse(*chunks: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "deepseek-reasoner",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


THINK_THEN_CALL = _sse(
    _chunk({"role": "assistant", "reasoning_content": "The user wants "}),
    _chunk({"reasoning_content": "the weather."}),
    _chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                            "function": {"name": "weather", "arguments": '{"location":'}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "Florence"}'}}]}),
    _chunk({}, "tool_calls"),
)


async def test_reasoning_is_kept_but_not_sent_back_on_the_next_turn(loopback: LoopbackServer) -> None:
    """A DeepSeek-style turn thinks (reasoning_content) and calls a tool: the thinking is
    a ReasoningPart of the assistant message, and the turn-2 request is exactly the
    conversation without it (these servers refuse reasoning_content in input)."""
    loopback.handler = ScriptedAPI("openai", [Raw(THINK_THEN_CALL), Reply("It is 40 C in Florence.")])
    agent = define_agent(name="weather", instructions="You are a helpful assistant", tools=[weather])
    async with create_session_store(
        agent=agent,
        providers=[{"plugin": "openai", "options": {"base_url": f"{loopback.url}/v1", "api_key": KEY}}],
        default_model="openai/deepseek-reasoner",
    ) as store:
        result = await store.send("s1", "Weather in Florence?")
        history = await (await store.get_or_create("s1")).history()
    assert (result.status, result.text) == ("completed", "It is 40 C in Florence.")
    assert history[1].reasoning == (ReasoningPart("The user wants the weather."),)
    assert history[1].text == ""
    sent = loopback.requests[1].json
    assert sent["messages"] == [
        {"role": "system", "content": "You are a helpful assistant"},
        {"role": "user", "content": "Weather in Florence?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"location": "Florence"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "40 C"},
    ]


@pytest.mark.skipif(not WIRE_DIR.is_dir(), reason="wire fixtures not found")
async def test_an_image_goes_in_the_user_message_as_the_recorded_client_sends_it(loopback: LoopbackServer) -> None:
    """The recorded image request: the user content is a text part then an image_url part
    whose URL is a data: URL of the PNG (no detail field), exactly as recorded."""
    fixture = load("openai_chat_image_base64_gpt5")
    recorded = json.loads((WIRE_DIR / "openai_chat_image_base64_gpt5.request.json").read_text())
    url = recorded["messages"][1]["content"][1]["image_url"]["url"]
    png = base64.b64decode(url.removeprefix("data:image/png;base64,"))
    loopback.handler = ScriptedAPI("openai", [fixture.answer()])
    provider = OpenAIProvider(base_url=f"{loopback.url}/v1", api_key=KEY)
    try:
        message = Message.user("Describe the image briefly in English.", ImagePart("image/png", png))
        request = ModelRequest("gpt-5", (message,), system="You are a helpful assistant",
                               settings={"max_completion_tokens": 4000})
        async for _ in provider.stream(request):
            pass
    finally:
        await provider.aclose()
    assert loopback.requests[0].json == recorded


def test_image_urls_files_and_refs() -> None:
    """An image URL is sent as is; a file inline as a file part with its name; a file URL
    or an unresolved ref is refused before sending (Chat Completions cannot take them);
    reasoning from any API stays out of assistant messages."""
    history = (
        Message.user("Look.", ImagePart(url="https://example.invalid/cat.jpg"), FilePart("application/pdf", b"%PDF", name="a.pdf")),
        Message("assistant", (ReasoningPart("hm", summary=True, encrypted="gAAA", source="openai-responses"), TextPart("A cat."))),
    )
    messages = chat_messages(ModelRequest("m", history))
    assert messages == [
        {"role": "user", "content": [
            {"type": "text", "text": "Look."},
            {"type": "image_url", "image_url": {"url": "https://example.invalid/cat.jpg"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERg==", "filename": "a.pdf"}},
        ]},
        {"role": "assistant", "content": "A cat."},
    ]
    for bad, match in [(FilePart(url="https://example.invalid/a.pdf"), "inline data"),
                       (ImagePart(ref="host:1"), "was not resolved")]:
        with pytest.raises(BadRequest, match=match):
            chat_messages(ModelRequest("m", (Message.user("x", bad),)))
