"""Tracing through the lifecycle hooks, asserted with the SDK's in-memory exporter."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import trio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from harness_kernel import (
    ModelRequest,
    ToolResultPart,
    Usage,
    create_session_store,
    define_agent,
    hookimpl,
    tool,
)
from harness_kernel.errors import ProviderUnavailable
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall
from harness_kernel_otel import MASK, Tracing

SECRET = "hunter2-very-secret"


@tool
async def lookup(q: str) -> str:
    """Look something up."""
    return f"result for {q}"


@tool(approval="ask")
async def delete_all() -> str:
    """Delete everything."""
    return "deleted"


class RunEnded:
    """A plugin that tells the test when a run has ended."""

    def __init__(self) -> None:
        self.ended = trio.Event()

    @hookimpl
    def run_finished(self) -> None:
        self.ended.set()


def brain(request: ModelRequest) -> Reply:
    last = request.messages[-1]
    if last.role == "user":
        return Reply(tool_calls=[ToolCall("lookup", {"q": last.text})], usage=Usage(10, 3))
    part = last.parts[0]
    assert isinstance(part, ToolResultPart)
    return Reply(text=f"The answer is {part.content}.", usage=Usage(20, 5))


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp


def store(
    tracing: Tracing, handlers: dict[str, Callable[[ModelRequest], Any]], tools: list[Any], *plugins: object
) -> Any:
    return create_session_store(
        agent=define_agent(name="tracer", tools=tools),
        providers=[ScriptedProvider(handlers)],
        default_model=f"scripted/{next(iter(handlers))}",
        plugins=[tracing, *plugins],
        autoload_plugins=False,
    )


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    named: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    return named


async def test_span_tree_names_and_attributes(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    """A run is one invoke_agent span with a chat child per model call and an
    execute_tool child per tool call, carrying the GenAI attributes."""
    async with store(Tracing(tracer_provider=provider), {"brain": brain}, [lookup]) as s:
        session = await s.create("s1")
        result = await session.send("what?")
    assert result.status == "completed"
    spans = exporter.get_finished_spans()
    named = by_name(spans)
    assert sorted(named) == ["chat brain", "execute_tool lookup", "invoke_agent tracer"]
    (run,) = named["invoke_agent tracer"]
    chats = named["chat brain"]
    (tool_span,) = named["execute_tool lookup"]
    assert len(chats) == 2
    assert run.parent is None
    for child in (*chats, tool_span):
        assert child.parent is not None
        assert child.parent.span_id == run.context.span_id
        assert child.context.trace_id == run.context.trace_id
    assert run.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert run.attributes["gen_ai.agent.name"] == "tracer"
    assert run.attributes["gen_ai.conversation.id"] == "s1"
    assert run.attributes["harness.run.id"] == result.run_id
    assert run.attributes["gen_ai.usage.input_tokens"] == 30
    assert run.attributes["gen_ai.usage.output_tokens"] == 8
    assert run.status.status_code is StatusCode.UNSET
    first, second = sorted(chats, key=lambda s: s.start_time or 0)
    assert first.kind is trace.SpanKind.CLIENT
    assert first.attributes["gen_ai.operation.name"] == "chat"
    assert first.attributes["gen_ai.system"] == "scripted"
    assert first.attributes["gen_ai.provider.name"] == "scripted"
    assert first.attributes["gen_ai.request.model"] == "brain"
    assert first.attributes["gen_ai.response.model"] == "brain"
    assert first.attributes["gen_ai.usage.input_tokens"] == 10
    assert first.attributes["gen_ai.usage.output_tokens"] == 3
    assert first.attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert second.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert tool_span.attributes["gen_ai.tool.name"] == "lookup"
    assert tool_span.attributes["gen_ai.tool.call.id"] == result.tool_calls[0].call_id
    assert tool_span.attributes["harness.tool.outcome"] == "ok"
    # The tool ran between the two model calls.
    assert first.end_time <= tool_span.start_time <= tool_span.end_time <= second.start_time  # type: ignore[operator]


async def test_no_content_by_default(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    """Without capture_content no prompt, answer or argument reaches any span."""
    async with store(Tracing(tracer_provider=provider), {"brain": brain}, [lookup]) as s:
        session = await s.create()
        await session.send(f"my password is {SECRET}")
    for span in exporter.get_finished_spans():
        for key, value in (span.attributes or {}).items():
            assert "messages" not in key
            assert "arguments" not in key
            assert "instructions" not in key
            assert SECRET not in str(value)


async def test_content_is_redacted_when_captured(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    """With capture_content the messages are recorded as JSON, with configured values
    and credential shapes masked."""
    tracing = Tracing(tracer_provider=provider, capture_content=True, redact_values=[SECRET])
    async with store(tracing, {"brain": brain}, [lookup]) as s:
        session = await s.create()
        await session.send(f"use {SECRET} and Authorization: Bearer abcdefghijklmnop1234")
    named = by_name(exporter.get_finished_spans())
    first = min(named["chat brain"], key=lambda s: s.start_time or 0)
    inputs = json.loads(str(first.attributes["gen_ai.input.messages"]))
    assert inputs[-1]["role"] == "user"
    text = inputs[-1]["parts"][0]["content"]
    assert SECRET not in text
    assert "abcdefghijklmnop1234" not in text
    assert MASK in text
    outputs = json.loads(str(first.attributes["gen_ai.output.messages"]))
    assert outputs[0]["parts"][0]["type"] == "tool_call"
    (tool_span,) = named["execute_tool lookup"]
    arguments = str(tool_span.attributes["gen_ai.tool.call.arguments"])
    assert SECRET not in arguments
    assert MASK in arguments
    for span in exporter.get_finished_spans():
        assert all(SECRET not in str(v) for v in (span.attributes or {}).values())


async def test_failed_run_marks_spans_as_errors(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    """A provider error fails the run: the open chat span and the run span end with an
    ERROR status and error.type."""

    def broken(request: ModelRequest) -> Reply:
        raise ProviderUnavailable("upstream is down")

    async with store(Tracing(tracer_provider=provider), {"broken": broken}, []) as s:
        session = await s.create()
        result = await session.send("hi")
    assert result.status == "failed"
    named = by_name(exporter.get_finished_spans())
    (run,) = named["invoke_agent tracer"]
    assert run.status.status_code is StatusCode.ERROR
    assert result.error is not None
    assert run.attributes["error.type"] == result.error.code
    assert run.attributes["harness.run.status"] == "failed"
    for chat in named["chat broken"]:
        assert chat.status.status_code is StatusCode.ERROR


async def test_aborted_run_ends_its_spans(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    """Aborting a run during a tool call ends the tool span and the run span with an
    ERROR status saying aborted."""

    started = trio.Event()

    @tool
    async def sleepy() -> str:
        """Sleep for a long time."""
        started.set()
        await trio.sleep_forever()
        return ""

    def calls_sleepy(request: ModelRequest) -> Reply:
        return Reply(tool_calls=[ToolCall("sleepy", {})])

    async with store(Tracing(tracer_provider=provider), {"calls": calls_sleepy}, [sleepy]) as s:
        session = await s.create()
        async with trio.open_nursery() as nursery:
            results: list[Any] = []

            async def send() -> None:
                results.append(await session.send("go"))

            nursery.start_soon(send)
            await started.wait()
            await session.abort()
    assert results[0].status == "aborted"
    named = by_name(exporter.get_finished_spans())
    (run,) = named["invoke_agent tracer"]
    (tool_span,) = named["execute_tool sleepy"]
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes["error.type"] == "aborted"
    assert tool_span.status.status_code is StatusCode.ERROR


async def test_parked_and_denied_call(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    """A run parked on an approval is one span from its start to its real end; the call
    the user denied gets a tool span with an error status under it."""

    def careful(request: ModelRequest) -> Reply:
        if request.messages[-1].role == "user":
            return Reply(tool_calls=[ToolCall("delete_all", {})])
        return Reply(text="ok")

    ended = RunEnded()
    async with store(Tracing(tracer_provider=provider), {"careful": careful}, [delete_all], ended) as s:
        session = await s.create()
        parked = await session.send("clean up")
        assert parked.status == "waiting_approval"
        assert not any(sp.name.startswith("invoke_agent") for sp in exporter.get_finished_spans())
        (pending,) = session.pending_approvals
        await session.deny(pending.approval_id, "no")
        await ended.ended.wait()
    named = by_name(exporter.get_finished_spans())
    (run,) = named["invoke_agent tracer"]
    assert run.attributes["harness.run.status"] == "completed"
    (tool_span,) = named["execute_tool delete_all"]
    assert tool_span.attributes["harness.tool.outcome"] == "denied"
    assert tool_span.status.status_code is StatusCode.ERROR
    assert tool_span.parent is not None
    assert tool_span.parent.span_id == run.context.span_id
    assert len(named["chat careful"]) == 2


async def test_host_span_is_the_parent(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    """A run started under the host's current span is traced as its child."""
    tracer = provider.get_tracer("host")
    async with store(Tracing(tracer_provider=provider), {"brain": brain}, [lookup]) as s:
        session = await s.create()
        with tracer.start_as_current_span("http request") as host:
            await session.send("q")
    (run,) = by_name(exporter.get_finished_spans())["invoke_agent tracer"]
    assert run.parent is not None
    assert run.parent.span_id == host.get_span_context().span_id


async def test_default_instance_steps_aside_for_the_hosts(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    """With the autoloaded default and a host's own instance in one store, each run is
    traced once, by the host's instance."""
    from harness_kernel_otel import default_tracing

    other = InMemorySpanExporter()
    default_provider = TracerProvider()
    default_provider.add_span_processor(SimpleSpanProcessor(other))
    default_tracing._provider, default_tracing._tracer = default_provider, None
    try:
        async with create_session_store(
            agent=define_agent(name="tracer", tools=[lookup]),
            providers=[ScriptedProvider({"brain": brain})],
            default_model="scripted/brain",
            plugins=[Tracing(tracer_provider=provider), default_tracing],
            autoload_plugins=False,
        ) as s:
            session = await s.create()
            await session.send("q")
    finally:
        default_tracing._provider, default_tracing._tracer = None, None
    assert len(by_name(exporter.get_finished_spans())["invoke_agent tracer"]) == 1
    assert other.get_finished_spans() == ()


async def test_log_records_become_events_on_the_run_span(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    """With the otel log sink, the kernel's log records of a run are events on its span."""
    async with create_session_store(
        agent=define_agent(name="tracer", tools=[lookup]),
        providers=[ScriptedProvider({"brain": brain})],
        default_model="scripted/brain",
        plugins=[Tracing(tracer_provider=provider)],
        logging={"sinks": ["otel"]},
        autoload_plugins=False,
    ) as s:
        session = await s.create()
        await session.send("q")
    (run,) = by_name(exporter.get_finished_spans())["invoke_agent tracer"]
    events = [e.name for e in run.events]
    assert "tool_finished" in events
    tool_event = next(e for e in run.events if e.name == "tool_finished")
    assert tool_event.attributes is not None
    assert tool_event.attributes["harness.log.outcome"] == "ok"
