"""What the anthropic provider sends and how it reads the Messages stream's details."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness_kernel import (
    Message,
    ModelRequest,
    PluginRegistry,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)
from harness_kernel.contracts import ToolSpec
from harness_kernel.errors import BadRequest, MalformedResponse, ProviderUnavailable
from harness_kernel_anthropic import AnthropicOptions, AnthropicProvider
from tests.providers_common.events import assemble, collect, request
from tests.providers_common.loopback import LoopbackServer
from tests.providers_common.scripted import Call, Raw, Reply, ScriptedAPI

KEY = "sk-ant-api03-requests0123456789"
LOOKUP = ToolSpec("lookup", "Look a word up.", {"type": "object", "properties": {"word": {"type": "string"}}})


async def _exchange(loopback: LoopbackServer, req: ModelRequest, answer: Any = None, **options: Any) -> tuple[Any, Any]:
    loopback.handler = ScriptedAPI("anthropic", [answer or Reply("ok")])
    provider = AnthropicProvider(base_url=loopback.url, **options)
    try:
        result = assemble(await collect(provider, req))
    finally:
        await provider.aclose()
    return loopback.requests[-1], result


async def test_the_conversation_maps_to_messages_api_turns(loopback: LoopbackServer) -> None:
    """The system prompt (and system messages) travel apart; tool_use blocks carry input
    objects; consecutive tool results merge into one user turn of tool_result blocks
    (first, before any text), errors flagged; empty text is dropped."""
    history = (
        Message("system", (TextPart("Policy: be kind."),)),
        Message.user("Define trio and httpx."),
        Message("assistant", (
            TextPart("Checking."),
            ToolCallPart("toolu_1", "lookup", {"word": "trio"}),
            ToolCallPart("toolu_2", "lookup", {"word": "httpx"}),
        )),
        Message("tool", (ToolResultPart("toolu_1", "a library"),)),
        Message("tool", (ToolResultPart("toolu_2", "failed", is_error=True),)),
        Message("user", (TextPart("Thanks"),)),
        Message("assistant", (TextPart("  "),)),
    )
    sent, _ = await _exchange(
        loopback, ModelRequest("claude-test", history, system="Be brief.", tools=(LOOKUP,)), api_key=KEY,
    )
    body = sent.json
    assert body["system"] == "Be brief.\n\nPolicy: be kind."
    assert body["max_tokens"] == 4096
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Define trio and httpx."}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"word": "trio"}},
            {"type": "tool_use", "id": "toolu_2", "name": "lookup", "input": {"word": "httpx"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a library"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "failed", "is_error": True},
            {"type": "text", "text": "Thanks"},
        ]},
    ]
    assert body["tools"] == [{"name": "lookup", "description": "Look a word up.", "input_schema": LOOKUP.parameters}]


async def test_headers_carry_key_version_and_beta(loopback: LoopbackServer) -> None:
    """x-api-key, anthropic-version and anthropic-beta go with every request."""
    sent, _ = await _exchange(
        loopback, request("claude-test"), api_key=KEY, version="2023-06-01", beta=["a-2025", "b-2025"],
    )
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["anthropic-beta"] == "a-2025,b-2025"
    assert "authorization" not in sent.headers


async def test_max_tokens_and_settings(loopback: LoopbackServer) -> None:
    """max_tokens comes from the request's settings, else per-model settings, else the
    option; other settings pass through; reserved fields are refused."""
    req = ModelRequest("claude-test", (Message.user("hi"),), settings={"temperature": 0.2})
    sent, _ = await _exchange(
        loopback, req, max_tokens=1000, model_settings={"claude-test": {"max_tokens": 300, "top_k": 5}},
    )
    assert (sent.json["max_tokens"], sent.json["temperature"], sent.json["top_k"]) == (300, 0.2, 5)
    provider = AnthropicProvider(base_url=loopback.url, settings={"system": "x"})
    try:
        with pytest.raises(BadRequest, match="'system' cannot be set"):
            await collect(provider, request("claude-test"))
    finally:
        await provider.aclose()


@pytest.mark.parametrize(
    ("stop", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("refusal", "content_filter"), ("pause_turn", "pause_turn")],
)
async def test_stop_reasons_map_to_finish_reasons(loopback: LoopbackServer, stop: str, finish: str) -> None:
    """The API's stop reasons become the kernel's finish reasons (unknown ones pass as is)."""
    _, result = await _exchange(loopback, request("claude-test"), Reply("Hi.", finish=stop))
    assert result.finish == finish


async def test_usage_counts_cached_prompt_tokens_as_input(loopback: LoopbackServer) -> None:
    """input_tokens is every prompt token: uncached + cache reads + cache writes."""
    events = [
        {"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "content": [],
                                              "model": "c", "usage": {"input_tokens": 5, "cache_read_input_tokens": 100,
                                                                      "cache_creation_input_tokens": 20, "output_tokens": 1}}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]
    body = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)
    _, result = await _exchange(loopback, request("claude-test"), Raw(body))
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens) == (125, 9)
    assert (result.usage.cache_read_tokens, result.usage.cache_write_tokens) == (100, 20)


async def test_a_tool_input_sent_whole_in_the_block_start_is_used(loopback: LoopbackServer) -> None:
    """A tool_use block whose input arrives in content_block_start (no deltas) still
    delivers its arguments."""
    events = [
        {"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "content": [], "model": "c"}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_x", "name": "lookup", "input": {"word": "trio"}}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}},
        {"type": "message_stop"},
    ]
    body = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)
    _, result = await _exchange(loopback, request("claude-test"), Raw(body))
    assert [(i, n, json.loads(a)) for i, n, a in result.calls] == [("toolu_x", "lookup", {"word": "trio"})]
    assert result.finish == "tool_calls"


async def test_thinking_and_unknown_blocks_are_skipped(loopback: LoopbackServer) -> None:
    """Thinking, signatures, server tools and unknown event types do not become text."""
    events = [
        {"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "content": [], "model": "c"}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}},
        {"type": "content_block_stop", "index": 1},
        {"type": "brand_new_event", "x": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": "Done"}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "!"}},
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
        {"type": "message_stop"},
    ]
    body = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)
    _, result = await _exchange(loopback, request("claude-test"), Raw(body))
    assert (result.text, result.calls, result.finish) == ("Done!", [], "stop")


async def test_an_overloaded_error_event_mid_stream_is_provider_unavailable(loopback: LoopbackServer) -> None:
    """An ``error`` event after text: ProviderUnavailable with the API's message."""
    body = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[],"model":"c"}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}\n\n'
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    loopback.handler = ScriptedAPI("anthropic", [Raw(body)])
    provider = AnthropicProvider(base_url=loopback.url)
    try:
        with pytest.raises(ProviderUnavailable, match="Overloaded"):
            await collect(provider, request("claude-test"))
    finally:
        await provider.aclose()


async def test_input_json_for_an_unknown_block_is_malformed(loopback: LoopbackServer) -> None:
    """An input_json_delta that belongs to no open tool_use block is refused."""
    body = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","content":[]}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{"}}\n\n'
    )
    loopback.handler = ScriptedAPI("anthropic", [Raw(body)])
    provider = AnthropicProvider(base_url=loopback.url)
    try:
        with pytest.raises(MalformedResponse, match="outside an open tool_use block"):
            await collect(provider, request("claude-test"))
    finally:
        await provider.aclose()


def test_the_key_stays_out_of_reprs_and_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """repr hides the key; ANTHROPIC_API_KEY is used for Anthropic's own URL only."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env-0123456789abcdef")
    options = AnthropicOptions(api_key=KEY)
    assert KEY not in repr(options)
    assert KEY not in repr(AnthropicProvider(options))
    assert AnthropicProvider().secret_values() == ["sk-ant-env-0123456789abcdef"]
    assert AnthropicProvider(base_url="http://127.0.0.1:9").secret_values() == []


async def test_parallel_tool_calls_stream_in_order(loopback: LoopbackServer) -> None:
    """Text then two tool_use blocks with fragmented input: both calls assemble."""
    reply = Reply("Two lookups.", calls=[Call("lookup", {"word": "a"}, fragments=5), Call("lookup", {"word": "b"})])
    _, result = await _exchange(loopback, request("claude-test"), reply)
    assert result.text == "Two lookups."
    assert [(n, json.loads(a)) for _, n, a in result.calls] == [("lookup", {"word": "a"}), ("lookup", {"word": "b"})]


def test_the_plugin_is_listed_with_its_distribution() -> None:
    """Installed, ``anthropic`` appears in the plugin listing as a loaded provider."""
    rows = {(r.kind, r.name): r for r in PluginRegistry().listing()}
    row = rows[("provider", "anthropic")]
    assert (row.status, row.distribution, row.version) == ("loaded", "harness-kernel-anthropic", "0.1.0")
