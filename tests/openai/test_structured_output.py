"""Structured output against loopback servers speaking Chat Completions and the
Responses API: the strict JSON schema in the exact request body (``response_format`` /
``text.format``), the answer read from the text, repaired once, refused past the limit."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest

from harness_kernel import create_session_store, define_agent
from tests.providers_common.loopback import LoopbackServer
from tests.providers_common.scripted import Reply, ScriptedAPI

KEY = "sk-structured-0123456789abcdef"


@attrs.frozen
class Step:
    explanation: str
    output: str


@attrs.frozen
class Solution:
    steps: list[Step]
    final_answer: str
    confidence: float | None = None


# OpenAI's strict mode: every property required (the optional one is nullable already),
# no other keys anywhere.
STRICT_SCHEMA = {
    "type": "object",
    "properties": {
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"explanation": {"type": "string"}, "output": {"type": "string"}},
                "required": ["explanation", "output"],
                "additionalProperties": False,
            },
        },
        "final_answer": {"type": "string"},
        "confidence": {"anyOf": [{"type": "number"}, {"type": "null"}]},
    },
    "required": ["steps", "final_answer", "confidence"],
    "additionalProperties": False,
}

GOOD = {"steps": [{"explanation": "8x = -30", "output": "x = -3.75"}], "final_answer": "x = -3.75", "confidence": 0.9}
BAD = {"steps": [{"explanation": "8x = -30"}], "final_answer": "x = -3.75", "confidence": None}

WIRES = {
    "openai": ("openai", "openai/gpt-4o-2024-08-06"),
    "responses": ("openai-responses", "openai-responses/gpt-4o-2024-08-06"),
}


def _store(loopback: LoopbackServer, wire: str, **agent: Any) -> Any:
    plugin, model = WIRES[wire]
    return create_session_store(
        agent=define_agent(name="math", instructions="You are a math tutor.", output_type=Solution, **agent),
        providers=[{"plugin": plugin, "options": {"base_url": f"{loopback.url}/v1", "api_key": KEY}}],
        default_model=model,
    )


def _format(wire: str, body: dict[str, Any]) -> Any:
    if wire == "openai":
        return body["response_format"]
    return body["text"]


def _expected_format(wire: str) -> Any:
    if wire == "openai":
        return {"type": "json_schema", "json_schema": {"name": "Solution", "schema": STRICT_SCHEMA, "strict": True}}
    return {"format": {"type": "json_schema", "name": "Solution", "schema": STRICT_SCHEMA, "strict": True}}


@pytest.mark.parametrize("wire", sorted(WIRES))
async def test_the_strict_schema_is_sent_and_the_text_is_the_typed_answer(loopback: LoopbackServer, wire: str) -> None:
    """The request carries the type's strict schema in the API's own field (and no
    final-answer tool); the JSON text becomes RunResult.output."""
    loopback.handler = ScriptedAPI(wire, [Reply(json.dumps(GOOD))])
    async with _store(loopback, wire) as store:
        result = await store.send("s1", "Solve 8x + 7 = -23")
    assert result.status == "completed"
    assert result.output == Solution([Step("8x = -30", "x = -3.75")], "x = -3.75", 0.9)
    body = loopback.requests[0].json
    assert _format(wire, body) == _expected_format(wire)
    assert "tools" not in body
    if wire == "openai":
        assert body["messages"] == [
            {"role": "system", "content": "You are a math tutor."},
            {"role": "user", "content": "Solve 8x + 7 = -23"},
        ]
    else:
        assert body["instructions"] == "You are a math tutor."
        assert body["input"] == [{"role": "user", "content": "Solve 8x + 7 = -23"}]


@pytest.mark.parametrize("wire", sorted(WIRES))
async def test_an_invalid_answer_is_sent_back_and_the_repair_accepted(loopback: LoopbackServer, wire: str) -> None:
    """The second request is the conversation plus the refused answer and a user
    message naming what was wrong, by path."""
    loopback.handler = ScriptedAPI(wire, [Reply(json.dumps(BAD)), Reply(json.dumps(GOOD))])
    async with _store(loopback, wire) as store:
        result = await store.send("s1", "Solve 8x + 7 = -23")
    assert (result.status, result.output.final_answer) == ("completed", "x = -3.75")
    second = loopback.requests[1].json
    assert _format(wire, second) == _expected_format(wire)
    repair = (
        "The answer does not match Solution: steps[0].output: required field missing. Answer again, with JSON only."
    )
    if wire == "openai":
        assert second["messages"][2:] == [
            {"role": "assistant", "content": json.dumps(BAD)},
            {"role": "user", "content": repair},
        ]
    else:
        assert second["input"][1:] == [
            {"role": "assistant", "content": json.dumps(BAD)},
            {"role": "user", "content": repair},
        ]


@pytest.mark.parametrize("wire", sorted(WIRES))
async def test_invalid_past_the_limit_fails_the_run(loopback: LoopbackServer, wire: str) -> None:
    """output_retries=1: two answers that are not JSON of the type end the run failed
    with run.output_invalid after exactly two requests."""
    loopback.handler = ScriptedAPI(wire, [Reply("x = -3.75"), Reply(json.dumps(BAD))])
    async with _store(loopback, wire, output_retries=1) as store:
        result = await store.send("s1", "Solve 8x + 7 = -23")
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "run.output_invalid"
    assert "steps[0].output: required field missing" in result.error.message
    assert len(loopback.requests) == 2


async def test_a_type_strict_mode_cannot_express_is_sent_not_strict(loopback: LoopbackServer) -> None:
    """A free-form map has no strict form: the schema goes as it is, strict false."""

    @attrs.frozen
    class Tagged:
        tags: dict[str, int]

    loopback.handler = ScriptedAPI("openai", [Reply('{"tags": {"a": 1}}')])
    async with create_session_store(
        agent=define_agent(name="tags", output_type=Tagged),
        providers=[{"plugin": "openai", "options": {"base_url": f"{loopback.url}/v1", "api_key": KEY}}],
        default_model="openai/gpt-4o",
    ) as store:
        result = await store.send("s1", "Tag it")
    assert result.output == Tagged({"a": 1})
    assert loopback.requests[0].json["response_format"]["json_schema"] == {
        "name": "Tagged",
        "schema": {
            "type": "object",
            "properties": {"tags": {"type": "object", "additionalProperties": {"type": "integer"}}},
            "required": ["tags"],
            "additionalProperties": False,
        },
        "strict": False,
    }
