"""harness-kernel retry policy ``exponential``: exponential backoff with full jitter.

Installed, it becomes the store's default retry policy (the kernel's builtin ``none``
is registered ``trylast``). Configure it under ``error_policy.retry.model``::

    error_policy={"retry": {"model": {"attempts": 4, "base_delay": 0.5, "max_delay": 20}}}

The kernel asks the policy only while nothing from the failed attempt reached the user
(no text, no tool call); the policy decides the rest: only errors marked ``retryable``
(rate limits, unavailable servers, timeouts, dropped connections) are tried again, at
most ``attempts`` calls in all, waiting a random time in ``[0, min(max_delay,
base_delay * 2 ** (n - 1)))`` before the retry after failure ``n`` (full jitter), never
less than the ``Retry-After`` the API asked for (capped at ``max_delay``), and never
more than ``budget`` seconds of waiting in total for one model call.
"""

from __future__ import annotations

import math
import random
import weakref
from collections.abc import Callable
from typing import Any

import attrs

from harness_kernel import RetryPolicy, hookimpl
from harness_kernel.hookspecs import Register

__all__ = ["ExponentialOptions", "ExponentialRetry"]
__version__ = "0.1.0"

DEFAULT_BASE_DELAY = 0.5


def _at_least(bound: float) -> Callable[[Any, attrs.Attribute[Any], float | None], None]:
    def check(_instance: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
        if value is not None and not value >= bound:
            raise ValueError(f"{attribute.name} must be at least {bound:g}, got {value!r}")

    return check


def _refused_spelling(_instance: Any, _attribute: attrs.Attribute[Any], value: float | None) -> None:
    # One spelling of the base delay, in seconds like its siblings; the millisecond one
    # an older example used is refused with the value to give instead.
    if value is None:
        return
    hint = f"base_delay = {value / 1000:g}"
    raise ValueError(f"backoff_ms is not an option; did you mean {hint}? (base_delay is in seconds, like max_delay and budget)")


@attrs.frozen
class ExponentialOptions:
    """Options of the ``exponential`` retry policy."""

    attempts: int = attrs.field(default=3, validator=_at_least(1))
    """Model calls in all, the first included; ``1`` disables retries."""
    base_delay: float = attrs.field(default=DEFAULT_BASE_DELAY, validator=_at_least(0))
    """Seconds: the ceiling of the first wait, doubled for each further one."""
    max_delay: float = attrs.field(default=30.0, validator=_at_least(0))
    """Seconds: the longest single wait; also caps a ``Retry-After``."""
    budget: float | None = attrs.field(default=60.0, validator=_at_least(0))
    """Seconds of waiting allowed for one model call (unset: no limit)."""
    backoff_ms: float | None = attrs.field(default=None, validator=_refused_spelling, repr=False)
    """Refused, with the ``base_delay`` to give instead (``backoff_ms = 500`` is ``base_delay = 0.5``): one spelling, in seconds."""

class _Outside:
    """The caller key when ``next_delay`` is called outside trio (tests, scripts)."""


_OUTSIDE = _Outside()


class ExponentialRetry(RetryPolicy):
    """Exponential backoff with full jitter; see the module docstring for the rules.

    ``random`` returns a float in ``[0, 1)``; inject a fixed one to make delays exact.
    One instance serves a whole store: the waiting spent against ``budget`` is kept per
    model call, that is per trio task, restarting at ``attempt == 1``.
    """

    def __init__(self, options: ExponentialOptions | None = None, *, random: Callable[[], float] = random.random) -> None:
        self.options = options or ExponentialOptions()
        self._random = random
        self._spent: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"ExponentialRetry({self.options!r})"

    def next_delay(self, error: BaseException, attempt: int) -> float | None:
        options = self.options
        if not getattr(error, "retryable", False) or attempt >= options.attempts:
            return None
        ceiling = min(options.max_delay, options.base_delay * 2.0 ** (attempt - 1))
        delay = ceiling * self._random()
        asked = _retry_after(error)
        if asked is not None:
            asked = min(asked, options.max_delay)
            delay = max(delay, asked)
        if options.budget is not None:
            caller = _caller()
            spent = 0.0 if attempt <= 1 else self._spent.get(caller, 0.0)
            remaining = options.budget - spent
            if delay > remaining:
                if (asked is not None and asked > remaining) or remaining <= 0:
                    self._spent.pop(caller, None)
                    return None  # retrying sooner than the API asked would only fail again
                delay = remaining
            self._spent[caller] = spent + delay
        return delay


def _retry_after(error: BaseException) -> float | None:
    value = getattr(error, "retry_after", None)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def _caller() -> Any:
    import trio  # here: listing the plugin needs no trio

    try:
        return trio.lowlevel.current_task()
    except RuntimeError:
        return _OUTSIDE


@hookimpl
def harness_kernel_retry_policies(register: Register) -> None:
    register("exponential", ExponentialRetry, options=ExponentialOptions)
