"""The pattern the provider guide teaches: an ``HttpProvider`` subclass that writes only its
wire mapping, tested in process through ``httpx.MockTransport`` (no socket is opened)."""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from harness_kernel import (
    Finish,
    ModelRequest,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
    create_session_store,
    define_agent,
)
from harness_kernel.contracts import ModelEvent, ToolSpec
from harness_kernel.errors import AuthenticationFailed, BadRequest, MalformedResponse
from harness_kernel.http import (
    ErrorDetail,
    HttpProvider,
    ServerSentEvent,
    SSETransport,
    http_url,
    namespace_name,
    positive,
)
from harness_kernel.testing import check_provider
from harness_kernel_anthropic import AnthropicProvider
from harness_kernel_openai import OpenAIProvider

from .events import assemble, collect, request
from .scripted import Call, Reply, anthropic_events, openai_events

KEY = "ws-test-key-1234567"


@attrs.frozen
class WordsmithOptions:
    api_key: str | None = attrs.field(default=None, repr=False, metadata={"secret": True})
    base_url: str = attrs.field(default="https://api.wordsmith.invalid", validator=http_url)
    namespace: str = attrs.field(default="wordsmith", validator=namespace_name)
    api_key_env: str | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    timeout: float | None = attrs.field(default=60.0, validator=positive)
    connect_timeout: float | None = attrs.field(default=10.0, validator=positive)
    read_timeout: float | None = attrs.field(default=None, validator=positive)
    max_response_bytes: int = attrs.field(default=1 << 20, validator=positive)
    max_connections: int = attrs.field(default=10, validator=positive)
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    model_settings: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    models: list[str] | None = None


class WordsmithDecoder:
    def __init__(self, transport: SSETransport) -> None:
        self._transport = transport
        self._done: dict[str, Any] | None = None

    def feed(self, sse: ServerSentEvent) -> list[ModelEvent]:
        try:
            data = json.loads(sse.data)
        except ValueError:
            raise self._transport.malformed("an event is not JSON") from None
        if sse.event == "error":
            raise self._transport.error(ErrorDetail(data["message"], data["type"]))
        if sse.event == "token":
            return [TextDelta(data["text"])]
        if sse.event == "tool":
            return [
                ToolCallStart(data["id"], data["name"]),
                ToolCallDelta(data["id"], data["arguments"]),
                ToolCallEnd(data["id"]),
            ]
        if sse.event == "done":
            self._done = data
        return []

    def end(self) -> list[ModelEvent]:
        if self._done is None:
            raise self._transport.malformed("the stream ended before its done event")
        usage = Usage(input_tokens=self._done["input_tokens"], output_tokens=self._done["output_tokens"])
        return [usage, Finish(self._done["reason"])]


class WordsmithProvider(HttpProvider):
    options_class = WordsmithOptions
    default_base_url = "https://api.wordsmith.invalid"
    key_env = "WORDSMITH_API_KEY"
    user_agent = "harness-kernel-wordsmith/0.1.0"
    path = "v1/generate"
    reserved_settings = frozenset({"model", "system", "prompt", "tools"})

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"} if api_key else {}

    def build_body(self, request: ModelRequest) -> dict[str, Any]:
        prompt = "\n".join(f"{m.role}: {m.text}" for m in request.messages)
        tools = [{"name": t.name, "schema": dict(t.parameters)} for t in request.tools]
        return {"model": request.model, "system": request.system, "prompt": prompt, "tools": tools}

    def new_decoder(self) -> WordsmithDecoder:
        return WordsmithDecoder(self.transport)


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class WordsmithAPI:
    """The wordsmith API as a function for ``httpx.MockTransport``; it records each body."""

    def __init__(self, *, cut: bool = False) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.cut = cut

    def __call__(self, req: httpx.Request) -> httpx.Response:
        assert req.url.path == "/v1/generate"
        auth = req.headers.get("authorization", "")
        if auth != f"Bearer {KEY}":
            return httpx.Response(401, json={"type": "auth", "message": f"key refused: {auth}"})
        body = json.loads(req.content)
        self.bodies.append(body)
        if body["model"] != "fluent":
            return httpx.Response(404, json={"type": "not_found", "message": f"no model {body['model']}"})
        if body["tools"]:
            name = body["tools"][0]["name"]
            events = [
                sse("tool", {"id": "t1", "name": name, "arguments": '{"q": "trio"}'}),
                sse("done", {"reason": "tool_calls", "input_tokens": 9, "output_tokens": 4}),
            ]
        else:
            events = [sse("token", {"text": word}) for word in ("Hello", " from", " wordsmith.")]
            events.append(sse("done", {"reason": "stop", "input_tokens": 9, "output_tokens": 3}))
        if self.cut:
            events = events[:-1]
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b"".join(events))


def wordsmith(api: WordsmithAPI, **options: Any) -> WordsmithProvider:
    return WordsmithProvider(api_key=KEY, http_transport=httpx.MockTransport(api), **options)


async def test_a_subclass_writing_only_its_wire_mapping_streams_text_and_tool_calls() -> None:
    """``build_body`` and ``new_decoder`` are enough: the base posts to ``path``, decodes
    the response and ends with the decoder's closing events."""
    api = WordsmithAPI()
    provider = wordsmith(api)
    try:
        events = await collect(provider, request("fluent"))
        assert assemble(events).text == "Hello from wordsmith."
        assert events[-2:] == [Usage(input_tokens=9, output_tokens=3), Finish("stop")]
        lookup = ToolSpec("lookup", "Look up.", {"type": "object"})
        called = assemble(await collect(provider, request("fluent", tools=(lookup,))))
        assert called.calls == [("t1", "lookup", '{"q": "trio"}')]
        assert api.bodies[0]["prompt"] == "user: Say hello."
    finally:
        await provider.aclose()


async def test_the_base_merges_settings_request_over_model_over_provider() -> None:
    """Provider settings, then the model's, then the request's; ``None`` removes a field;
    a setting naming a field the provider writes is a ``BadRequest`` before any request."""
    api = WordsmithAPI()
    provider = wordsmith(
        api,
        settings={"temperature": 0.7, "seed": 1, "top_p": 0.9},
        model_settings={"fluent": {"temperature": 0.5, "top_k": 5}},
    )
    try:
        await collect(provider, request("fluent", settings={"temperature": 0.2, "top_p": None}))
        body = api.bodies[-1]
        assert (body["temperature"], body["seed"], body["top_k"]) == (0.2, 1, 5)
        assert "top_p" not in body
        with pytest.raises(BadRequest, match="'prompt' cannot be set"):
            await collect(provider, request("fluent", settings={"prompt": "injected"}))
        assert len(api.bodies) == 1
    finally:
        await provider.aclose()


async def test_http_errors_are_typed_and_the_key_is_scrubbed() -> None:
    """A 404 is a ``BadRequest``; a 401 echoing the key is ``AuthenticationFailed`` without
    it; a body cut before its end marker is ``MalformedResponse``, never a ``Finish``."""
    provider = wordsmith(WordsmithAPI())
    wrong_key = "ws-wrong-key-98765"
    wrong = WordsmithProvider(api_key=wrong_key, http_transport=httpx.MockTransport(WordsmithAPI()))
    cut = wordsmith(WordsmithAPI(cut=True))
    try:
        with pytest.raises(BadRequest, match="no model clumsy"):
            await collect(provider, request("clumsy"))
        with pytest.raises(AuthenticationFailed) as refused:
            await collect(wrong, request("fluent"))
        assert wrong_key not in str(refused.value)
        assert "key refused" in str(refused.value)
        with pytest.raises(MalformedResponse, match="before its done event"):
            await collect(cut, request("fluent"))
    finally:
        for each in (provider, wrong, cut):
            await each.aclose()


async def test_the_conformance_kit_and_a_store_run_over_the_mock_transport() -> None:
    """``check_provider`` passes and a store's run completes, all without a network."""
    passed = await check_provider(lambda: wordsmith(WordsmithAPI()), model="fluent", missing_model="clumsy")
    assert "an_unknown_model_raises_provider_error" in passed
    provider = wordsmith(WordsmithAPI())
    try:
        async with create_session_store(
            agent=define_agent(name="demo"), providers=[provider], default_model="wordsmith/fluent"
        ) as store:
            result = await store.send("s1", "Say hello.")
        assert result.status == "completed"
        assert result.text == "Hello from wordsmith."
    finally:
        await provider.aclose()


@pytest.mark.parametrize(
    ("provider_class", "events"),
    [(OpenAIProvider, openai_events), (AnthropicProvider, anthropic_events)],
    ids=["openai", "anthropic"],
)
async def test_the_bundled_providers_take_a_mock_transport(provider_class: Any, events: Any) -> None:
    """Both bundled plugins are ``HttpProvider`` subclasses, so ``http_transport`` serves
    their real wire format from a function too."""
    reply = Reply("Hi there.", calls=(Call("lookup", {"q": "x"}),))
    paths: list[str] = []

    def api(req: httpx.Request) -> httpx.Response:
        paths.append(req.url.path)
        body = b"".join(events(reply))
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    provider = provider_class(api_key=KEY, http_transport=httpx.MockTransport(api))
    try:
        assembled = assemble(await collect(provider, request("any-model")))
    finally:
        await provider.aclose()
    assert assembled.text == "Hi there."
    assert [(name, json.loads(arguments)) for _, name, arguments in assembled.calls] == [("lookup", {"q": "x"})]
    assert len(paths) == 1
    assert paths[0].endswith(f"/{provider_class.path}")


PROVIDERS = Path(__file__).resolve().parents[2] / "providers"


@pytest.mark.parametrize("source", sorted(PROVIDERS.glob("*/src/**/*.py")), ids=lambda p: p.name)
def test_provider_plugins_import_only_the_public_api(source: Path) -> None:
    """A plugin is written as a third party would write it: no ``harness_kernel._private``."""
    tree = ast.parse(source.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "harness_kernel":
                assert not any(part.startswith("_") for part in parts[1:]), f"{source}: imports {name}"
