"""The cost the store's prices give a model call reaches its span and the run's."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from harness_kernel import Price, Usage, create_session_store, define_agent
from harness_kernel.testing import Reply, ScriptedProvider
from harness_kernel_otel import Tracing


async def test_chat_and_run_spans_carry_the_cost() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with create_session_store(
        agent=define_agent(name="priced"),
        providers=[ScriptedProvider({"m": lambda request: Reply(text="hi", usage=Usage(1000, 100))})],
        default_model="scripted/m",
        prices={"scripted/m": Price(input=1.0, output=10.0)},
        plugins=[Tracing(tracer_provider=provider)],
        autoload_plugins=False,
    ) as store:
        result = await store.send("s1", "hello")
    assert result.usage.cost == pytest.approx(0.002)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert spans["chat m"].attributes["harness.usage.cost"] == pytest.approx(0.002)
    assert spans["invoke_agent priced"].attributes["harness.usage.cost"] == pytest.approx(0.002)
