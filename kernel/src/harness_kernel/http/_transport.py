"""HTTP plumbing for provider plugins: one httpx client, SSE under trio deadlines, typed errors.

``SSETransport`` posts a JSON body and yields the server-sent events of the response. It
owns what every streaming provider needs and gets wrong in its own way:

- the whole call runs under a trio deadline (``timeout``), with an optional limit on
  silence between bytes (``read_timeout``); expiry raises ``ProviderUnavailable``;
- the response is capped (``max_response_bytes``): a larger one raises
  ``MalformedResponse`` instead of filling memory;
- closing the event iterator (``aclose``, cancellation) closes the HTTP response at once
  under a shielded scope, so no connection is left half-read;
- HTTP errors become the kernel's ``ProviderError`` classes (see ``error_for``), with
  ``Retry-After`` and rate-limit reset headers turned into ``retry_after`` seconds;
- every message that reaches an exception passes through ``scrub``: configured secrets
  and key-shaped strings are cut out, so an API key never lands in an error or a log;
- during a model call, the headers ``before_provider_request`` hooks add (W3C trace
  context) are sent along.

The provider plugins of this repository (``openai``, ``anthropic``) share it; a third
party may use it too.
"""

from __future__ import annotations

import email.utils
import json
import math
import os
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from .._outbound import request_headers
from .._secrets import mask_key_shapes, mask_values
from ..errors import (
    AuthenticationFailed,
    BadRequest,
    ContextTooLong,
    MalformedResponse,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from ._sse import ServerSentEvent, SSEDecoder

if TYPE_CHECKING:
    import httpx

# httpx and trio are imported where a request is made, not here: provider plugins import
# this module for their options' validators, and every command imports every installed
# plugin to list what it registers.

__all__ = [
    "ErrorDetail",
    "api_key_from_env",
    "http_url",
    "namespace_name",
    "positive",
    "SSETransport",
    "error_for",
    "parse_error_body",
    "retry_after_from",
    "scrub",
]

ERROR_BODY_LIMIT = 64 * 1024
MESSAGE_LIMIT = 500
_CONTEXT_CODES = {"context_length_exceeded", "context_window_exceeded", "string_above_max_length"}
_CONTEXT_TEXT = re.compile(
    r"context[ _]length|context window|maximum context|prompt is too long|too many tokens"
    r"|input tokens exceed|reduce the length of the messages|exceeds the model's maximum",
    re.IGNORECASE,
)
_RATE_TYPES = {
    "rate_limit_error",
    "rate_limit_exceeded",
    "tokens",
    "requests",
    "insufficient_quota",
}
_AUTH_TYPES = {"authentication_error", "permission_error", "invalid_api_key", "unauthorized"}
_REQUEST_TYPES = {
    "invalid_request_error",
    "not_found_error",
    "request_too_large",
    "invalid_request",
}
_SERVER_TYPES = {
    "overloaded_error",
    "api_error",
    "server_error",
    "timeout_error",
    "service_unavailable",
}
_HINT = re.compile(r"try again in (\d+(?:\.\d+)?)\s*(ms|s)\b", re.IGNORECASE)
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|h|m|s)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the given secrets and without key-shaped strings, cut to a sane length."""
    text = mask_values(text, secrets)
    cut = len(text) > MESSAGE_LIMIT
    # Past the limit plus a margin nothing is shown; a key shape straddling the limit
    # still lies whole inside the margin and is masked before the final cut.
    text = mask_key_shapes(text[: MESSAGE_LIMIT + 200])
    if cut or len(text) > MESSAGE_LIMIT:
        text = text[: MESSAGE_LIMIT - 3] + "..."
    return text


def http_url(_instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    """attrs validator: an ``http://`` or ``https://`` URL."""
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{attribute.name} must start with http:// or https://, got {value!r}")


def namespace_name(_instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    """attrs validator: a provider namespace (non-empty, no ``/``)."""
    if not value or "/" in value or value != value.strip():
        raise ValueError(f"{attribute.name} must be a non-empty name without '/', got {value!r}")


def positive(_instance: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    """attrs validator: ``None`` or a positive, finite number (``nan`` and ``inf`` are no
    timeout or limit)."""
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a positive number, got {value!r}")


def api_key_from_env(
    api_key: str | None,
    api_key_env: str | None,
    *,
    base_url: str,
    default_base_url: str,
    default_env: str,
) -> str | None:
    """The key to use: ``api_key``; else the variable ``api_key_env`` names; else
    ``default_env``, but only for the provider's own ``default_base_url`` (an official
    key is never sent to another server by accident)."""
    if api_key:
        return api_key
    name = api_key_env
    if name is None and base_url.rstrip("/") == default_base_url.rstrip("/"):
        name = default_env
    return os.environ.get(name) or None if name else None


@attrs.frozen
class ErrorDetail:
    """What an API said about an error: its message and, when given, type and code."""

    message: str
    type: str | None = None
    code: str | None = None
    status: int | None = None
    """A status code carried inside the error object (some servers send one in-stream)."""


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def detail_from_object(obj: Any) -> ErrorDetail:
    """Read an error object in the shapes APIs use: ``{"error": {...}}``, ``{"error": "..."}``,
    ``{"type": "error", "error": {...}}``, ``{"message": ...}``, ``{"detail": ...}``."""
    if isinstance(obj, Mapping) and "error" in obj:
        inner = obj["error"]
        if isinstance(inner, Mapping):
            obj = inner
        elif isinstance(inner, str):
            return ErrorDetail(inner)
    if not isinstance(obj, Mapping):
        return ErrorDetail(json.dumps(obj, default=str)[:MESSAGE_LIMIT])
    message = _text(obj.get("message")) or _text(obj.get("detail"))
    if message is None and obj.get("detail") is not None:
        message = json.dumps(obj["detail"], default=str)
    status = obj.get("status_code", obj.get("status"))
    code = obj.get("code")
    return ErrorDetail(
        message or "no details given",
        _text(obj.get("type")),
        str(code) if isinstance(code, str | int) and not isinstance(code, bool) else None,
        status if isinstance(status, int) and not isinstance(status, bool) else None,
    )


def parse_error_body(raw: bytes, content_type: str = "") -> ErrorDetail:
    """The ``ErrorDetail`` of an HTTP error body (JSON in any common shape, or text)."""
    try:
        return detail_from_object(json.loads(raw))
    except ValueError:
        pass
    if "html" in content_type.lower() or raw.lstrip()[:1] == b"<":
        return ErrorDetail("the server answered with an HTML page")
    text = " ".join(raw.decode("utf-8", errors="replace").split())
    return ErrorDetail(text or "no details given")


def _go_duration(value: str) -> float | None:
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _GO_DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _GO_UNITS[u] for n, u in parts)


def _timestamp(value: str, now: float) -> float | None:
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now)


def retry_after_from(
    headers: Mapping[str, str], message: str = "", *, now: float | None = None
) -> float | None:
    """Seconds to wait, from the headers of a refused request (and the message as a last hint).

    Reads ``retry-after-ms``, ``retry-after`` (seconds or an HTTP date), then the
    rate-limit reset headers (OpenAI's ``x-ratelimit-reset-*`` durations such as
    ``"6m0s"``, Anthropic's ``anthropic-ratelimit-*-reset`` timestamps), preferring the
    limits reported exhausted; finally a "try again in 6ms" hint in the message.
    """
    now = time.time() if now is None else now
    lower = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lower:
        try:
            return max(0.0, float(lower["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    if "retry-after" in lower:
        raw = lower["retry-after"].strip()
        try:
            return max(0.0, float(raw))
        except ValueError:
            try:
                return max(0.0, email.utils.parsedate_to_datetime(raw).timestamp() - now)
            except (TypeError, ValueError, IndexError):
                pass
    exhausted: list[float] = []
    others: list[float] = []
    for name, value in lower.items():
        if name.startswith("x-ratelimit-reset-"):
            kind, seconds = name.removeprefix("x-ratelimit-reset-"), _go_duration(value)
            remaining = lower.get(f"x-ratelimit-remaining-{kind}")
        elif name.startswith("anthropic-ratelimit-") and name.endswith("-reset"):
            kind = name.removeprefix("anthropic-ratelimit-").removesuffix("-reset")
            seconds = _timestamp(value, now)
            remaining = lower.get(f"anthropic-ratelimit-{kind}-remaining")
        else:
            continue
        if seconds is not None:
            (exhausted if remaining is not None and remaining.strip() == "0" else others).append(
                seconds
            )
    if exhausted or others:
        return max(exhausted or others)
    hint = _HINT.search(message)
    if hint:
        return float(hint.group(1)) / (1000 if hint.group(2).lower() == "ms" else 1)
    return None


def error_for(
    provider: str,
    detail: ErrorDetail,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
) -> ProviderError:
    """The ``ProviderError`` for an API error (an HTTP status, or an error event in a stream).

    400/404/413/422 and other client errors: ``BadRequest`` (``ContextTooLong`` when the
    API says the context is too long); 401/403: ``AuthenticationFailed``; 429:
    ``RateLimited``; 408/409/5xx/529: ``ProviderUnavailable``. An error inside a stream
    is classified by its status field, else by its type or code; an unknown one counts
    as the server's failure (``ProviderUnavailable``).
    """
    http = status is not None and status >= 300
    effective = status if http else detail.status
    kinds = {k for k in (detail.type, detail.code) if k}
    message = scrub(detail.message, secrets)
    where = f"HTTP {status}" if http else "error event in the stream"
    label = ", ".join(k for k in (detail.type, detail.code) if k)
    text = f"{provider}: {message} ({where}{': ' + scrub(label, secrets) if label else ''})"
    retry_after = retry_after_from(headers or {}, detail.message)

    error: ProviderError
    if kinds & _CONTEXT_CODES or (
        (effective in (400, 413, 422) or kinds & _REQUEST_TYPES)
        and _CONTEXT_TEXT.search(detail.message)
    ):
        error = ContextTooLong(text, status_code=effective)
    elif effective == 429 or (effective is None and kinds & _RATE_TYPES):
        error = RateLimited(text, retry_after=retry_after, status_code=effective)
    elif effective in (401, 403) or (effective is None and kinds & _AUTH_TYPES):
        error = AuthenticationFailed(text, status_code=effective)
    elif effective in (408, 409) or (effective is not None and effective >= 500):
        error = ProviderUnavailable(text, status_code=effective)
    elif effective is not None and 300 <= effective < 500:
        # Client errors, and redirects (a base_url that points at the wrong place).
        error = BadRequest(text, status_code=effective)
    elif kinds & _REQUEST_TYPES:
        error = BadRequest(text, status_code=effective)
    else:
        error = ProviderUnavailable(text, status_code=effective)
    if isinstance(error, ProviderUnavailable) and retry_after is not None:
        error.retry_after = retry_after  # a 503/529 that said when to come back
    return error


class SSETransport:
    """A pooled HTTP client that posts JSON and streams server-sent events back.

    ``provider`` names the provider in error messages; ``secrets`` are scrubbed from
    them. Timeouts are seconds (``None``: no limit). Requests go through a
    ``ConnectionPool``: keep-alive connections, at most ``max_connections`` requests in
    flight, the rest waiting their turn (the wait counts against ``timeout``).
    ``transport`` replaces that pool: pass ``httpx.MockTransport(handler)`` to serve
    requests from a function in tests (``max_connections`` then has no effect). Call
    ``aclose`` once at the end.
    """

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        headers: Mapping[str, str],
        timeout: float | None,
        connect_timeout: float | None,
        read_timeout: float | None,
        max_response_bytes: int,
        max_connections: int,
        secrets: Iterable[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.provider = provider
        self.timeout = timeout
        self.read_timeout = read_timeout
        self.max_response_bytes = max_response_bytes
        self.secrets = tuple(s for s in secrets if s)
        import httpx

        from ._pool import ConnectionPool  # httpx, httpcore, trio: when a provider is built

        self.client = httpx.AsyncClient(
            base_url=base_url,
            headers=dict(headers),
            # trio deadlines govern the call; httpx only bounds the connect phase.
            timeout=httpx.Timeout(None, connect=connect_timeout),
            follow_redirects=False,
            transport=transport or ConnectionPool(max_connections=max_connections),
        )

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self.client.aclose()

    def scrub(self, text: str) -> str:
        return scrub(text, self.secrets)

    def error(
        self,
        detail: ErrorDetail,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ProviderError:
        """``error_for`` with this transport's provider name and secrets."""
        return error_for(
            self.provider, detail, status=status, headers=headers, secrets=self.secrets
        )

    def malformed(self, what: str) -> MalformedResponse:
        return MalformedResponse(f"{self.provider}: {self.scrub(what)}")

    def _timed_out(self, phase: str, limit: float | None) -> ProviderUnavailable:
        after = f" after {limit:g} s" if limit is not None else ""
        return ProviderUnavailable(f"{self.provider}: the request timed out{after}, {phase}")

    def _unreachable(self, exc: httpx.HTTPError, phase: str) -> ProviderError:
        import httpx

        if isinstance(exc, httpx.TimeoutException):
            return self._timed_out(f"{phase} (connect_timeout)", None)
        if isinstance(exc, httpx.DecodingError):
            return self.malformed(f"the response could not be decoded ({type(exc).__name__})")
        return ProviderUnavailable(
            f"{self.provider}: connection failed {phase} ({type(exc).__name__})"
        )

    async def events(
        self, path: str, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> AsyncGenerator[ServerSentEvent, None]:
        """POST ``body`` to ``path`` and yield the response's server-sent events.

        Raises ``ProviderError`` subclasses for HTTP errors, timeouts, broken
        connections and oversized responses. The events end when the response does.
        """
        import httpx
        import trio

        deadline = trio.current_time() + self.timeout if self.timeout is not None else math.inf
        added = await request_headers(self.provider, "POST", str(self.client.base_url.join(path)))
        if added:  # what plugins add (traceparent); the provider's own headers win
            extra = {k: v for k, v in added.items() if k not in self.client.headers}
            headers = {**extra, **(headers or {})}
        request = self.client.build_request("POST", path, json=body, headers=headers)
        response: httpx.Response | None = None
        with trio.move_on_at(deadline):
            try:
                response = await self.client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise self._unreachable(exc, "before the response arrived") from exc
        if response is None:
            raise self._timed_out("before the response arrived", self.timeout)
        chunks = response.aiter_bytes()
        ended = False
        try:
            if response.status_code >= 300:
                raw, ended = await self._read_rest(chunks, deadline, ERROR_BODY_LIMIT)
                raise self.error(
                    parse_error_body(raw, response.headers.get("content-type", "")),
                    status=response.status_code,
                    headers=response.headers,
                )
            if "json" in response.headers.get("content-type", "").lower():
                raw, ended = await self._read_rest(chunks, deadline, ERROR_BODY_LIMIT)
                try:
                    obj = json.loads(raw)
                except ValueError:
                    obj = None
                if isinstance(obj, Mapping) and "error" in obj:
                    raise self.error(detail_from_object(obj))
                raise self.malformed("the server answered with JSON instead of an event stream")
            decoder = SSEDecoder()
            received = 0
            while True:
                chunk = await self._next(chunks, deadline)
                if chunk is None:
                    ended = True
                    break
                received += len(chunk)
                if received > self.max_response_bytes:
                    raise self.malformed(
                        f"the response exceeded max_response_bytes ({self.max_response_bytes} bytes)"
                    )
                for event in decoder.feed(chunk):
                    yield event
            for event in decoder.close():
                yield event
        finally:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + 5):
                await response.aclose()  # the connection is closed unless the body was read whole
                if not ended:
                    await _unwind(chunks)

    async def _next(self, chunks: AsyncIterator[bytes], deadline: float) -> bytes | None:
        """The next piece of the body (``None`` at its end), within the deadlines."""
        import httpx
        import trio

        limit = deadline
        if self.read_timeout is not None:
            limit = min(deadline, trio.current_time() + self.read_timeout)
        with trio.move_on_at(limit):
            try:
                return await chunks.__anext__()
            except StopAsyncIteration:
                return None
            except httpx.HTTPError as exc:
                raise self._unreachable(exc, "while streaming the response") from exc
        if limit < deadline:
            raise ProviderUnavailable(
                f"{self.provider}: no data arrived for {self.read_timeout:g} s while streaming (read_timeout)"
            )
        raise self._timed_out("while streaming the response", self.timeout)

    async def _read_rest(
        self, chunks: AsyncIterator[bytes], deadline: float, limit: int
    ) -> tuple[bytes, bool]:
        """Up to ``limit`` bytes of the rest of the body, and whether the body ended."""
        parts: list[bytes] = []
        size = 0
        while size < limit:
            chunk = await self._next(chunks, deadline)
            if chunk is None:
                return b"".join(parts), True
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts)[:limit], False


async def _unwind(chunks: AsyncIterator[bytes]) -> None:
    """Let httpx's chain of body generators end, after the response was closed.

    httpx reads a body through nested async generators; closing only the outermost
    leaves the inner ones suspended until garbage collection, where trio warns about
    each. Once the connection is closed, the next read fails inside the innermost
    one, and the failure unwinds (and ends) them all.
    """
    try:
        for _ in range(1024):  # buffered data may come first; then the read fails
            await chunks.__anext__()
    except StopAsyncIteration:
        return
    except Exception:
        return  # the read on the closed connection failed, as intended
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
