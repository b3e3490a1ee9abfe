"""``display_state`` on demand: built only for someone who wants it, once per tick.

A change of a session (a durable event, a streamed delta) only marks its display state
stale. It is built and sent when someone wants it: the run's stream, or a store
subscriber that asked for display items; otherwise it is built only when someone reads
``session.display_state``. Changes made before the trio scheduler runs its next batch of
tasks (one tick) become one ``display_state_changed``, sent after them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, final

import trio

from ._display import DisplayState, DisplayStateChanged
from ._runtime import Hub, StoreEvent

__all__ = ["DisplayFeed", "Outlet"]


@final
class Outlet:
    """The stream of one run: items for the caller iterating ``stream()``.

    A caller that stopped reading is forgotten; the run goes on without it. Items go in
    without a schedule point while the buffer has room (a cancellation is still seen),
    so what a run does in one tick reaches the caller with one display update.
    """

    def __init__(self, channel: trio.MemorySendChannel[Any]) -> None:
        self._channel: trio.MemorySendChannel[Any] | None = channel

    async def send(self, item: Any) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._channel is None:
            return
        try:
            self._channel.send_nowait(item)
        except trio.WouldBlock:
            try:
                await self._channel.send(item)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._channel = None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._channel = None

    def offer(self, item: Any) -> None:
        """Send ``item`` if the buffer has room now; drop it otherwise."""
        if self._channel is not None:
            try:
                self._channel.send_nowait(item)
            except trio.WouldBlock:
                pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._channel = None

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


@final
class DisplayFeed:
    """The ``display_state_changed`` items of one session (see the module docstring)."""

    def __init__(self, hub: Hub, session_id: str, build: Callable[[], DisplayState]) -> None:
        self._hub = hub
        self._id = session_id
        self._build = build
        self.outlet: Outlet | None = None
        """The stream of the run working now, if someone streams it."""
        self._stale = False
        self._scheduled = False

    @property
    def wanted(self) -> bool:
        return self.outlet is not None or self._hub.has_display_subscribers

    def changed(self) -> None:
        """The display state changed: send it after this tick, if anyone wants it."""
        if not self.wanted:
            self._stale = False
            return
        self._stale = True
        if self._scheduled or self._hub.closing:
            return
        self._scheduled = True
        try:
            self._hub.nursery.start_soon(self._after_tick)
        except RuntimeError:  # the store's nursery is closing
            self._scheduled = False

    async def _after_tick(self) -> None:
        # A task started now runs in the scheduler's next batch: after the task that
        # changed the state has reached its next schedule point.
        self._scheduled = False
        await self.flush()

    async def flush(self) -> None:
        """Send a stale display state now."""
        state = self._take()
        if state is not None:
            if self.outlet is not None:
                await self.outlet.send(DisplayStateChanged(state))
            self._hub.publish(StoreEvent("display_state_changed", self._id, display=state))

    def flush_nowait(self) -> None:
        """``flush`` without waiting: a run's stream gets its last state before it closes,
        unless its reader is a full buffer behind (it can read ``display_state``)."""
        state = self._take()
        if state is not None:
            if self.outlet is not None:
                self.outlet.offer(DisplayStateChanged(state))
            self._hub.publish(StoreEvent("display_state_changed", self._id, display=state))

    def _take(self) -> DisplayState | None:
        if not self._stale:
            return None
        self._stale = False
        return self._build() if self.wanted else None
