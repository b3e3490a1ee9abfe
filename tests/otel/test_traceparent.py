"""W3C trace context reaches the provider: a loopback OpenAI-compatible server reads the
``traceparent`` header of each model call's HTTP request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from harness_kernel import create_session_store, define_agent, hookimpl, tool
from harness_kernel_openai import OpenAIProvider
from harness_kernel_otel import Tracing
from tests.providers_common.loopback import LoopbackServer
from tests.providers_common.pytest_fixtures import loopback
from tests.providers_common.scripted import Call, Reply, ScriptedAPI

__all__ = ["loopback"]


@tool(approval="auto")
async def lookup(q: str) -> str:
    """Look something up."""
    return f"found {q}"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def traceparent_of(span: ReadableSpan) -> str:
    context = span.context
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


@asynccontextmanager
async def store(server: LoopbackServer, *plugins: object) -> AsyncIterator[Any]:
    provider = OpenAIProvider(base_url=f"{server.url}/v1", api_key="sk-test-0123456789abcdef")
    try:
        async with create_session_store(
            agent=define_agent(name="looker", tools=[lookup]),
            providers=[provider],
            default_model="openai/gpt-test",
            plugins=list(plugins),
            autoload_plugins=False,
        ) as opened:
            yield opened
    finally:
        await provider.aclose()


async def test_each_model_call_sends_the_traceparent_of_its_span(
    loopback: LoopbackServer, tracer_provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """Two model calls (a tool call, then the answer): each request carries the
    traceparent of its own ``chat`` span, in the run's trace."""
    loopback.handler = ScriptedAPI("openai", [Reply(calls=[Call("lookup", {"q": "x"})]), Reply("done")])
    async with store(loopback, Tracing(tracer_provider=tracer_provider)) as s:
        result = await s.send("s1", "look x up")
    assert result.status == "completed"
    chats = sorted(
        (span for span in exporter.get_finished_spans() if span.name.startswith("chat ")),
        key=lambda span: span.start_time or 0,
    )
    assert len(chats) == 2
    sent = [request.headers.get("traceparent") for request in loopback.requests]
    assert sent == [traceparent_of(span) for span in chats]


async def test_a_run_under_a_host_span_sends_the_hosts_trace(
    loopback: LoopbackServer, tracer_provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A run started under the host's current span: the provider sees that trace id,
    with the model call's span as the parent."""
    loopback.handler = ScriptedAPI("openai", [Reply("hello")])
    tracer = tracer_provider.get_tracer("host")
    async with store(loopback, Tracing(tracer_provider=tracer_provider)) as s:
        with tracer.start_as_current_span("POST /chat") as host:
            await s.send("s1", "hi")
    (header,) = [request.headers["traceparent"] for request in loopback.requests]
    version, trace_id, _parent, _flags = header.split("-")
    assert version == "00"
    assert trace_id == f"{host.get_span_context().trace_id:032x}"
    (chat,) = [span for span in exporter.get_finished_spans() if span.name.startswith("chat ")]
    assert header == traceparent_of(chat)


async def test_a_side_question_carries_the_hosts_current_span(
    loopback: LoopbackServer, tracer_provider: TracerProvider
) -> None:
    """``btw`` belongs to no run: its request carries the host's current span."""
    loopback.handler = ScriptedAPI("openai", [Reply("first"), Reply("aside")])
    tracer = tracer_provider.get_tracer("host")
    async with store(loopback, Tracing(tracer_provider=tracer_provider)) as s:
        session = await s.create("s1")
        await session.send("hi")
        with tracer.start_as_current_span("side") as host:
            assert await session.btw("and?") == "aside"
    assert isinstance(host, ReadableSpan)
    assert loopback.requests[1].headers["traceparent"] == traceparent_of(host)


async def test_without_tracing_no_trace_context_is_sent(loopback: LoopbackServer) -> None:
    """No tracing plugin, no header (the hook adds it, nothing else does)."""
    loopback.handler = ScriptedAPI("openai", [Reply("hello")])
    async with store(loopback) as s:
        await s.send("s1", "hi")
    assert "traceparent" not in loopback.requests[0].headers


class Breaks:
    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def before_provider_request(self) -> None:
        self.calls += 1
        raise RuntimeError("broken plugin")


class Overreaches:
    @hookimpl
    def before_provider_request(self, provider: str, model: str, url: str, headers: dict[str, str]) -> None:
        headers["authorization"] = "Bearer stolen"
        headers["x-seen"] = f"{provider} {model} {url}"


async def test_hook_contract_provider_headers_win_and_a_raising_hook_is_disabled(loopback: LoopbackServer) -> None:
    """A hook cannot replace the provider's credentials; one that raises is disabled for
    the session while the model call goes on."""
    loopback.handler = ScriptedAPI("openai", [Reply("one"), Reply("two")])
    breaks = Breaks()
    async with store(loopback, breaks, Overreaches()) as s:
        first = await s.send("s1", "hi")
        second = await s.send("s1", "again")
    assert (first.status, second.status) == ("completed", "completed")
    for request in loopback.requests:
        assert request.headers["authorization"] == "Bearer sk-test-0123456789abcdef"
        assert request.headers["x-seen"] == f"openai openai/gpt-test {loopback.url}/v1/chat/completions"
    assert breaks.calls == 1  # disabled for the session after it raised


async def test_headers_are_added_only_inside_a_model_call(loopback: LoopbackServer) -> None:
    """A provider used on its own (no store, no run) sends no plugin headers."""
    loopback.handler = ScriptedAPI("openai", [Reply("solo")])
    provider = OpenAIProvider(base_url=f"{loopback.url}/v1", api_key="sk-test-0123456789abcdef")
    from harness_kernel import Message, ModelRequest

    try:
        async for _ in provider.stream(ModelRequest(model="gpt-test", messages=(Message.user("x"),))):
            await trio.lowlevel.checkpoint()
    finally:
        await provider.aclose()
    assert "traceparent" not in loopback.requests[0].headers
