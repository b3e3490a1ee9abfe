"""Every recorded Responses API transcript (OpenAI, Azure, OpenRouter) replayed through a
loopback server gives its expected outcome through the ``openai-responses`` provider."""

from __future__ import annotations

import hashlib
import json

import pytest

from harness_kernel.errors import ProviderError, ProviderUnavailable, RateLimited
from harness_kernel_openai import ResponsesProvider
from tests.providers_common.events import assemble, collect, request
from tests.providers_common.loopback import LoopbackServer
from tests.providers_common.scripted import ScriptedAPI
from tests.providers_common.wire_fixtures import fixture_params, load

KEY = "sk-fixture-responses-0123456789"

# The documented mapping, written out independently of the provider's code.
BY_CODE: dict[str, type[ProviderError]] = {"insufficient_quota": RateLimited, "server_error": ProviderUnavailable}
FINISH = {"max_output_tokens": "length", "content_filter": "content_filter"}


@pytest.mark.parametrize("piece", [0, 7], ids=["whole", "7-byte-chunks"])
@pytest.mark.parametrize("name", fixture_params("openai-responses"))
async def test_transcript_gives_its_expected_outcome(loopback: LoopbackServer, name: str, piece: int) -> None:
    """Text, reasoning (summary parts joined by a blank line, or raw reasoning text; the
    item id; the encrypted content of the item's done event, byte for byte), function
    calls with parsed arguments in order, the finish reason (incomplete: ``length``),
    usage with cached and reasoning tokens, or the mapped error of a failed response
    come out of the provider exactly, however the bytes are split; the request was a
    streaming POST to /v1/responses without server-side storage."""
    fixture = load(name)
    expected = fixture.expected
    loopback.handler = ScriptedAPI("openai", [fixture.answer(piece)])
    provider = ResponsesProvider(base_url=f"{loopback.url}/v1", api_key=KEY)
    try:
        if expected["status"] == "failed" or expected["errors"]:
            error = expected["error"] or expected["errors"][0]["error"]
            with pytest.raises(BY_CODE[error["code"]]) as info:
                await collect(provider, request("gpt-5"))
            assert type(info.value) is BY_CODE[error["code"]]
            assert error["message"][:80] in str(info.value)
            return
        result = assemble(await collect(provider, request("gpt-5")))
    finally:
        await provider.aclose()
        (sent,) = loopback.requests
        assert (sent.method, sent.path) == ("POST", "/v1/responses")
        assert sent.headers["authorization"] == f"Bearer {KEY}"
        assert (sent.json["stream"], sent.json["store"], sent.json["include"]) == (
            True, False, ["reasoning.encrypted_content"],
        )

    assert result.text == expected["text"]
    assert len(result.reasoning) == len(expected["reasoning_items"])
    for part, item in zip(result.reasoning, expected["reasoning_items"], strict=True):
        assert part.id == item["item_id"]
        assert part.source == "openai-responses"
        if item["summary_parts"]:
            assert (part.text, part.summary) == ("\n\n".join(item["summary_parts"]), True)
        else:
            assert part.text == item.get("reasoning_text", "")
        if item["encrypted_content_present"]:
            assert part.encrypted is not None
            assert len(part.encrypted) == item["encrypted_content_length"]
            assert part.encrypted.startswith(item["encrypted_content_prefix"])
            assert hashlib.sha256(part.encrypted.encode()).hexdigest() == item["encrypted_content_sha256"]
        else:
            assert part.encrypted is None
    wanted = [(c["call_id"], c["name"], c["arguments_parsed"]) for c in expected["function_calls"]]
    assert [(i, n, json.loads(a)) for i, n, a in result.calls] == wanted
    if expected["status"] == "incomplete":
        assert result.finish == FINISH[expected["incomplete_details"]["reason"]]
    else:
        assert result.finish == ("tool_calls" if wanted else "stop")
    usage = expected["usage_summary"]
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.cache_read_tokens) == (usage["input_tokens"], usage["cached_tokens"])
    assert (result.usage.output_tokens, result.usage.reasoning_tokens) == (usage["output_tokens"], usage["reasoning_tokens"])
