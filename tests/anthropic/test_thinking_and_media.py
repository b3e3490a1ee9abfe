"""Extended thinking with tool use, and images and documents, on the Messages API.

Recorded conversations (``../shared/fixtures/wire``) are replayed through a real store
and the loopback server: the request the provider sends on the turn after a tool call
must carry the thinking block of turn 1 back unchanged, signature intact, as the
recorded ``.request.json`` of that turn does.
"""

from __future__ import annotations

import base64
import hashlib
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
from harness_kernel_anthropic import AnthropicProvider, messages_of
from harness_kernel_anthropic._messages import MAX_IMAGE_BYTES
from tests.providers_common.loopback import LoopbackServer
from tests.providers_common.scripted import Reply, ScriptedAPI
from tests.providers_common.wire_fixtures import WIRE_DIR, load

KEY = "sk-ant-api03-thinking0123456789"
pytestmark = pytest.mark.skipif(not WIRE_DIR.is_dir(), reason="wire fixtures not found")


@tool
async def weather(location: str) -> str:
    """Get weather information for a location"""
    return "40 C"


def _recorded_request(name: str) -> dict[str, Any]:
    return json.loads((WIRE_DIR / f"{name}.request.json").read_text())


def _normalized(message: dict[str, Any]) -> dict[str, Any]:
    """A turn with each tool_result's content as text: the recorded client sends a list of
    text blocks, this provider the string (the API takes both as the same content)."""
    content = []
    for block in message["content"]:
        block = {k: v for k, v in block.items() if k != "cache_control"}
        if block["type"] == "tool_result" and isinstance(block["content"], list):
            block["content"] = "".join(b["text"] for b in block["content"])
        content.append(block)
    return {"role": message["role"], "content": content}


@pytest.mark.parametrize(("turn1", "turn2"), [
    ("anthropic_thinking_sonnet4", "anthropic_thinking_sonnet4_turn2"),
    ("anthropic_thinking_cache_control_sonnet4", "anthropic_thinking_cache_control_sonnet4_turn2"),
])
async def test_thinking_goes_back_unchanged_with_its_signature_after_a_tool_call(
    loopback: LoopbackServer, turn1: str, turn2: str
) -> None:
    """Turn 1 thinks (signed) and calls weather; the kernel runs the tool; the turn-2
    request carries exactly the recorded turn-2 messages: the user turn, the assistant
    turn with the thinking block first (text and signature byte for byte) and the
    tool_use, and the tool_result answering it (cache_control markers, which this
    provider does not write, left aside). The thinking is kept in the history."""
    first, second = load(turn1), load(turn2)
    recorded = _recorded_request(turn2)
    loopback.handler = ScriptedAPI("anthropic", [first.answer(), second.answer()])
    agent = define_agent(
        name="weather", instructions="You are a helpful assistant", tools=[weather],
        model_settings={"thinking": recorded["thinking"], "max_tokens": recorded["max_tokens"]},
    )
    async with create_session_store(
        agent=agent,
        providers=[{"plugin": "anthropic", "options": {"base_url": loopback.url, "api_key": KEY}}],
        default_model=f"anthropic/{recorded['model']}",
    ) as store:
        result = await store.send("s1", recorded["messages"][0]["content"][0]["text"])
        history = await (await store.get_or_create("s1")).history()
    assert result.status == "completed"
    assert result.text == second.expected["text"]
    sent = loopback.requests[1].json
    assert [_normalized(m) for m in sent["messages"]] == [_normalized(m) for m in recorded["messages"]]
    assert sent["messages"][1] == {
        "role": "assistant", "content": [
            {k: v for k, v in block.items() if k != "cache_control"} for block in recorded["messages"][1]["content"]
        ],
    }
    assert (sent["thinking"], sent["max_tokens"], sent["model"]) == (
        recorded["thinking"], recorded["max_tokens"], recorded["model"],
    )
    thought = history[1].reasoning[0]
    block = first.expected["content_blocks"][0]
    assert (thought.text, thought.signature, thought.source) == (block["thinking"], block["signature"], "anthropic")
    assert history[1].text == ""


async def test_redacted_thinking_goes_back_as_its_data(loopback: LoopbackServer) -> None:
    """A stream with two redacted_thinking blocks: the next turn's assistant content is
    those two blocks (data unchanged), then the text."""
    first = load("anthropic_redacted_thinking_sonnet45")
    loopback.handler = ScriptedAPI("anthropic", [first.answer(), Reply("It was a test string.")])
    agent = define_agent(name="redacted", instructions="", model_settings={"thinking": {"type": "enabled", "budget_tokens": 1024}})
    async with create_session_store(
        agent=agent,
        providers=[{"plugin": "anthropic", "options": {"base_url": loopback.url, "api_key": KEY}}],
        default_model="anthropic/claude-sonnet-4-5-20250929",
    ) as store:
        await store.send("s1", "ANTHROPIC_MAGIC_STRING_TRIGGER_REDACTED_THINKING")
        await store.send("s1", "What was that?")
    blocks = first.expected["content_blocks"]
    assert loopback.requests[1].json["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "redacted_thinking", "data": blocks[0]["data"]},
                    {"type": "redacted_thinking", "data": blocks[1]["data"]},
                    {"type": "text", "text": blocks[2]["text"]}],
    }


def test_the_recorded_redacted_thinking_turn_is_what_the_parts_become() -> None:
    """The recorded non-streaming round trip: the assistant message built from its turn-1
    response (a redacted block, then text) maps to exactly the turn-2 request's messages."""
    meta = json.loads((WIRE_DIR / "non-streaming" / "anthropic_redacted_thinking_turn2_sonnet45.json").read_text())
    recorded = json.loads((WIRE_DIR / "non-streaming" / "anthropic_redacted_thinking_turn2_sonnet45.request.json").read_text())
    assert meta["expected"]["http_status"] == 200
    user, assistant, again = recorded["messages"]
    parts: list[Any] = []
    for block in assistant["content"]:
        if block["type"] == "redacted_thinking":
            parts.append(ReasoningPart(redacted=True, encrypted=block["data"], source="anthropic"))
        else:
            parts.append(TextPart(block["text"]))
    history = (Message.user(user["content"][0]["text"]), Message("assistant", tuple(parts)),
               Message.user(again["content"][0]["text"]))
    _, turns = messages_of(ModelRequest(recorded["model"], history))
    assert turns == recorded["messages"]


def test_reasoning_from_another_api_or_unsigned_is_left_out() -> None:
    """Thinking the Messages API did not sign (another provider's, or cut off before its
    signature) is not sent: the API would refuse it."""
    history = (Message.user("hi"), Message("assistant", (
        ReasoningPart("from elsewhere", summary=True, encrypted="gAAA", source="openai-responses"),
        ReasoningPart("cut off", source="anthropic"),
        TextPart("Hello"),
    )))
    _, turns = messages_of(ModelRequest("m", history))
    assert turns[1] == {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]}


async def test_an_image_goes_in_the_user_turn_as_the_recorded_client_sends_it(loopback: LoopbackServer) -> None:
    """The recorded image request: a text block then an image block with a base64 source,
    its media type and the PNG's bytes (same length and sha256 as recorded)."""
    fixture = load("anthropic_image_base64_sonnet4")
    recorded = _recorded_request("anthropic_image_base64_sonnet4")
    image = recorded["messages"][0]["content"][1]["source"]
    checks = fixture.expected["request_checks"]["image_block"]
    png = base64.b64decode(image["data"])
    loopback.handler = ScriptedAPI("anthropic", [fixture.answer()])
    provider = AnthropicProvider(base_url=loopback.url, api_key=KEY)
    try:
        message = Message.user("Describe the image briefly in English.", ImagePart("image/png", png))
        async for _ in provider.stream(ModelRequest(recorded["model"], (message,), system="You are a helpful assistant")):
            pass
    finally:
        await provider.aclose()
    sent = loopback.requests[0].json
    assert sent["messages"] == recorded["messages"]
    data = sent["messages"][0]["content"][1]["source"]["data"]
    assert (len(data), hashlib.sha256(data.encode()).hexdigest()) == (checks["data_length"], checks["data_sha256"])


def test_urls_documents_and_limits() -> None:
    """Image and document URLs become url sources; a PDF a base64 document with its title;
    text a text document; a data: URL is sent inline. An image over the API's 5 MB, an
    unresolved ref and an unsupported type are refused before anything is sent."""
    message = Message.user(
        "Read these.",
        ImagePart(url="https://example.invalid/cat.jpg"),
        ImagePart(url="data:image/gif;base64,R0lGOD=="),
        FilePart("application/pdf", b"%PDF-1.7", name="report.pdf"),
        FilePart("text/plain", "héllo".encode()),
        FilePart(url="https://example.invalid/a.pdf"),
    )
    _, turns = messages_of(ModelRequest("m", (message,)))
    assert turns[0]["content"][1:] == [
        {"type": "image", "source": {"type": "url", "url": "https://example.invalid/cat.jpg"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0lGOD=="}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                        "data": base64.b64encode(b"%PDF-1.7").decode()}, "title": "report.pdf"},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "héllo"}},
        {"type": "document", "source": {"type": "url", "url": "https://example.invalid/a.pdf"}},
    ]
    for bad, match in [
        (ImagePart("image/png", b"\0" * (MAX_IMAGE_BYTES + 1)), "over the API's limit"),
        (ImagePart(ref="s3://bucket/cat.png"), "was not resolved"),
        (ImagePart("image/tiff", b"II*"), "images must be one of"),
        (FilePart("application/zip", b"PK"), "documents must be PDF or text"),
    ]:
        with pytest.raises(BadRequest, match=match):
            messages_of(ModelRequest("m", (Message.user("x", bad),)))
