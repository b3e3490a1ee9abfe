"""A lease clock that follows trio's clock, so ``trio.testing.MockClock`` expires leases."""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

__all__ = ["trio_lease_clock"]


def trio_lease_clock(start: float | None = None) -> Callable[[], float]:
    """A ``lease_clock`` for ``create_session_store``: epoch seconds that advance with
    ``trio.current_time()`` (from ``start``, default now), so a test under ``MockClock``
    moves lease expiry by moving trio's clock. Give every store of the test the same one.
    Call it only from inside ``trio.run``."""
    base = time.time() if start is None else start
    origin: list[float] = []

    def now() -> float:
        current = trio.current_time()
        if not origin:
            origin.append(current)
        return base + current - origin[0]

    return now
