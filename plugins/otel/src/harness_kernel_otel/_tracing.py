"""``Tracing``: the lifecycle hooks turned into OpenTelemetry spans.

One span per run (``invoke_agent <agent>``), a child per model call (``chat <model>``)
and per tool execution (``execute_tool <tool>``), with the GenAI semantic conventions'
attributes. Spans are started and ended with explicit parent contexts, never attached
to the context of the task that happens to call a hook: hooks of one run are called from
the session's task, but a run may resume in another task (after an approval).

The OpenTelemetry API is imported with the first tracer, not with this module: the
entry point imports it whenever plugins are listed. Each hook does as little as it can
around the SDK's own work (one attribute call per span and hook, the run's context for
its children made once), since every hook runs inside a turn.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, final

import attrs

from harness_kernel import LogSink, hookimpl
from harness_kernel.hookspecs import Register

from ._content import Redactor, render_messages, render_output, render_value

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider

    from harness_kernel import ModelRequest, RunResult, ToolCallPart, Usage

    from ._configured import TracingOptions

__all__ = ["SpanEventSink", "Tracing", "default_tracing"]

INSTRUMENTATION: Final = "harness_kernel_otel"

# Which Tracing owns a run: the first one whose run_started sees it. A host's own
# instance (registered after the autoloaded one, so called first) wins; the autoloaded
# default then leaves that run alone instead of tracing it twice.
_owners: weakref.WeakValueDictionary[str, Tracing] = weakref.WeakValueDictionary()


@final
class _Api:
    """The parts of the OpenTelemetry API the hooks use, imported on first use."""

    def __init__(self) -> None:
        from opentelemetry import context, propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.current_context: Callable[[], Context] = context.get_current
        self.in_context: Callable[[Span], Context] = trace.set_span_in_context
        self.get_tracer = trace.get_tracer
        self.inject = propagate.inject
        self.internal: SpanKind = SpanKind.INTERNAL
        self.client: SpanKind = SpanKind.CLIENT
        self.error: StatusCode = StatusCode.ERROR
        self.status: type[Status] = Status

    def failed(self, span: Span, why: str, message: str | None = None) -> None:
        span.set_status(self.status(self.error, why if message is None else message))


@functools.cache
def _api() -> _Api:
    return _Api()


@attrs.define(eq=False)
class _RunSpans:
    session_id: str
    span: Span
    context: Context
    """The run span's context: the parent of its model and tool spans."""
    provider: str
    model: Span | None = None
    tools: dict[str, Span] = attrs.Factory(dict)


@final
class Tracing:
    """A harness-kernel plugin that records runs as OpenTelemetry spans.

    ``tracer_provider``: where spans go (default: the global provider, so the host's
    ``trace.set_tracer_provider(...)`` decides the exporters). ``capture_content``: add
    prompts, answers and tool arguments as span attributes (off by default); captured
    text is redacted first: the ``redact_values``, credential shapes (bearer tokens,
    provider keys, ``password=...``), then ``redact`` (a text -> text callable) if given.
    ``max_content_chars`` caps each captured attribute. ``shutdown`` is called (in a
    worker thread) by ``aclose``, which a store calls for the instance ``[tracing]``
    built: it flushes and stops that instance's own provider.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        capture_content: bool = False,
        redact_values: Iterable[str] = (),
        redact: Callable[[str], str] | None = None,
        max_content_chars: int = 16_384,
        shutdown: Callable[[], object] | None = None,
    ) -> None:
        self._provider = tracer_provider
        self._shutdown = shutdown
        self._tracer: Tracer | None = None
        self.capture_content = capture_content
        self._redact = Redactor(redact_values, redact)
        self._limit = max_content_chars
        self._agents: dict[str, str] = {}
        self._runs: dict[str, _RunSpans] = {}

    @property
    def tracer(self) -> Tracer:
        if self._tracer is None:
            # Resolved on first use, so a global provider the host sets after importing
            # this plugin (but before its first run) is the one used.
            self._tracer = _api().get_tracer(INSTRUMENTATION, tracer_provider=self._provider)
        return self._tracer

    @hookimpl
    def harness_kernel_log_sinks(self, register: Register) -> None:
        register("otel", SpanEventSink)

    @hookimpl
    def harness_kernel_tracing(self, register: Register) -> None:
        from ._configured import TracingOptions

        register("otel", configured_tracing, options=TracingOptions)

    async def aclose(self) -> None:
        """Run ``shutdown`` (flush the spans still queued, stop the exporter), if given."""
        if self._shutdown is not None:
            import trio

            await trio.to_thread.run_sync(self._shutdown)

    # -- runs ------------------------------------------------------------------

    def _start_run(self, session_id: str, run_id: str, model: str, mode: str | None, resumed: bool) -> _RunSpans | None:
        if _owners.setdefault(run_id, self) is not self:
            return None
        agent = self._agents.get(session_id, "agent")
        provider = model.partition("/")[0] if "/" in model else ""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent,
            "gen_ai.conversation.id": session_id,
            "gen_ai.provider.name": provider,
            "gen_ai.system": provider,
            "gen_ai.request.model": model.partition("/")[2] or model,
            "harness.run.id": run_id,
        }
        if mode is not None:
            attributes["harness.mode"] = mode
        if resumed:
            attributes["harness.run.resumed"] = True
        tracer, api = self.tracer, _api()
        # The host's current span, if the run was started under one, is the parent.
        span = tracer.start_span(
            f"invoke_agent {agent}", context=api.current_context(), kind=api.internal,
            attributes=attributes,
        )
        spans = _RunSpans(session_id, span, api.in_context(span), provider)
        self._runs[run_id] = spans
        return spans

    def _run(self, session_id: str, run_id: str, request: ModelRequest | None = None) -> _RunSpans | None:
        """The spans of a run, opening a span for a run resumed without ``run_started``
        (after an approval or a restart), unless another Tracing owns it."""
        spans = self._runs.get(run_id)
        if spans is not None:
            return spans
        owner = _owners.get(run_id)
        if owner is not None and owner is not self:
            return None
        model = request.model if request is not None else ""
        return self._start_run(session_id, run_id, model, None, resumed=True)

    @hookimpl
    def session_opened(self, session_id: str, agent: str) -> None:
        self._agents[session_id] = agent

    @hookimpl
    def session_closed(self, session_id: str) -> None:
        self._agents.pop(session_id, None)
        for run_id in [r for r, s in self._runs.items() if s.session_id == session_id]:
            spans = self._runs.pop(run_id)
            self._end_children(spans, "session closed")
            spans.span.end()

    @hookimpl
    def run_started(self, session_id: str, run_id: str, model: str, mode: str) -> None:
        self._start_run(session_id, run_id, model, mode, resumed=False)

    @hookimpl
    def run_finished(self, run_id: str, result: RunResult) -> None:
        spans = self._runs.pop(run_id, None)
        if spans is None:
            return
        if _owners.get(run_id) is self:
            del _owners[run_id]
        span = spans.span
        attributes: dict[str, Any] = {"harness.run.status": result.status, **_usage(result.usage)}
        error = result.error
        if result.status == "failed":
            code = error.code if error is not None else "failed"
            self._end_children(spans, code)
            attributes["error.type"] = code
            _api().failed(span, code, error.message if error is not None else "failed")
        elif result.status == "aborted":
            self._end_children(spans, "aborted")
            attributes["error.type"] = "aborted"
            _api().failed(span, "aborted")
        elif spans.model is not None or spans.tools:
            self._end_children(spans, result.status)
        span.set_attributes(attributes)  # one call: each takes the span's lock
        span.end()

    def _end_children(self, spans: _RunSpans, why: str) -> None:
        """End model and tool spans the run left open (a provider error, an abort)."""
        open_spans = [s for s in (spans.model, *spans.tools.values()) if s is not None]
        spans.model, spans.tools = None, {}
        for span in open_spans:
            span.set_attribute("error.type", why)
            _api().failed(span, why)
            span.end()

    # -- model calls -----------------------------------------------------------

    @hookimpl
    def before_model_call(self, session_id: str, run_id: str, request: ModelRequest) -> None:
        spans = self._run(session_id, run_id, request)
        if spans is None:
            return
        if spans.model is not None:  # the previous call never reported back
            spans.model.end()
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": spans.provider,
            "gen_ai.system": spans.provider,
            "gen_ai.request.model": request.model,
            "gen_ai.conversation.id": session_id,
        }
        settings = request.settings or {}
        for key in ("temperature", "max_tokens", "top_p"):
            value = settings.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                attributes[f"gen_ai.request.{key}"] = value
        if self.capture_content:
            attributes["gen_ai.input.messages"] = render_messages(request.messages, self._redact, self._limit)
            if request.system:
                attributes["gen_ai.system_instructions"] = render_value(
                    [{"type": "text", "content": request.system}], self._redact, self._limit
                )
        spans.model = self.tracer.start_span(
            f"chat {request.model}", context=spans.context, kind=_api().client, attributes=attributes
        )

    @hookimpl
    def after_model_call(
        self,
        run_id: str,
        request: ModelRequest,
        text: str,
        tool_calls: list[ToolCallPart],
        usage: Usage | None,
        finish_reason: str | None,
    ) -> None:
        spans = self._runs.get(run_id)
        if spans is None or spans.model is None:
            return
        span, spans.model = spans.model, None
        attributes: dict[str, Any] = {"gen_ai.response.model": request.model}
        if usage is not None:
            attributes.update(_usage(usage))
        if finish_reason:
            attributes["gen_ai.response.finish_reasons"] = [finish_reason]
        if self.capture_content:
            attributes["gen_ai.output.messages"] = render_output(
                text, tool_calls, finish_reason, self._redact, self._limit
            )
        span.set_attributes(attributes)  # one call: each takes the span's lock
        span.end()

    @hookimpl
    def before_provider_request(self, run_id: str, headers: dict[str, str]) -> None:
        """W3C trace context (``traceparent``, through the configured propagator) for the
        provider's HTTP request: the model call's span, or the host's current span for
        a call outside a traced run (a side question)."""
        owner = _owners.get(run_id) if run_id else None
        if (owner is not None and owner is not self) or "traceparent" in headers:
            return  # the Tracing that owns the run sends it
        spans = self._runs.get(run_id) if run_id else None
        api = _api()
        if spans is not None:
            context = spans.context if spans.model is None else api.in_context(spans.model)
            api.inject(headers, context=context)
        elif owner is None:
            api.inject(headers, context=api.current_context())

    # -- tool calls ------------------------------------------------------------

    def _tool_span(self, spans: _RunSpans, tool: str, call_id: str, arguments: Any = None) -> Span:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.tool.call.id": call_id,
            "gen_ai.tool.type": "function",
        }
        if arguments is not None:
            attributes["gen_ai.tool.call.arguments"] = render_value(arguments, self._redact, self._limit)
        return self.tracer.start_span(
            f"execute_tool {tool}", context=spans.context, kind=_api().internal, attributes=attributes
        )

    @hookimpl
    def before_tool_call(
        self, session_id: str, run_id: str, tool: str, arguments: dict[str, Any], call_id: str
    ) -> None:
        spans = self._run(session_id, run_id)
        if spans is None:
            return
        spans.tools[call_id] = self._tool_span(
            spans, tool, call_id, arguments if self.capture_content else None
        )

    @hookimpl
    def after_tool_call(
        self, session_id: str, run_id: str, tool: str, call_id: str, outcome: str, is_error: bool
    ) -> None:
        spans = self._run(session_id, run_id)
        if spans is None:
            return
        # Calls denied or rejected before running get a span too (with no duration).
        span = spans.tools.pop(call_id, None) or self._tool_span(spans, tool, call_id)
        if is_error:
            span.set_attributes({"harness.tool.outcome": outcome, "error.type": outcome})
            _api().failed(span, outcome)
        else:
            span.set_attribute("harness.tool.outcome", outcome)
        span.end()


def _usage(usage: Usage) -> dict[str, int | float]:
    counts: dict[str, int | float] = {"gen_ai.usage.input_tokens": usage.input_tokens, "gen_ai.usage.output_tokens": usage.output_tokens}
    if usage.cache_read_tokens:
        counts["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read_tokens
    if usage.cache_write_tokens:
        counts["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
    if usage.reasoning_tokens:
        counts["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
    if usage.cost is not None:  # from the store's prices (docs/cost.md)
        counts["harness.usage.cost"] = usage.cost
    return counts


@final
class SpanEventSink(LogSink):
    """The ``otel`` log sink: each kernel log record of a traced run becomes an event on
    that run's span (records arrive redacted; only scalar fields are kept). Add it with
    ``logging={"sinks": ["otel", ...]}``."""

    def write(self, record: Any) -> None:
        run_id = record.get("run_id")
        owner = _owners.get(run_id) if isinstance(run_id, str) else None
        spans = owner._runs.get(run_id) if owner is not None and isinstance(run_id, str) else None
        if spans is None:
            return
        attributes = {
            f"harness.log.{key}": value
            for key, value in record.items()
            if key not in ("event", "run_id", "session_id", "timestamp")
            and isinstance(value, str | bool | int | float)
        }
        spans.span.add_event(str(record.get("event", "log")), attributes=attributes)


default_tracing = Tracing()
"""The instance the entry point registers: the global tracer provider, no content."""


def configured_tracing(options: TracingOptions) -> Tracing:
    """A ``Tracing`` with its own provider exporting as ``options`` say (``[tracing]``)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from ._configured import exporter

    provider = TracerProvider(resource=Resource.create({"service.name": options.service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter(options)))
    return Tracing(
        tracer_provider=provider,
        capture_content=options.capture_content,
        max_content_chars=options.max_content_chars,
        shutdown=provider.shutdown,
    )
