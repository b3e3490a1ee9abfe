"""OpenTelemetry tracing for harness-kernel (GenAI semantic conventions).

Installed, the ``otel`` entry point registers ``default_tracing``, which traces every
store with the global tracer provider and captures no message content. A host that wants
another provider, or content (redacted), passes its own instance::

    create_session_store(..., plugins=[Tracing(tracer_provider=provider, capture_content=True)])

and that instance traces the store's runs instead of the default one. See
``docs/tracing.md``.
"""

from __future__ import annotations

from ._content import MASK, Redactor
from ._tracing import INSTRUMENTATION, SpanEventSink, Tracing, default_tracing

__all__ = ["INSTRUMENTATION", "MASK", "Redactor", "SpanEventSink", "Tracing", "default_tracing"]
