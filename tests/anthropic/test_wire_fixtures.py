"""Every recorded Messages API transcript replayed through a loopback server gives its
expected outcome."""

from __future__ import annotations

import json

import pytest

from harness_kernel.errors import (
    BadRequest,
    ContextTooLong,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from harness_kernel_anthropic import AnthropicProvider
from tests.providers_common.events import assemble, collect, request
from tests.providers_common.loopback import LoopbackServer
from tests.providers_common.scripted import ScriptedAPI
from tests.providers_common.wire_fixtures import fixture_params, load

KEY = "sk-ant-api03-fixture0123456789abcdef"

# The documented mapping, written out independently of the provider's code.
BY_TYPE: dict[str, type[ProviderError]] = {
    "overloaded_error": ProviderUnavailable,
    "api_error": ProviderUnavailable,
    "rate_limit_error": RateLimited,
    "invalid_request_error": BadRequest,
}
STOP_REASONS = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}


def expected_error(expected: dict) -> tuple[type[ProviderError], str] | None:
    if "http_status" in expected:
        error = expected["error"]["error"]
        if "prompt is too long" in error["message"]:
            return ContextTooLong, error["message"]
        return BY_TYPE[error["type"]], error["message"]
    if expected.get("errors"):
        error = expected["errors"][0]["error"]
        return BY_TYPE[error["type"]], error["message"]
    return None


@pytest.mark.parametrize("piece", [0, 7], ids=["whole", "7-byte-chunks"])
@pytest.mark.parametrize("name", fixture_params("anthropic-messages"))
async def test_transcript_gives_its_expected_outcome(loopback: LoopbackServer, name: str, piece: int) -> None:
    """Text, thinking (text and signature, or redacted data), tool use with parsed input,
    stop reason, usage or the mapped error of each transcript come out of the provider exactly, however the bytes are split; the
    request was a streaming POST to /v1/messages with the key and the API version."""
    fixture = load(name)
    expected = fixture.expected
    loopback.handler = ScriptedAPI("anthropic", [fixture.answer(piece)])
    provider = AnthropicProvider(base_url=loopback.url, api_key=KEY)
    try:
        error = expected_error(expected)
        if error is not None:
            with pytest.raises(error[0]) as info:
                await collect(provider, request("claude-sonnet-4-20250514"))
            assert type(info.value) is error[0]
            assert error[1] in str(info.value)
            return
        result = assemble(await collect(provider, request("claude-sonnet-4-20250514")))
    finally:
        await provider.aclose()
        (sent,) = loopback.requests
        assert (sent.method, sent.path) == ("POST", "/v1/messages")
        assert sent.headers["x-api-key"] == KEY
        assert sent.headers["anthropic-version"] == "2023-06-01"

    assert result.text == expected["text"]
    thinking = [b for b in expected["content_blocks"] if b["type"] in ("thinking", "redacted_thinking")]
    assert [
        (r.text, r.signature, r.encrypted, r.redacted, r.source) for r in result.reasoning
    ] == [
        (b.get("thinking", ""), b.get("signature"), b.get("data"), b["type"] == "redacted_thinking", "anthropic")
        for b in thinking
    ]
    tool_blocks = [b for b in expected["content_blocks"] if b["type"] == "tool_use"]
    assert [(i, n) for i, n, _ in result.calls] == [(b["id"], b["name"]) for b in tool_blocks]
    for (_, _, raw), block in zip(result.calls, tool_blocks, strict=True):
        if block.get("input_parse_error"):
            assert raw == block["input_json"]  # cut off: the kernel reports it to the model
            with pytest.raises(ValueError):
                json.loads(raw)
        else:
            assert json.loads(raw or "{}") == block["input"]
    assert result.finish == STOP_REASONS[expected["stop_reason"]]
    usage = expected["final_usage"]
    if not usage:
        assert result.usage is None
    else:
        read = usage.get("cache_read_input_tokens", 0)
        write = usage.get("cache_creation_input_tokens", 0)
        assert result.usage is not None
        assert result.usage.input_tokens == usage["input_tokens"] + read + write
        assert result.usage.output_tokens == usage["output_tokens"]
        assert (result.usage.cache_read_tokens, result.usage.cache_write_tokens) == (read, write)
