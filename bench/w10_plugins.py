"""W10: what the K13 plugins cost.

1. Tracing on a W1 turn (a user message, a model step calling lookup(q), the tool, a
   model step answering): the turn time without the otel plugin and with it, spans
   going to an SDK tracer provider whose exporter drops them (the no-op exporter).
   Turns alternate between the stores, one turn each in turn, so a busy machine (the
   bench machine is shared) affects all alike; each figure is the median of its turns.
   For scale, the SDK's own share: the same four spans with the same attributes, made
   directly on the same tracer provider (what no plugin change can remove).
2. An MCP stdio tool against a local @tool: the median time of one call through the
   kernel's tool (validation against the server's schema, then the call over stdio)
   against the same call of a local tool.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from harness_kernel import (
    ModelRequest,
    Tool,
    ToolContext,
    ToolResultPart,
    create_session_store,
    define_agent,
    hookimpl,
    tool,
)
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall
from harness_kernel_mcp import StdioServer, open_mcp_servers
from harness_kernel_otel import Tracing

ROUNDS = 5
TURNS = 100
CALLS = 300
SERVER = Path(__file__).parent.parent / "tests" / "mcp" / "server_app.py"


class DropSpans(SpanExporter):
    """The no-op exporter: spans are built and handed over, then dropped."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class EmptyHooks:
    """The same hooks as the tracer, doing nothing: the kernel's cost of calling them."""

    @hookimpl
    def session_opened(self) -> None: ...
    @hookimpl
    def run_started(self) -> None: ...
    @hookimpl
    def run_finished(self) -> None: ...
    @hookimpl
    def before_model_call(self) -> None: ...
    @hookimpl
    def after_model_call(self) -> None: ...
    @hookimpl
    def before_tool_call(self) -> None: ...
    @hookimpl
    def after_tool_call(self) -> None: ...


@tool
async def lookup(q: str) -> str:
    """Look something up."""
    return "result"


@tool
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def brain(request: ModelRequest) -> Reply:
    last = request.messages[-1]
    if last.role == "user":
        return Reply(tool_calls=[ToolCall("lookup", {"q": last.text})])
    part = last.parts[0]
    assert isinstance(part, ToolResultPart)
    return Reply(text=f"The answer is {part.content}.")


async def turn(session: Any, i: int) -> float:
    start = time.perf_counter()
    result = await session.send(f"question {i}")
    elapsed = (time.perf_counter() - start) * 1000
    assert result.status == "completed", result.error
    return elapsed


def sdk_spans(tracer: Any) -> float:
    """The four spans of a traced turn, made straight on the SDK (the tracer's floor)."""
    from opentelemetry import context, trace

    start = time.perf_counter()
    run = tracer.start_span("invoke_agent bench", context=context.get_current(), attributes={
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "bench",
        "gen_ai.conversation.id": "s", "gen_ai.provider.name": "scripted", "gen_ai.system": "scripted",
        "gen_ai.request.model": "brain", "harness.run.id": "r", "harness.mode": "default",
    })
    parent = trace.set_span_in_context(run)
    for _ in range(2):
        chat = tracer.start_span("chat brain", context=parent, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "scripted", "gen_ai.system": "scripted",
            "gen_ai.request.model": "brain", "gen_ai.conversation.id": "s",
        })
        chat.set_attributes({"gen_ai.response.model": "brain", "gen_ai.usage.input_tokens": 1,
                             "gen_ai.usage.output_tokens": 1, "gen_ai.response.finish_reasons": ["stop"]})
        chat.end()
    call = tracer.start_span("execute_tool lookup", context=parent, attributes={
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup",
        "gen_ai.tool.call.id": "c", "gen_ai.tool.type": "function",
    })
    call.set_attribute("harness.tool.outcome", "ok")
    call.end()
    run.set_attributes({"harness.run.status": "completed", "gen_ai.usage.input_tokens": 2,
                        "gen_ai.usage.output_tokens": 2})
    run.end()
    return (time.perf_counter() - start) * 1000


async def tracing_cost() -> tuple[float, float, float, float]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(DropSpans()))
    agent = define_agent(name="bench", tools=[lookup])
    common: dict[str, Any] = dict(
        agent=agent, providers=[ScriptedProvider({"brain": brain})], default_model="scripted/brain",
        autoload_plugins=False,
    )
    timings: dict[str, list[float]] = {"plain": [], "hooks": [], "traced": [], "sdk": []}
    tracer = provider.get_tracer("bench")
    async with create_session_store(**common) as bare, create_session_store(
        **common, plugins=[EmptyHooks()]
    ) as hooks, create_session_store(**common, plugins=[Tracing(tracer_provider=provider)]) as traced:
        stores = {"plain": bare, "hooks": hooks, "traced": traced}
        for round_ in range(ROUNDS + 1):  # the first round warms up and is not counted
            sessions = {key: await store.get_or_create(f"r{round_}") for key, store in stores.items()}
            for i in range(TURNS):
                for key, session in sessions.items():
                    elapsed = await turn(session, i)
                    if round_:
                        timings[key].append(elapsed)
                elapsed = sdk_spans(tracer)
                if round_:
                    timings["sdk"].append(elapsed)
    plain, hooks_ms, traced_ms, sdk = (statistics.median(timings[k]) for k in ("plain", "hooks", "traced", "sdk"))
    return plain, hooks_ms, traced_ms, sdk


def context(name: str) -> ToolContext:
    return ToolContext(
        session_id="s", run_id="r", call_id="c", tool_name=name, sandbox=None,  # type: ignore[arg-type]
        resources={}, labels={}, state=None, log=None,
    )


async def per_call(target: Tool, arguments: dict[str, Any]) -> float:
    ctx = context(target.name)
    timings = []
    for _ in range(CALLS):
        start = time.perf_counter()
        value = await target.invoke(ctx, target.validate(arguments))
        timings.append((time.perf_counter() - start) * 1000)
        assert value == "5", value
    return statistics.median(timings)


async def mcp_cost() -> tuple[float, float]:
    server = StdioServer(name="b", command=sys.executable, args=(str(SERVER), "stdio"), approval="auto")
    async with open_mcp_servers([server]) as mcp:
        remote = next(t for t in mcp.tools if t.name == "b__add")
        await per_call(remote, {"a": 2, "b": 3})
        local_ms = await per_call(add, {"a": 2, "b": 3})
        remote_ms = await per_call(remote, {"a": 2, "b": 3})
    return local_ms, remote_ms


async def main() -> None:
    plain, hooks, traced, sdk = await tracing_cost()
    local_ms, remote_ms = await mcp_cost()
    rows = [
        ("W1 turn p50, no tracing (ms)", f"{plain:.3f}"),
        ("W1 turn p50, the same hooks doing nothing (ms)", f"{hooks:.3f}"),
        ("W1 turn p50, otel + no-op exporter (ms)", f"{traced:.3f}"),
        ("  of which the kernel calling 7 hooks", f"{(hooks / plain - 1) * 100:+.1f}%"),
        ("tracing cost per turn", f"{(traced / plain - 1) * 100:+.1f}%"),
        ("  of which the SDK's own 4 spans (made directly)", f"{sdk / plain * 100:+.1f}%"),
        ("local @tool call p50 (ms)", f"{local_ms:.3f}"),
        ("MCP stdio tool call p50 (ms)", f"{remote_ms:.3f}"),
        ("MCP overhead per call (ms)", f"{remote_ms - local_ms:.3f}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    verdict = "met" if traced / plain - 1 < 0.10 else "NOT met"
    print(f"  target: tracing < 10% per turn (medians of {ROUNDS * TURNS} interleaved turns): {verdict}")
    sys.stdout.flush()


if __name__ == "__main__":
    trio.run(main)
