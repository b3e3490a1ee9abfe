"""``[tracing] plugin = "otel"``: a tracer provider and its exporter, set up from the config.

The instance built here traces the store's runs (it is registered after the autoloaded
default, so it owns them), with its own ``TracerProvider`` (the global one is left to
the host) and a ``BatchSpanProcessor`` flushed when the store closes. ``exporter =
"otlp"`` needs the OpenTelemetry SDK and the OTLP exporter package for the protocol
chosen; a missing one is a configuration error naming the package.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Literal

import attrs

__all__ = ["TracingOptions", "exporter"]

_EXPORTERS = {
    "http/protobuf": (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "opentelemetry-exporter-otlp-proto-http",
    ),
    "grpc": (
        "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
        "opentelemetry-exporter-otlp-proto-grpc",
    ),
}


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


@attrs.frozen(kw_only=True)
class TracingOptions:
    """``[tracing] plugin = "otel"`` options.

    ``exporter``: ``"otlp"`` (to an OpenTelemetry collector) or ``"console"`` (each span
    as JSON on stderr, for a look while developing). ``endpoint``: the collector's URL
    (for ``http/protobuf`` the traces URL, such as ``http://127.0.0.1:4318/v1/traces``);
    unset, the exporter reads ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` /
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` or uses its default. ``protocol``: ``http/protobuf``
    or ``grpc``. ``headers_from_env`` maps a header to the environment variable holding
    its value (a collector's API key stays out of the file). ``service_name`` is the
    ``service.name`` resource attribute. ``capture_content`` and ``max_content_chars``
    are ``Tracing``'s.
    """

    exporter: Literal["otlp", "console"] = "otlp"
    endpoint: str | None = None
    protocol: Literal["http/protobuf", "grpc"] = "http/protobuf"
    headers_from_env: dict[str, str] = attrs.field(factory=dict)
    service_name: str = "harness-kernel"
    capture_content: bool = False
    max_content_chars: int = 16_384

    def __attrs_post_init__(self) -> None:
        if not _importable("opentelemetry.sdk.trace"):
            raise ValueError(
                "exporter: tracing from the config needs the OpenTelemetry SDK, which is not "
                "installed (the package opentelemetry-sdk, the 'sdk' extra of harness-kernel-otel)"
            )
        if self.exporter == "otlp":
            module, package = _EXPORTERS[self.protocol]
            if not _importable(module):
                raise ValueError(
                    f"exporter: 'otlp' over {self.protocol} needs the package {package}, "
                    "which is not installed (install it, or use exporter = \"console\")"
                )
        if self.endpoint is not None and not self.endpoint.startswith(("http://", "https://")):
            raise ValueError(f"endpoint: must start with http:// or https://, got {self.endpoint!r}")
        if self.max_content_chars < 1:
            raise ValueError("max_content_chars: must be at least 1")


def exporter(options: TracingOptions) -> Any:
    """The span exporter ``options`` ask for (the SDK and the exporter package loaded now)."""
    if options.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stderr)
    module = importlib.import_module(_EXPORTERS[options.protocol][0])
    headers = {}
    for header, variable in options.headers_from_env.items():
        value = os.environ.get(variable)
        if not value:
            from harness_kernel.errors import ConfigError

            raise ConfigError(
                f"tracing.options.headers_from_env.{header}: environment variable {variable} is not set"
            )
        headers[header] = value
    arguments: dict[str, Any] = {"headers": headers or None}
    if options.endpoint is not None:
        arguments["endpoint"] = options.endpoint
    return module.OTLPSpanExporter(**arguments)

