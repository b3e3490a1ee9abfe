"""Error policy, the retry seam, and the logging pipeline with its redaction."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness_kernel import (
    Finish,
    MemoryLogSink,
    MemoryStorage,
    ModelProvider,
    ModelRequest,
    RetryPolicy,
    TextDelta,
    define_agent,
    hookimpl,
    tool,
)
from harness_kernel.errors import ProviderUnavailable, RateLimited

from .helpers import calls_then_answers, open_store


def boom(_request):
    raise ValueError("secret internals: dsn=postgres://u:pw@db")


async def test_internal_errors_are_sanitized_unless_the_policy_exposes_them() -> None:
    """Users see 'internal error' by default; the host may expose the message and stack,
    with the password of a URL in it masked all the same."""
    async with open_store({"main": boom}) as store:
        result = await store.send("s", "hi")
    assert (result.status, result.error.code, result.error.message, result.error.stack) == ("failed", "internal", "internal error", None)
    async with open_store({"main": boom}, error_policy={"expose_internal_errors": True, "include_stack": True}) as store:
        result = await store.send("s", "hi")
    assert result.error.message == "ValueError: secret internals: dsn=postgres://u:[redacted]@db"
    assert "Traceback" in result.error.stack
    assert "boom" in result.error.stack


async def test_error_policy_is_validated() -> None:
    """A typo in the error policy is a config error with its path."""
    from harness_kernel.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape("error_policy.context_failure: expected one of 'fail', 'skip_optional'")):
        async with open_store(error_policy={"context_failure": "ignore"}):
            pass


async def test_close_session_on_fatal_unloads_the_session() -> None:
    """After a failed run the session leaves the active set; get_or_create reloads it."""
    storage = MemoryStorage()
    async with open_store({"main": boom}, storage=storage, error_policy={"close_session_on_fatal": True}) as store:
        session = await store.create("s1")
        result = await session.send("hi")
        assert result.status == "failed"
        assert session.closed
        assert store.get("s1") is None
        fresh = await store.get_or_create("s1")
        assert fresh is not session
        assert [r.status for r in await fresh.runs()] == ["failed"]
        assert (await fresh.send("again", model="scripted/echo")).status == "completed"


class Flaky(ModelProvider):
    """Fails ``failures`` times, optionally after streaming some text, then answers."""

    name = "flaky"

    def __init__(self, failures: int, error: Exception, visible_before_failing: bool = False) -> None:
        self.failures = failures
        self.error = error
        self.visible = visible_before_failing
        self.calls = 0

    async def stream(self, request: ModelRequest) -> AsyncIterator[Any]:
        self.calls += 1
        if self.calls <= self.failures:
            if self.visible:
                yield TextDelta("half")
            raise self.error
        yield TextDelta("fine")
        yield Finish("stop")


@attrs.define
class FixedOptions:
    delay: float = 1.0
    attempts: int = 3


class FixedRetry(RetryPolicy):
    def __init__(self, options: FixedOptions) -> None:
        self.options = options

    def next_delay(self, error: BaseException, attempt: int) -> float | None:
        if attempt >= self.options.attempts or not getattr(error, "retryable", False):
            return None
        return getattr(error, "retry_after", None) or self.options.delay


class RetryPlugin:
    @hookimpl
    def harness_kernel_retry_policies(self, register) -> None:
        register("fixed", FixedRetry, options=FixedOptions)


async def test_retries_follow_the_policy_and_honour_retry_after(autojump_clock: trio.testing.MockClock) -> None:
    """A 429 with retry_after is retried after exactly that delay (mock clock)."""
    provider = Flaky(1, RateLimited("slow down", retry_after=7.5))
    agent = define_agent(name="a")
    from harness_kernel import create_session_store

    async with create_session_store(
        agent=agent, providers=[provider], default_model="flaky/m", plugins=[RetryPlugin()],
        autoload_plugins=False, error_policy={"retry": {"model": {"delay": 2.0}}},
    ) as store:
        start = trio.current_time()
        result = await store.send("s", "hi")
        waited = trio.current_time() - start
    assert (result.status, result.text, provider.calls) == ("completed", "fine", 2)
    assert waited == pytest.approx(7.5)


async def test_retries_stop_after_the_configured_attempts(autojump_clock: trio.testing.MockClock) -> None:
    """Unavailable three times with three attempts: the run fails with a sanitized error."""
    from harness_kernel import create_session_store

    provider = Flaky(10, ProviderUnavailable("upstream 503"))
    async with create_session_store(
        agent=define_agent(name="a"), providers=[provider], default_model="flaky/m", plugins=[RetryPlugin()],
        autoload_plugins=False, error_policy={"retry": {"policy": "fixed", "model": {"attempts": 3}}},
    ) as store:
        result = await store.send("s", "hi")
    assert (result.status, result.error.code, result.error.retryable, provider.calls) == ("failed", "provider.unavailable", True, 3)


async def test_no_retry_after_output_reached_the_user() -> None:
    """Once text from an attempt was streamed, a failure is not retried; the partial text is kept."""
    from harness_kernel import create_session_store

    provider = Flaky(1, ProviderUnavailable("reset mid-stream"), visible_before_failing=True)
    async with create_session_store(
        agent=define_agent(name="a"), providers=[provider], default_model="flaky/m", plugins=[RetryPlugin()],
        autoload_plugins=False,
    ) as store:
        session = await store.create("s")
        result = await session.send("hi")
        history = [(m.role, m.text) for m in await session.history()]
    assert (result.status, provider.calls) == ("failed", 1)
    assert history == [("user", "hi"), ("assistant", "half")]


async def test_a_sinks_own_level_is_enough_to_receive_records() -> None:
    """With only per-sink levels set, each sink gets exactly its level and above."""
    debug_sink, error_sink = MemoryLogSink(level="debug"), MemoryLogSink(level="error")
    async with open_store({"main": boom}, logging={"sinks": [debug_sink, error_sink]}) as store:
        await store.send("s", "hi")
    assert {r["level"] for r in debug_sink.records} >= {"debug", "info", "error"}
    assert {r["level"] for r in error_sink.records} == {"error"}
    assert [r["event"] for r in error_sink.records] == ["run_failed"]
    named = MemoryLogSink()
    async with open_store(logging={"level": "warning", "sinks": [{"plugin": "memory", "level": "info"}]}) as store:
        await store.send("s", "hi")
        [sink] = store.log_sinks
    assert any(r["event"] == "store_opened" for r in sink.records)
    assert named.records == []


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [str(k), *_strings(v)]]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return [str(value)]


@attrs.define
class LeakyOptions:
    api_key: str = attrs.field(metadata={"secret": True})


class LeakyProvider(ModelProvider):
    """A careless provider that puts its key in its error messages."""

    name = "leaky"

    def __init__(self, options: LeakyOptions) -> None:
        self.key = options.api_key

    async def stream(self, request: ModelRequest) -> AsyncIterator[Any]:
        if request.messages:
            raise ProviderUnavailable(f"upstream refused key {self.key}")
        yield Finish("stop")


class LeakyPlugin:
    @hookimpl
    def harness_kernel_providers(self, register) -> None:
        register("leaky", LeakyProvider, options=LeakyOptions)


secrets_strategy = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=24).map(lambda s: f"sk-{s}")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(api_key=secrets_strategy, argument=secrets_strategy)
def test_secrets_never_reach_any_sink(api_key: str, argument: str) -> None:
    """A provider's secret option and a tool's argument value appear in no sink record
    nor in a run's error, even when the provider and the tool put them in messages."""

    @tool
    def vault(password: str) -> str:
        raise RuntimeError(f"cannot open vault with {password}")

    sink = MemoryLogSink(level="debug")

    async def scenario() -> None:
        from harness_kernel import create_session_store
        from harness_kernel.testing import ScriptedProvider

        agent = define_agent(name="vaulted", tools=[vault])
        async with create_session_store(
            agent=agent, autoload_plugins=False, plugins=[LeakyPlugin()], logging={"sinks": [sink]},
            providers=[ScriptedProvider({"main": calls_then_answers("vault", {"password": argument})}),
                       {"plugin": "leaky", "options": {"api_key": api_key}}],
            default_model="scripted/main",
        ) as store:
            await store.send("s1", "open it")
            await store.send("s2", "again", model="scripted/main")
            session = await store.get_or_create("s2")
            leaked = await session.send("and via leaky", model="leaky/x")
            # The provider put its key in the message; the kernel masks it for users too.
            assert leaked.error.message == "upstream refused key [redacted]"
            await store.send("s3", "x", model="scripted/echo")

    trio.run(scenario)
    assert sink.records, "the scenario logged nothing"
    for text in _strings(sink.records):
        assert api_key not in text
        assert argument not in text


def test_redaction_masks_sensitive_keys_anywhere() -> None:
    """Keys such as authorization or password are masked however deep they sit."""
    from harness_kernel._logging import Redactor

    redact = Redactor(values=["topsecretvalue"])
    out = redact(None, "info", {"event": "x", "headers": {"Authorization": "Bearer abc"}, "nested": [{"password": "p"}],
                                "note": "has topsecretvalue inside", "api_key": "k"})
    assert out == {"event": "x", "headers": {"Authorization": "[redacted]"}, "nested": [{"password": "[redacted]"}],
                   "note": "has [redacted] inside", "api_key": "[redacted]"}




async def test_session_log_records_carry_the_session_id_and_labels() -> None:
    """Operators can filter logs by tenant: every run record names the session and labels."""
    sink = MemoryLogSink(level="debug")
    async with open_store({"main": calls_then_answers()}, logging={"sinks": [sink]}) as store:
        await store.send("s1", "hi", tenant_id="acme", principal="ann")
    tool_records = [r for r in sink.records if r["event"] in ("tool_started", "tool_finished", "run_step")]
    assert tool_records
    for record in tool_records:
        assert record["session_id"] == "s1"
        assert record["labels"] == {"tenant_id": "acme", "principal": "ann"}
