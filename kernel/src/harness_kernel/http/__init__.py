"""HTTP plumbing for provider plugins: a base provider, a streaming transport, an SSE decoder.

``HttpProvider`` is a provider minus its wire mapping: a subclass writes
``build_body`` and ``new_decoder`` (a sans-IO ``StreamDecoder``), the base owns the
key, the headers, the settings merge and ``stream``. ``SSETransport`` does what every
streaming HTTP provider needs: one httpx client per provider (or the ``httpx``
transport given, such as ``httpx.MockTransport`` in tests), trio deadlines, a cap on
response size, the response closed at once when the consumer stops or is cancelled,
HTTP errors mapped to the kernel's ``ProviderError`` tree (with ``Retry-After``
parsed), and API keys scrubbed from every message. The OpenAI-compatible and
Anthropic plugins are built on them; third-party providers may be.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._secrets import secret_header_values
from ._provider import HttpProvider, StreamDecoder
from ._sse import ServerSentEvent, SSEDecoder
from ._transport import (
    ErrorDetail,
    SSETransport,
    api_key_from_env,
    detail_from_object,
    error_for,
    http_url,
    namespace_name,
    parse_error_body,
    positive,
    retry_after_from,
    scrub,
)

__all__ = [
    "ConnectionPool",
    "ErrorDetail",
    "HttpProvider",
    "SSEDecoder",
    "SSETransport",
    "ServerSentEvent",
    "StreamDecoder",
    "api_key_from_env",
    "detail_from_object",
    "error_for",
    "http_url",
    "namespace_name",
    "parse_error_body",
    "positive",
    "retry_after_from",
    "scrub",
    "secret_header_values",
]

if TYPE_CHECKING:
    from ._pool import ConnectionPool


def __getattr__(name: str) -> Any:
    # The pool subclasses an httpx transport: it loads on first use, so a provider
    # plugin's options (imported whenever plugins are listed) need no httpx or trio.
    if name == "ConnectionPool":
        from ._pool import ConnectionPool

        globals()[name] = ConnectionPool
        return ConnectionPool
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
