"""Structured output against a loopback Messages API server: Anthropic has no
JSON-schema mode, so the answer is a call of the kernel's final_answer tool (the model
is made to call a tool, unless it thinks); exact request bodies, repaired, refused."""

from __future__ import annotations

from typing import Any

import attrs

from harness_kernel import create_session_store, define_agent, tool
from tests.providers_common.loopback import LoopbackServer
from tests.providers_common.scripted import Call, Reply, ScriptedAPI

KEY = "sk-ant-structured-0123456789abcdef"


@attrs.frozen
class Weather:
    location: str
    celsius: float
    conditions: list[str] = attrs.field(factory=list)


SCHEMA = {
    "type": "object",
    "properties": {
        "location": {"type": "string"},
        "celsius": {"type": "number"},
        "conditions": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["location", "celsius"],
    "additionalProperties": False,
}
FINAL = {
    "name": "final_answer",
    "description": "Give your final answer. Call this once, when you are done; the arguments are the answer.",
    "input_schema": SCHEMA,
}


@tool
async def forecast(location: str) -> str:
    """Get the weather for a location."""
    return "40 C, sunny"


def _store(loopback: LoopbackServer, *, settings: dict[str, Any] | None = None, **agent: Any) -> Any:
    options: dict[str, Any] = {"base_url": loopback.url, "api_key": KEY, "settings": settings or {}}
    return create_session_store(
        agent=define_agent(name="weather", instructions="Be brief.", tools=[forecast], output_type=Weather, **agent),
        providers=[{"plugin": "anthropic", "options": options}],
        default_model="anthropic/claude-sonnet-4-20250514",
    )


async def test_a_tool_round_then_the_final_answer_tool(loopback: LoopbackServer) -> None:
    """The request lists the agent's tools plus final_answer (the type's schema) and
    forces a tool call; after a forecast round the final_answer call is the output,
    and the history the model sees next time has a result for it."""
    loopback.handler = ScriptedAPI("anthropic", [
        Reply(calls=[Call("forecast", {"location": "Florence"}, call_id="toolu_1")]),
        Reply(calls=[Call("final_answer", {"location": "Florence", "celsius": 40, "conditions": ["sunny"]},
                          call_id="toolu_2")]),
        Reply(calls=[Call("final_answer", {"location": "Rome", "celsius": 38.5}, call_id="toolu_3")]),
    ])
    async with _store(loopback) as store:
        first = await store.send("s1", "Weather in Florence?")
        second = await store.send("s1", "And Rome?")
    assert (first.status, first.output) == ("completed", Weather("Florence", 40, ["sunny"]))
    assert second.output == Weather("Rome", 38.5)
    body = loopback.requests[0].json
    assert body == {
        "model": "claude-sonnet-4-20250514",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Weather in Florence?"}]}],
        "stream": True,
        "system": "Be brief.",
        "tools": [
            {"name": "forecast", "description": "Get the weather for a location.", "input_schema": {
                "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"],
                "additionalProperties": False}},
            FINAL,
        ],
        "tool_choice": {"type": "any"},
        "max_tokens": body["max_tokens"],
    }
    third = loopback.requests[2].json
    assert third["messages"][3:] == [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_2", "name": "final_answer",
                                           "input": {"location": "Florence", "celsius": 40, "conditions": ["sunny"]}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "accepted"},
            {"type": "text", "text": "And Rome?"},
        ]},
    ]


async def test_an_invalid_answer_is_a_tool_error_and_the_repair_is_kept(loopback: LoopbackServer) -> None:
    """The refused final_answer call gets an error result naming the problem by path;
    the model calls it again correctly."""
    loopback.handler = ScriptedAPI("anthropic", [
        Reply(calls=[Call("final_answer", {"location": "Florence", "celsius": "hot"}, call_id="toolu_1")]),
        Reply(calls=[Call("final_answer", {"location": "Florence", "celsius": 40.0}, call_id="toolu_2")]),
    ])
    async with _store(loopback) as store:
        result = await store.send("s1", "Weather in Florence?")
    assert result.output == Weather("Florence", 40.0)
    assert loopback.requests[1].json["messages"][-1] == {"role": "user", "content": [{
        "type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
        "content": "the answer does not match Weather: celsius: expected float, got str; call it again",
    }]}


async def test_past_the_limit_the_run_fails_and_thinking_is_not_forced(loopback: LoopbackServer) -> None:
    """With extended thinking on, tool_choice stays the API's default (it allows only
    auto); text instead of the tool, twice with output_retries=1, fails the run."""
    loopback.handler = ScriptedAPI("anthropic", [Reply("Hot."), Reply("Very hot.")])
    thinking = {"type": "enabled", "budget_tokens": 1024}
    async with _store(loopback, settings={"thinking": thinking}, output_retries=1) as store:
        result = await store.send("s1", "Weather in Florence?")
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "run.output_invalid"
    assert result.error.message == "the answer does not match Weather: no answer was given (after 1 repair)"
    first, second = (r.json for r in loopback.requests)
    assert "tool_choice" not in first
    assert first["thinking"] == thinking
    assert second["messages"][-1] == {"role": "user", "content": [{
        "type": "text", "text": "The answer does not match Weather: no answer was given. Call 'final_answer' with the answer.",
    }]}
