"""The ``openai-responses`` provider through the kernel: reasoning carried across a tool
call without server-side storage, parallel calls, images, and the request's shape.

Recorded transcripts (``../shared/fixtures/wire``) are served by the loopback server;
the bodies the provider sends on the next turn are asserted whole.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness_kernel import (
    ImagePart,
    Message,
    ModelRequest,
    PluginRegistry,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    create_session_store,
    define_agent,
    tool,
)
from harness_kernel.errors import BadRequest
from harness_kernel_openai import ResponsesProvider, responses_input
from tests.providers_common.loopback import LoopbackServer
from tests.providers_common.scripted import ScriptedAPI
from tests.providers_common.wire_fixtures import WIRE_DIR, load

KEY = "sk-responses-0123456789abcdef"
pytestmark = pytest.mark.skipif(not WIRE_DIR.is_dir(), reason="wire fixtures not found")


@tool
async def weather(location: str) -> str:
    """Get weather information for a location"""
    return "40 C"


@tool
async def add(a: int, b: int) -> str:
    """Add two numbers"""
    return str(a + b)


@tool
async def multiply(a: int, b: int) -> str:
    """Multiply two numbers"""
    return str(a * b)


def _done_items(name: str) -> list[dict[str, Any]]:
    """The items of a transcript's ``response.output_item.done`` events, read here apart
    from the provider."""
    items = []
    for line in (WIRE_DIR / f"{name}.sse").read_text().splitlines():
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            data = json.loads(line[5:])
            if data.get("type") == "response.output_item.done":
                items.append(data["item"])
    return items


def _store(loopback: LoopbackServer, agent: Any, **options: Any) -> Any:
    return create_session_store(
        agent=agent,
        providers=[{"plugin": "openai-responses",
                    "options": {"base_url": f"{loopback.url}/v1", "api_key": KEY, **options}}],
        default_model="openai-responses/gpt-5",
    )


async def test_encrypted_reasoning_goes_back_before_its_call_without_server_storage(loopback: LoopbackServer) -> None:
    """Turn 1 reasons (a summary and encrypted content) and calls weather; turn 2's body
    is exactly: the user message, the reasoning item (id, summary, the encrypted content
    of its done event unchanged), the function_call and its output, with store false
    and encrypted reasoning asked for again. The summary is kept in the history."""
    first, second = "azure_openai_responses_reasoning_summary_function_call_gpt5mini", "openai_responses_reasoning_summary_encrypted_gpt5"
    loopback.handler = ScriptedAPI("openai", [load(first).answer(), load(second).answer()])
    settings = {"reasoning": {"effort": "high", "summary": "auto"}}
    agent = define_agent(name="weather", instructions="You are a helpful assistant", tools=[weather], model_settings=settings)
    async with _store(loopback, agent) as store:
        result = await store.send("s1", "What's the weather in Florence, Italy?")
        history = await (await store.get_or_create("s1")).history()
    assert (result.status, result.text) == ("completed", load(second).expected["text"])
    reasoning, call = _done_items(first)
    summary = load(first).expected["reasoning_items"][0]["summary_parts"][0]
    assert loopback.requests[1].json == {
        "model": "gpt-5",
        "input": [
            {"role": "user", "content": "What's the weather in Florence, Italy?"},
            {"type": "reasoning", "id": reasoning["id"], "summary": [{"type": "summary_text", "text": summary}],
             "encrypted_content": reasoning["encrypted_content"]},
            {"type": "function_call", "call_id": call["call_id"], "name": "weather", "arguments": '{"location": "Florence, Italy"}'},
            {"type": "function_call_output", "call_id": call["call_id"], "output": "40 C"},
        ],
        "stream": True,
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "instructions": "You are a helpful assistant",
        "tools": [{"type": "function", "name": "weather", "description": "Get weather information for a location",
                   "parameters": loopback.requests[0].json["tools"][0]["parameters"], "strict": False}],
        "reasoning": {"effort": "high", "summary": "auto"},
    }
    assert history[1].reasoning == (ReasoningPart(
        summary, summary=True, encrypted=reasoning["encrypted_content"], id=reasoning["id"], source="openai-responses",
    ),)
    assert history[-1].reasoning[0].text == load(second).expected["reasoning_summary"]


@pytest.mark.parametrize("name", ["openai_responses_parallel_function_calls_gpt4o",
                                  "openai_responses_parallel_function_calls_reasoning_gpt5"])
async def test_parallel_calls_run_and_go_back_in_order(loopback: LoopbackServer, name: str) -> None:
    """Two function calls in one response: both run, and the next body carries both calls
    then both outputs, in the order the model made them. Reasoning without encrypted
    content (the server kept it) is not sent back when nothing is stored."""
    fixture = load(name)
    loopback.handler = ScriptedAPI("openai", [fixture.answer(), load("openai_responses_text_gpt4omini").answer()])
    agent = define_agent(name="math", instructions="Use both tools.", tools=[add, multiply])
    async with _store(loopback, agent) as store:
        result = await store.send("s1", "Add and multiply the number 2 and 3")
    assert result.status == "completed"
    calls = fixture.expected["function_calls"]
    assert loopback.requests[1].json["input"] == [
        {"role": "user", "content": "Add and multiply the number 2 and 3"},
        *({"type": "function_call", "call_id": c["call_id"], "name": c["name"], "arguments": '{"a": 2, "b": 3}'} for c in calls),
        {"type": "function_call_output", "call_id": calls[0]["call_id"], "output": "5"},
        {"type": "function_call_output", "call_id": calls[1]["call_id"], "output": "6"},
    ]


async def test_an_image_input_is_sent_as_the_recorded_client_sends_it(loopback: LoopbackServer) -> None:
    """The recorded image request: input_text then input_image with its URL and detail
    auto; the response is incomplete (max_output_tokens), so the run completes with the
    partial text and the finish reason length."""
    name = "openai_responses_incomplete_image_input_gpt5nano"
    recorded = json.loads((WIRE_DIR / f"{name}.request.json").read_text())
    image = recorded["input"][0]["content"][1]
    loopback.handler = ScriptedAPI("openai", [load(name).answer()])
    agent = define_agent(name="eyes", instructions="", model_settings={"max_output_tokens": 300})
    async with _store(loopback, agent) as store:
        session = await store.create("s1")
        result = await session.send(Message.user(recorded["input"][0]["content"][0]["text"], ImagePart(url=image["image_url"])))
    assert (result.status, result.text) == ("completed", load(name).expected["text"])
    sent = loopback.requests[0].json
    assert (sent["model"], sent["input"], sent["max_output_tokens"]) == ("gpt-5", recorded["input"], 300)


async def test_a_failed_response_fails_the_run_with_the_mapped_error(loopback: LoopbackServer) -> None:
    """A response that fails with insufficient_quota ends the run failed with the
    sanitized rate-limit error, its message kept."""
    loopback.handler = ScriptedAPI("openai", [load("openai_responses_error_insufficient_quota_failed").answer()] * 4)
    async with _store(loopback, define_agent(name="a", instructions="")) as store:
        result = await store.send("s1", "hi")
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "provider.rate_limited"
    assert "You exceeded your current quota" in result.error.message


def test_inputs_store_and_refused_parts() -> None:
    """Inline images become data: URLs; with store on, reasoning without encrypted content
    goes back by id; another API's reasoning never does; an unresolved ref is refused."""
    history = (
        Message.user("Look.", ImagePart("image/png", b"png")),
        Message("assistant", (
            ReasoningPart("", id="rs_1", source="openai-responses"),
            ReasoningPart("thought", signature="sig", source="anthropic"),
            TextPart("A picture."),
            ToolCallPart("c1", "zoom", {}),
        )),
    )
    assert responses_input(ModelRequest("m", history), store=True) == [
        {"role": "user", "content": [{"type": "input_text", "text": "Look."},
                                     {"type": "input_image", "image_url": "data:image/png;base64,cG5n", "detail": "auto"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"role": "assistant", "content": "A picture."},
        {"type": "function_call", "call_id": "c1", "name": "zoom", "arguments": "{}"},
    ]
    assert {"type": "reasoning", "id": "rs_1", "summary": []} not in responses_input(ModelRequest("m", history))
    with pytest.raises(BadRequest, match="was not resolved"):
        responses_input(ModelRequest("m", (Message.user("x", ImagePart(ref="host:7")),)))


def test_the_plugin_is_registered_with_its_options() -> None:
    """``openai-responses`` is a provider of the openai distribution; a setting naming a
    field the provider writes is refused."""
    rows = {(r.kind, r.name): r for r in PluginRegistry().listing()}
    row = rows[("provider", "openai-responses")]
    assert (row.status, row.distribution) == ("loaded", "harness-kernel-openai")
    provider = ResponsesProvider(api_key=KEY)
    with pytest.raises(BadRequest, match="'input' cannot be set"):
        provider.request_body(ModelRequest("m", (Message.user("x"),), settings={"input": []}))
