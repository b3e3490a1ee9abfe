"""The shared HTTP transport: error bodies, status mapping, Retry-After, scrubbing, deadlines."""

from __future__ import annotations

import email.utils

import pytest
import trio
import trio.testing

from harness_kernel.errors import (
    AuthenticationFailed,
    BadRequest,
    ContextTooLong,
    MalformedResponse,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from harness_kernel.http import (
    ErrorDetail,
    error_for,
    parse_error_body,
    retry_after_from,
    scrub,
    secret_header_values,
)
from harness_kernel_openai import OpenAIProvider
from tests.providers_common.events import collect, request
from tests.providers_common.loopback import LoopbackServer
from tests.providers_common.scripted import Broken, Raw, Reply, ScriptedAPI, Status

NOW = 1_750_000_000.0


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, BadRequest), (404, BadRequest), (413, BadRequest), (422, BadRequest), (301, BadRequest),
        (401, AuthenticationFailed), (403, AuthenticationFailed),
        (429, RateLimited),
        (408, ProviderUnavailable), (409, ProviderUnavailable), (500, ProviderUnavailable),
        (502, ProviderUnavailable), (503, ProviderUnavailable), (529, ProviderUnavailable),
    ],
)
def test_http_statuses_map_to_the_documented_errors(status: int, expected: type[ProviderError]) -> None:
    """Each status of the mapping table gives its error class, carrying status and message."""
    error = error_for("openai", ErrorDetail("it went wrong", "some_type"), status=status)
    assert type(error) is expected
    assert error.status_code == status
    assert str(error) == f"openai: it went wrong (HTTP {status}: some_type)"


@pytest.mark.parametrize(
    "detail",
    [
        ErrorDetail("Input tokens exceed the configured limit", "invalid_request_error", "context_length_exceeded"),
        ErrorDetail("prompt is too long: 205429 tokens > 200000 maximum", "invalid_request_error"),
        ErrorDetail("This model's maximum context length is 8192 tokens.", None),
    ],
)
def test_context_window_errors_are_context_too_long(detail: ErrorDetail) -> None:
    """By code or by the APIs' wording, an over-long prompt is ContextTooLong (a BadRequest)."""
    assert isinstance(error_for("p", detail, status=400), ContextTooLong)


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        (ErrorDetail("Overloaded", "overloaded_error"), ProviderUnavailable),
        (ErrorDetail("oops", "server_error"), ProviderUnavailable),
        (ErrorDetail("slow down", "rate_limit_error"), RateLimited),
        (ErrorDetail("bad key", "authentication_error"), AuthenticationFailed),
        (ErrorDetail("bad tool call", "invalid_request_error", "tool_use_failed", status=400), BadRequest),
        (ErrorDetail("weird", None), ProviderUnavailable),
    ],
)
def test_errors_inside_a_stream_map_by_their_status_field_or_type(detail: ErrorDetail, expected: type[ProviderError]) -> None:
    """An error event (HTTP 200) is classified by its own status_code, else its type;
    an unknown one is the server's failure."""
    error = error_for("p", detail)
    assert type(error) is expected
    assert "error event in the stream" in str(error)


def test_error_bodies_are_read_in_every_common_shape() -> None:
    """OpenAI, Anthropic, plain-string, FastAPI-style, HTML and text bodies all yield a message."""
    assert parse_error_body(b'{"error": {"message": "m", "type": "t", "code": "c"}}') == ErrorDetail("m", "t", "c")
    assert parse_error_body(b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}') == (
        ErrorDetail("Overloaded", "overloaded_error")
    )
    assert parse_error_body(b'{"error": "model \'x\' not found"}') == ErrorDetail("model 'x' not found")
    assert parse_error_body(b'{"detail": [{"loc": ["body"], "msg": "field required"}]}').message.startswith('[{"loc"')
    assert parse_error_body(b"<html><body>502 Bad Gateway</body></html>", "text/html").message == (
        "the server answered with an HTML page"
    )
    assert parse_error_body(b"upstream   connect error\n").message == "upstream connect error"
    assert parse_error_body(b"").message == "no details given"


def test_retry_after_reads_seconds_milliseconds_and_http_dates() -> None:
    """Retry-After as seconds or an HTTP date, and retry-after-ms, give seconds to wait."""
    assert retry_after_from({"Retry-After": "7"}, now=NOW) == 7.0
    assert retry_after_from({"retry-after-ms": "250", "retry-after": "9"}, now=NOW) == 0.25
    date = email.utils.formatdate(NOW + 30, usegmt=True)
    assert retry_after_from({"retry-after": date}, now=NOW) == pytest.approx(30.0)
    assert retry_after_from({"retry-after": email.utils.formatdate(NOW - 30, usegmt=True)}, now=NOW) == 0.0
    assert retry_after_from({"retry-after": "soon"}, now=NOW) is None


def test_retry_after_falls_back_to_rate_limit_reset_headers() -> None:
    """Without Retry-After: OpenAI reset durations and Anthropic reset timestamps, the
    exhausted limit first; then a 'try again in' hint in the message."""
    headers = {
        "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m30s",
        "x-ratelimit-remaining-tokens": "5000", "x-ratelimit-reset-tokens": "6m0s",
    }
    assert retry_after_from(headers, now=NOW) == 90.0
    assert retry_after_from({"x-ratelimit-reset-requests": "120ms", "x-ratelimit-reset-tokens": "2s"}, now=NOW) == 2.0
    anthropic = {
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2025-06-15T15:07:00Z",  # NOW is 15:06:40 UTC
    }
    assert retry_after_from(anthropic, now=NOW) == pytest.approx(20.0)
    assert retry_after_from({}, "Please try again in 6ms. Thanks", now=NOW) == pytest.approx(0.006)
    assert retry_after_from({}, "Please try again in 1.5s.", now=NOW) == pytest.approx(1.5)
    assert retry_after_from({}, "no hint", now=NOW) is None


def test_a_rate_limit_error_carries_retry_after_and_an_outage_may_too() -> None:
    """429 → RateLimited.retry_after; a 503 with Retry-After exposes it to retry policies."""
    limited = error_for("p", ErrorDetail("slow"), status=429, headers={"retry-after": "3"})
    assert isinstance(limited, RateLimited)
    assert limited.retry_after == 3.0
    down = error_for("p", ErrorDetail("down"), status=503, headers={"retry-after": "4"})
    assert getattr(down, "retry_after", None) == 4.0


def test_scrub_removes_secrets_and_key_shaped_strings() -> None:
    """Configured secrets, sk-style keys and masked key fragments never survive; long
    messages are cut."""
    text = "key sk-proj-abcdefghijklmnop1234 or 4f9bb533****cc24 or my-secret-value here"
    cleaned = scrub(text, ["my-secret-value"])
    assert "abcdefghijklmnop" not in cleaned
    assert "4f9bb533" not in cleaned
    assert "my-secret-value" not in cleaned
    assert cleaned.count("[redacted]") == 3
    assert len(scrub("x" * 5000)) == 500


def test_credentials_in_extra_headers_count_as_secrets() -> None:
    """Header values named like credentials (and bearer tokens alone) are secrets."""
    values = secret_header_values({"api-key": "azure-key-1", "Authorization": "Bearer tok-123", "x-trace": "t"})
    assert values == ["azure-key-1", "Bearer tok-123", "tok-123"]


# -- the transport against a server --------------------------------------------------------


async def _fails(loopback: LoopbackServer, answer: object, **options: object) -> ProviderError:
    loopback.handler = ScriptedAPI("openai", [answer])  # type: ignore[list-item]
    provider = OpenAIProvider(base_url=f"{loopback.url}/v1", **options)  # type: ignore[arg-type]
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider, request("gpt-test"))
        return info.value
    finally:
        await provider.aclose()


async def test_a_json_answer_to_a_streaming_request_is_reported(loopback: LoopbackServer) -> None:
    """A 200 JSON body instead of an event stream: its error if it has one, else malformed."""
    error = await _fails(loopback, Status(200, {"error": {"message": "quota", "type": "insufficient_quota"}}, (("content-type", "application/json"),)))
    assert isinstance(error, RateLimited)
    error = await _fails(loopback, Status(200, {"id": "x", "choices": []}, (("content-type", "application/json"),)))
    assert isinstance(error, MalformedResponse)
    assert "instead of an event stream" in str(error)


async def test_a_refused_connection_is_provider_unavailable() -> None:
    """Nothing listens on the port: ProviderUnavailable, retryable, naming no internals."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()
    provider = OpenAIProvider(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-unused-0123456789abcd")
    try:
        with pytest.raises(ProviderUnavailable, match="connection failed before the response arrived"):
            await collect(provider, request("gpt-test"))
    finally:
        await provider.aclose()


async def test_read_timeout_limits_silence_between_bytes(
    loopback: LoopbackServer, autojump_clock: trio.testing.MockClock
) -> None:
    """With read_timeout=5 a stream that goes quiet fails after 5 s of silence (mock time),
    long before the overall timeout."""
    start = trio.current_time()
    error = await _fails(loopback, Broken(Reply("one two three"), "hang", texts=1), read_timeout=5.0, timeout=600.0)
    assert isinstance(error, ProviderUnavailable)
    assert "no data arrived for 5 s while streaming (read_timeout)" in str(error)
    assert 5.0 <= trio.current_time() - start < 6.0


async def test_an_overlong_error_body_is_cut_and_the_connection_released(loopback: LoopbackServer) -> None:
    """A huge error body is read only up to the error-body cap (the rest is not waited
    for: the connection is closed); the error still arrives, its message cut short."""
    body = b'{"error": {"message": "' + b"x" * 200_000 + b'"}}'
    error = await _fails(loopback, Raw(body, status=500, headers=(("content-type", "application/json"),), piece=8192))
    assert isinstance(error, ProviderUnavailable)
    assert len(str(error)) < 700
    with trio.fail_after(10):
        await loopback.connections[0].closed.wait()
