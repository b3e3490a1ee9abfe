"""What the openai provider sends: messages, tools, settings, headers, keys, namespaces."""

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
    create_session_store,
    define_agent,
)
from harness_kernel.contracts import ToolSpec
from harness_kernel.errors import BadRequest, ConfigError, MalformedResponse
from harness_kernel_openai import DEFAULT_BASE_URL, OpenAIOptions, OpenAIProvider
from tests.providers_common.events import assemble, collect, request
from tests.providers_common.loopback import LoopbackServer
from tests.providers_common.scripted import Raw, Reply, ScriptedAPI

KEY = "sk-requests-0123456789abcdefgh"
LOOKUP = ToolSpec("lookup", "Look a word up.", {"type": "object", "properties": {"word": {"type": "string"}}})


async def _sent(loopback: LoopbackServer, req: ModelRequest, **options: Any) -> Any:
    loopback.handler = ScriptedAPI("openai", lambda body: Reply("ok"))
    provider = OpenAIProvider(base_url=f"{loopback.url}/v1", **options)
    try:
        await collect(provider, req)
    finally:
        await provider.aclose()
    return loopback.requests[-1]


async def test_the_conversation_maps_to_chat_completions_messages(loopback: LoopbackServer) -> None:
    """System prompt first; assistant tool calls carry JSON arguments; each tool result is
    a ``tool`` message answering its call id; tools are functions with their schema."""
    history = (
        Message.user("Define trio."),
        Message("assistant", (TextPart("Looking it up."), ToolCallPart("call_1", "lookup", {"word": "trio"}))),
        Message("tool", (ToolResultPart("call_1", "a library"),)),
        Message("assistant", (ToolCallPart("call_2", "lookup", {}),)),
        Message("tool", (ToolResultPart("call_2", "boom", is_error=True),)),
    )
    sent = await _sent(loopback, ModelRequest("gpt-test", history, system="Be brief.", tools=(LOOKUP,)), api_key=KEY)
    body = sent.json
    assert body["model"] == "gpt-test"
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Define trio."},
        {"role": "assistant", "content": "Looking it up.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"word": "trio"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "a library"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_2", "type": "function", "function": {"name": "lookup", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "call_2", "content": "boom"},
    ]
    assert body["tools"] == [{"type": "function", "function": {
        "name": "lookup", "description": "Look a word up.", "parameters": LOOKUP.parameters,
    }}]


async def test_settings_merge_provider_model_and_request_levels(loopback: LoopbackServer) -> None:
    """Provider settings < per-model settings < the request's; None removes a default."""
    req = ModelRequest("gpt-test", (Message.user("hi"),), settings={"temperature": 0.1, "seed": None})
    sent = await _sent(
        loopback, req,
        settings={"temperature": 1.0, "seed": 7, "top_p": 0.5},
        model_settings={"gpt-test": {"max_tokens": 50, "top_p": 0.9}, "other": {"max_tokens": 1}},
    )
    body = sent.json
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.1, 0.9, 50)
    assert "seed" not in body


async def test_a_setting_may_not_replace_what_the_provider_writes(loopback: LoopbackServer) -> None:
    """``messages``, ``model``, ``stream`` and ``tools`` in settings are a BadRequest, and
    nothing is sent."""
    provider = OpenAIProvider(base_url=f"{loopback.url}/v1", settings={"stream": False})
    try:
        with pytest.raises(BadRequest, match="'stream' cannot be set"):
            await collect(provider, request("gpt-test"))
    finally:
        await provider.aclose()
    assert loopback.requests == []


async def test_headers_carry_key_organization_project_and_extras(loopback: LoopbackServer) -> None:
    """Bearer key, OpenAI-Organization, OpenAI-Project, extra headers and our user agent."""
    sent = await _sent(
        loopback, request("gpt-test"), api_key=KEY, organization="org-1", project="proj-1",
        headers={"x-extra": "yes"}, include_usage=False,
    )
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert (sent.headers["openai-organization"], sent.headers["openai-project"]) == ("org-1", "proj-1")
    assert sent.headers["x-extra"] == "yes"
    assert sent.headers["user-agent"].startswith("harness-kernel-openai/")
    assert "stream_options" not in sent.json


async def test_the_environment_key_goes_only_to_openai_itself(loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """OPENAI_API_KEY is the default key for OpenAI's base URL only; another server gets no
    key unless ``api_key_env`` names a variable for it."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-0123456789abcdef")
    monkeypatch.setenv("LOCAL_KEY", "local-key-123")
    assert OpenAIProvider(base_url=DEFAULT_BASE_URL).secret_values() == ["sk-from-env-0123456789abcdef"]
    sent = await _sent(loopback, request("gpt-test"))
    assert "authorization" not in sent.headers
    sent = await _sent(loopback, request("gpt-test"), api_key_env="LOCAL_KEY")
    assert sent.headers["authorization"] == "Bearer local-key-123"


def test_the_key_stays_out_of_reprs() -> None:
    """Neither the options nor the provider show the key (or credential headers) in repr."""
    options = OpenAIOptions(api_key=KEY, headers={"api-key": "azure-secret-1"})
    provider = OpenAIProvider(options)
    for text in (repr(options), repr(provider)):
        assert KEY not in text
        assert "azure-secret-1" not in text
    assert provider.secret_values() == [KEY, "azure-secret-1"]


async def test_a_second_instance_serves_another_namespace(nursery: Any) -> None:
    """``openai/...`` and ``ollama/...`` in one store reach their own servers; the local
    one gets no key."""
    cloud, local = LoopbackServer(), LoopbackServer()
    await nursery.start(cloud.serve)
    await nursery.start(local.serve)
    cloud.handler = ScriptedAPI("openai", lambda body: Reply(f"cloud {body['model']}"))
    local.handler = ScriptedAPI("openai", lambda body: Reply(f"local {body['model']}"))
    agent = define_agent(name="two")
    async with create_session_store(
        agent=agent,
        providers=[
            {"plugin": "openai", "options": {"base_url": f"{cloud.url}/v1", "api_key": KEY}},
            {"plugin": "openai", "options": {"base_url": f"{local.url}/v1", "namespace": "ollama"}},
        ],
        default_model="openai/gpt-4.1",
    ) as store:
        first = await store.send("s1", "hi")
        second = await store.send("s1", "hi", model="ollama/llama3")
    assert (first.text, second.text) == ("cloud gpt-4.1", "local llama3")
    assert cloud.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert "authorization" not in local.requests[0].headers


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"base_url": "ftp://example.invalid"}, "options.base_url: must start with http:// or https://"),
        ({"namespace": "a/b"}, "options.namespace: must be a non-empty name without '/'"),
        ({"timeout": -1.0}, "options.timeout: must be a positive number, got -1.0"),
        ({"timeout": float("nan")}, "options.timeout: must be a positive number, got nan"),
        ({"temperature": 0.2}, "unknown key(s): temperature"),
    ],
)
async def test_bad_options_are_config_errors_with_their_path(options: dict[str, Any], message: str) -> None:
    """Options are validated strictly by the kernel; errors name the option."""
    with pytest.raises(ConfigError) as info:
        async with create_session_store(
            agent=define_agent(name="bad"), providers=[{"plugin": "openai", "options": options}],
            default_model="scripted/echo",
        ):
            pass
    assert "providers[0].options" in str(info.value)
    assert message in str(info.value)


async def test_odd_but_valid_servers_are_understood(loopback: LoopbackServer) -> None:
    """Calls without an index, arguments sent as an object, a repeated call id, no [DONE]
    after a finish reason: each still assembles into well-formed events."""
    chunks = [
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"id": "dup", "type": "function", "function": {"name": "lookup", "arguments": {"word": "a"}}},
        ]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"id": "dup", "type": "function", "function": {"name": "lookup", "arguments": '{"word": "b"}'}},
        ]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    loopback.handler = ScriptedAPI("openai", [Raw(body)])
    provider = OpenAIProvider(base_url=f"{loopback.url}/v1")
    try:
        result = assemble(await collect(provider, request("m")))
    finally:
        await provider.aclose()
    assert [(n, json.loads(a)) for _, n, a in result.calls] == [("lookup", {"word": "a"}), ("lookup", {"word": "b"})]
    assert result.calls[0][0] == "dup"
    assert result.calls[1][0] != "dup"
    assert result.finish == "tool_calls"


async def test_a_tool_call_without_a_name_is_malformed(loopback: LoopbackServer) -> None:
    """A tool call that starts with no function name cannot be run: MalformedResponse."""
    body = b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","function":{"arguments":"{}"}}]}}]}\n\n'
    loopback.handler = ScriptedAPI("openai", [Raw(body + b"data: [DONE]\n\n")])
    provider = OpenAIProvider(base_url=f"{loopback.url}/v1")
    try:
        with pytest.raises(MalformedResponse, match="without a function name"):
            await collect(provider, request("m"))
    finally:
        await provider.aclose()


def test_the_plugin_is_listed_with_its_distribution() -> None:
    """Installed, ``openai`` appears in the plugin listing as a loaded provider."""
    rows = {(r.kind, r.name): r for r in PluginRegistry().listing()}
    row = rows[("provider", "openai")]
    assert (row.status, row.distribution, row.version) == ("loaded", "harness-kernel-openai", "0.1.0")
