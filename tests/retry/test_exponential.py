"""The ``exponential`` retry policy: backoff, jitter, Retry-After, budget, and its place
as the store's default policy."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from harness_kernel import PluginRegistry, create_session_store, define_agent, hookimpl
from harness_kernel.errors import (
    AuthenticationFailed,
    BadRequest,
    ConfigError,
    ContextTooLong,
    MalformedResponse,
    ProviderUnavailable,
    RateLimited,
)
from harness_kernel.testing import Reply, ScriptedProvider
from harness_kernel_retry import ExponentialOptions, ExponentialRetry

DOWN = ProviderUnavailable("down")


def policy(r: float = 0.999999, **options: Any) -> ExponentialRetry:
    return ExponentialRetry(ExponentialOptions(**options), random=lambda: r)


def test_delays_double_from_the_base_up_to_max_delay() -> None:
    """Ceilings are base * 2**(n-1), capped at max_delay; full jitter scales them by random()."""
    top = policy(attempts=10, base_delay=1.0, max_delay=5.0, budget=None)
    assert [round(top.next_delay(DOWN, n) or 0, 3) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    half = policy(0.5, attempts=10, base_delay=1.0, max_delay=5.0, budget=None)
    assert [half.next_delay(DOWN, n) for n in range(1, 5)] == [0.5, 1.0, 2.0, 2.5]
    assert policy(0.0, attempts=3).next_delay(DOWN, 1) == 0.0


def test_attempts_count_every_call_including_the_first() -> None:
    """attempts=3: retries after failures 1 and 2, gives up after the third; 1 disables."""
    three = policy(attempts=3)
    assert three.next_delay(DOWN, 1) is not None
    assert three.next_delay(DOWN, 2) is not None
    assert three.next_delay(DOWN, 3) is None
    assert policy(attempts=1).next_delay(DOWN, 1) is None


@pytest.mark.parametrize(
    "error",
    [BadRequest("no"), ContextTooLong("long"), AuthenticationFailed("key"), MalformedResponse("junk"), ValueError("bug")],
)
def test_errors_that_a_retry_cannot_fix_are_not_retried(error: BaseException) -> None:
    """Only errors marked retryable are retried."""
    assert policy().next_delay(error, 1) is None


def test_retry_after_is_honoured_and_capped() -> None:
    """The wait is never shorter than Retry-After, and Retry-After is capped by max_delay."""
    assert policy(0.1, max_delay=30.0).next_delay(RateLimited("slow", retry_after=7.0), 1) == 7.0
    assert policy(0.1, max_delay=30.0, budget=None).next_delay(RateLimited("slow", retry_after=120.0), 1) == 30.0
    outage = ProviderUnavailable("down")
    outage.retry_after = 4.0  # type: ignore[attr-defined]
    assert policy(0.0).next_delay(outage, 1) == 4.0
    assert policy(0.5, base_delay=1.0).next_delay(RateLimited("slow", retry_after=None), 1) == 0.5


def test_the_budget_bounds_the_waiting_of_one_call() -> None:
    """Waits add up to at most ``budget``; the last is shortened to fit; a Retry-After
    that does not fit ends the retries; attempt 1 starts a new call's tally."""
    tight = policy(attempts=10, base_delay=4.0, max_delay=100.0, budget=10.0)
    assert [round(tight.next_delay(DOWN, n) or -1, 3) for n in range(1, 4)] == [4.0, 6.0, -1]
    assert round(tight.next_delay(DOWN, 1) or 0, 3) == 4.0  # a new call
    assert tight.next_delay(RateLimited("slow", retry_after=8.0), 2) is None


async def test_the_budget_is_kept_per_task() -> None:
    """Two runs retrying at once (two trio tasks) each get their own budget."""
    shared = policy(attempts=10, base_delay=4.0, max_delay=100.0, budget=10.0)
    seen: dict[str, list[float | None]] = {"a": [], "b": []}

    async def call(name: str) -> None:
        for attempt in (1, 2, 3):
            seen[name].append(shared.next_delay(DOWN, attempt))
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, "a")
        nursery.start_soon(call, "b")
    for delays in seen.values():
        assert [round(d, 3) if d is not None else None for d in delays] == [4.0, 6.0, None]


@settings(max_examples=200, deadline=None)
@given(
    r=st.floats(min_value=0, max_value=1, exclude_max=True),
    attempts=st.integers(1, 8),
    base=st.floats(0, 10),
    max_delay=st.floats(0, 60),
    budget=st.one_of(st.none(), st.floats(0, 100)),
    hints=st.lists(st.one_of(st.none(), st.floats(0, 200)), min_size=8, max_size=8),
)
def test_delays_stay_within_their_bounds(
    r: float, attempts: int, base: float, max_delay: float, budget: float | None, hints: list[float | None]
) -> None:
    """For any options and errors: each delay lies in [0, max_delay], at most attempts-1
    retries happen, and their sum never exceeds the budget."""
    retry = policy(r, attempts=attempts, base_delay=base, max_delay=max_delay, budget=budget)
    total, retries = 0.0, 0
    for attempt, hint in enumerate(hints, start=1):
        delay = retry.next_delay(RateLimited("slow", retry_after=hint), attempt)
        if delay is None:
            break
        assert 0.0 <= delay <= max_delay
        total += delay
        retries += 1
    assert retries <= attempts - 1
    if budget is not None:
        assert total <= budget + 1e-9


def test_the_base_delay_has_one_spelling_in_seconds() -> None:
    """``base_delay`` (seconds, default 0.5, as the docs say) is the only spelling of the
    base delay: ``backoff_ms`` is refused with its path and the ``base_delay`` to give."""
    registry = PluginRegistry()
    assert registry.build("retry_policy", "exponential", {}).options.base_delay == 0.5
    built = registry.build("retry_policy", "exponential", {"attempts": 3, "base_delay": 0.25})
    assert built.options.base_delay == 0.25
    with pytest.raises(ConfigError, match=r"error_policy\.retry\.model\b.*backoff_ms.*did you mean base_delay = 0\.5\?"):
        registry.build("retry_policy", "exponential", {"backoff_ms": 500}, path="error_policy.retry.model")
    with pytest.raises(ConfigError, match=r"error_policy\.retry\.model\.attempts: expected int"):
        registry.build("retry_policy", "exponential", {"attempts": "3"}, path="error_policy.retry.model")


def test_it_is_the_default_retry_policy_once_installed() -> None:
    """Installed plugins come before the kernel's builtin ``none``."""
    registry = PluginRegistry()
    first = registry.first("retry_policy")
    assert first is not None
    assert (first.name, first.distribution) == ("exponential", "harness-kernel-retry")


def _flaky(failures: list[BaseException]) -> ScriptedProvider:
    async def answer(request: Any) -> Reply:
        if failures:
            raise failures.pop(0)
        return Reply(text="answered")

    return ScriptedProvider({"flaky": answer})


async def test_a_store_retries_with_it_by_default(autojump_clock: trio.testing.MockClock) -> None:
    """A store with no retry settings and one with the documented settings both retry a
    flaky model until it answers, waiting what the rate limit asked (mock time)."""
    agent = define_agent(name="retrying")
    for error_policy in (None, {"retry": {"model": {"attempts": 3, "base_delay": 0.5}}}):
        provider = _flaky([RateLimited("slow", retry_after=2.0), ProviderUnavailable("down")])
        async with create_session_store(
            agent=agent, providers=[provider], default_model="scripted/flaky", error_policy=error_policy,
        ) as store:
            start = trio.current_time()
            result = await store.send("s1", "hi")
            assert (result.status, result.text) == ("completed", "answered")
            assert trio.current_time() - start >= 2.0


async def test_an_injected_random_source_makes_store_delays_exact(autojump_clock: trio.testing.MockClock) -> None:
    """Registered under another name with a fixed random source, the policy's delays are
    exact: 0.5 then 1.0 seconds before the answer."""

    class Seeded:
        @hookimpl
        def harness_kernel_retry_policies(self, register: Any) -> None:
            register("seeded", lambda options: ExponentialRetry(options, random=lambda: 0.5), options=ExponentialOptions)

    provider = _flaky([ProviderUnavailable("down"), ProviderUnavailable("down")])
    async with create_session_store(
        agent=define_agent(name="seeded"), providers=[provider], default_model="scripted/flaky", plugins=[Seeded()],
        error_policy={"retry": {"policy": "seeded", "model": {"attempts": 3, "base_delay": 1.0}}},
    ) as store:
        start = trio.current_time()
        result = await store.send("s1", "hi")
    assert result.status == "completed"
    assert trio.current_time() - start == pytest.approx(1.5)


async def test_a_store_gives_up_after_the_attempts(autojump_clock: trio.testing.MockClock) -> None:
    """attempts=2: the second failure ends the run with the provider's error."""
    provider = _flaky([ProviderUnavailable("down") for _ in range(3)])
    async with create_session_store(
        agent=define_agent(name="giving-up"), providers=[provider], default_model="scripted/flaky",
        error_policy={"retry": {"model": {"attempts": 2}}},
    ) as store:
        result = await store.send("s1", "hi")
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "provider.unavailable"
