"""Spans exported over OTLP/HTTP to a collector on 127.0.0.1, as an operator's
``[tracing] options = { exporter = "otlp", endpoint = ... }`` sends them; and the clear
error when the exporter package is missing."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from harness_kernel import create_session_store, define_agent
from harness_kernel.errors import ConfigError
from harness_kernel.testing import Reply, ScriptedProvider


class Collector(ThreadingHTTPServer):
    """The trace endpoint of an OpenTelemetry collector: keeps every export request."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[tuple[str, dict[str, str], bytes]] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"


class _Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _spans(body: bytes) -> list[Any]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]


async def test_runs_reach_an_otlp_collector_with_the_configured_headers(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's spans arrive at the collector as OTLP protobuf by the time the store has
    closed, with the header taken from the environment and the service name set."""
    monkeypatch.setenv("COLLECTOR_TOKEN", "t0ken-for-the-collector")
    options = {
        "exporter": "otlp",
        "endpoint": collector.endpoint,
        "headers_from_env": {"x-collector-token": "COLLECTOR_TOKEN"},
        "service_name": "otlp-svc",
    }
    async with create_session_store(
        agent=define_agent(name="exported"),
        providers=[ScriptedProvider({"m": lambda request: Reply(text="hi")})],
        default_model="scripted/m",
        tracing={"plugin": "otel", "options": options},
    ) as store:
        result = await store.send("s1", "hello")
    assert result.status == "completed"
    assert collector.received, "the store closed without exporting its spans"
    paths = {path for path, _, _ in collector.received}
    assert paths == {"/v1/traces"}
    for _, headers, _ in collector.received:
        assert headers["content-type"] == "application/x-protobuf"
        assert headers["x-collector-token"] == "t0ken-for-the-collector"
    spans = [span for _, _, body in collector.received for span in _spans(body)]
    assert sorted(span.name for span in spans) == ["chat m", "invoke_agent exported"]
    run_span = next(span for span in spans if span.name == "invoke_agent exported")
    chat_span = next(span for span in spans if span.name == "chat m")
    assert chat_span.trace_id == run_span.trace_id
    assert chat_span.parent_span_id == run_span.span_id
    request = ExportTraceServiceRequest()
    request.ParseFromString(collector.received[0][2])
    resource = {a.key: a.value.string_value for a in request.resource_spans[0].resource.attributes}
    assert resource["service.name"] == "otlp-svc"


async def test_otlp_without_its_exporter_package_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the exporter package is not installed, asking for it names the package."""
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ConfigError, match="needs the package opentelemetry-exporter-otlp-proto-http"):
        async with create_session_store(
            agent=define_agent(name="a"),
            tracing={"plugin": "otel", "options": {"exporter": "otlp"}},
        ):
            pass
