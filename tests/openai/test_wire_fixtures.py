"""Every recorded Chat Completions transcript (OpenAI, Azure, Groq, OpenRouter, vLLM,
llama.cpp, DeepSeek) replayed through a loopback server gives its expected outcome."""

from __future__ import annotations

import json

import pytest

from harness_kernel.errors import (
    AuthenticationFailed,
    BadRequest,
    ContextTooLong,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from harness_kernel_openai import OpenAIProvider
from tests.providers_common.events import assemble, collect, request
from tests.providers_common.loopback import LoopbackServer
from tests.providers_common.scripted import ScriptedAPI
from tests.providers_common.wire_fixtures import fixture_params, load

KEY = "sk-fixture-0123456789abcdef0123"

# The documented mapping, written out independently of the provider's code.
BY_STATUS = {401: AuthenticationFailed, 403: AuthenticationFailed, 404: BadRequest, 429: RateLimited, 500: ProviderUnavailable}
BY_TYPE = {"server_error": ProviderUnavailable, "invalid_request_error": BadRequest}


def expected_error(expected: dict) -> type[ProviderError] | None:
    if "http_status" in expected:
        error = expected["error"]["error"]
        if error.get("code") == "context_length_exceeded":
            return ContextTooLong
        return BY_STATUS.get(expected["http_status"], BadRequest)
    if expected.get("errors"):
        return BY_TYPE[expected["errors"][0]["payload"]["error"]["type"]]
    return None


@pytest.mark.parametrize("piece", [0, 7], ids=["whole", "7-byte-chunks"])
@pytest.mark.parametrize("name", fixture_params("openai-chat-completions"))
async def test_transcript_gives_its_expected_outcome(loopback: LoopbackServer, name: str, piece: int) -> None:
    """Text, reasoning (``reasoning_content`` / ``reasoning``), tool calls with parsed
    arguments, finish reason, usage (reasoning tokens too) or the mapped error of each
    transcript come out of the provider exactly, however the bytes are split; the
    request was a streaming POST to /v1/chat/completions with the key as bearer token."""
    fixture = load(name)
    expected = fixture.expected
    loopback.handler = ScriptedAPI("openai", [fixture.answer(piece)])
    provider = OpenAIProvider(base_url=f"{loopback.url}/v1", api_key=KEY)
    try:
        error = expected_error(expected)
        if error is not None:
            with pytest.raises(error) as info:
                await collect(provider, request("gpt-4o"))
            assert type(info.value) is error
            api_message = (
                expected["error"]["error"]["message"] if "http_status" in expected
                else expected["errors"][0]["payload"]["error"]["message"]
            )
            if "*" not in api_message:
                assert api_message[:80] in str(info.value)
            else:  # the 401 body quotes a masked key: the masked form is not repeated
                assert "Incorrect API key provided" in str(info.value)
                assert "****" not in str(info.value)
                assert "4f9bb533" not in str(info.value)
            if "retry_hint_in_message" in expected:
                assert isinstance(info.value, RateLimited)
                assert info.value.retry_after == pytest.approx(0.006)
            return
        result = assemble(await collect(provider, request("gpt-4o")))
    finally:
        await provider.aclose()
        (sent,) = loopback.requests
        assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
        assert sent.headers["authorization"] == f"Bearer {KEY}"

    assert result.text == expected["text"]
    assert "".join(r.text for r in result.reasoning) == expected.get("reasoning", "")
    assert all(r.signature is None and r.encrypted is None for r in result.reasoning)
    wanted_calls = [(c["id"], c["name"], c["arguments_parsed"]) for c in expected.get("tool_calls", [])]
    assert [(i, n, json.loads(a)) for i, n, a in result.calls] == wanted_calls
    assert result.finish == expected["finish_reason"]
    usage = expected["usage"]
    if usage is None:
        assert result.usage is None
    else:
        assert result.usage is not None
        assert result.usage.input_tokens == usage["prompt_tokens"]
        assert result.usage.output_tokens == usage["completion_tokens"]
        assert result.usage.cache_read_tokens == (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        reasoning_tokens = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens", 0)
        assert result.usage.reasoning_tokens == reasoning_tokens
