"""The kernel as seen from a host that is not a trio program.

``harness_kernel.asyncio`` runs the kernel in trio guest mode inside the host's asyncio
loop; ``harness_kernel.sync`` runs it with ``trio.run`` in a background thread. Both
reach it the same way, through this module: a ``Kernel`` owns one trio nursery, a host
``submit``s a ``Job`` (one call of the public API, in its own cancel scope) from any
thread, and the job reports its ``Outcome`` back through a callback run in trio.
A ``Pump`` hands the items of a stream or subscription to the host in batches.

Only the public kernel API is called from here; each facade owns the waiting.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar, final

import trio

from .errors import StoreClosed

__all__ = ["Hold", "Job", "Kernel", "Outcome", "Pump", "kernel_stopped"]

T = TypeVar("T")

BATCH_LIMIT = 256
"""Items a host may fall behind by before the pump waits for it (as a trio reader's
stream buffer lets the run wait)."""


def kernel_stopped() -> StoreClosed:
    return StoreClosed(
        "the kernel stopped (its host loop or thread is shutting down); the store is closed"
    )


@final
class Outcome(Generic[T]):
    """How a job ended: a value, an exception, or cancelled on the host's request."""

    __slots__ = ("cancelled", "error", "value")

    def __init__(
        self, value: Any = None, error: BaseException | None = None, cancelled: bool = False
    ) -> None:
        self.value = value
        self.error = error
        self.cancelled = cancelled

    def unwrap(self) -> T:
        if self.error is not None:
            raise self.error
        if self.cancelled:
            raise kernel_stopped()
        value: T = self.value
        return value


@final
class Job(Generic[T]):
    """One host call run as a task of the kernel's nursery.

    ``report`` is called exactly once, in trio, with the outcome; a job the kernel
    stopped under reports a ``StoreClosed`` error.
    """

    def __init__(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        report: Callable[[Outcome[T]], None],
    ) -> None:
        self._fn = fn
        self._args = args
        self._report = report
        self._scope: trio.CancelScope | None = None
        self._cancel_requested = False

    def cancel(self) -> None:
        """Cancel the call as cancelling a trio caller would (call it in trio)."""
        self._cancel_requested = True
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> None:
        outcome: Outcome[T] = Outcome(error=kernel_stopped())
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                if self._cancel_requested:
                    scope.cancel()
                try:
                    outcome = Outcome(value=await self._fn(*self._args))
                except Exception as exc:
                    outcome = Outcome(error=exc)
            if scope.cancelled_caught:
                outcome = Outcome(cancelled=True)
        finally:
            # Runs when the kernel's own nursery is cancelled too: the host still hears.
            self._report(outcome)

    def fail(self) -> None:
        """Report that the job never started (the kernel had stopped)."""
        self._report(Outcome(error=kernel_stopped()))


class Kernel:
    """One running trio kernel: nurseries and the token hosts reach it through.

    Subclasses start it (guest mode, a thread) and call ``serve`` as trio's main.
    """

    def __init__(self) -> None:
        self._token: trio.lowlevel.TrioToken | None = None
        self._calls: trio.Nursery | None = None
        self._stores: trio.Nursery | None = None
        self._holds: set[Hold[Any]] = set()
        self._stop: trio.Event | None = None

    async def serve(self, ready: Callable[[], None]) -> None:
        """The kernel's trio main, until ``request_stop``. Stores still open then are
        closed first, as their hosts would (runs aborted and recorded, streams and
        subscriptions ending as they do when a store closes); calls left after that
        are cancelled."""
        self._stop = trio.Event()
        async with trio.open_nursery() as calls:
            self._calls = calls
            async with trio.open_nursery() as stores:
                self._stores = stores
                self._token = trio.lowlevel.current_trio_token()
                ready()
                await self._stop.wait()
                for hold in list(self._holds):
                    hold.release()
            calls.cancel_scope.cancel()

    def soon(self, fn: Callable[..., object], *args: Any) -> None:
        """Run the plain function ``fn(*args)`` in trio soon (from any thread)."""
        if self._token is None:
            raise kernel_stopped()
        try:
            self._token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            raise kernel_stopped() from None

    def submit(self, job: Job[Any], store: Hold[Any] | None = None) -> None:
        """Start ``job`` in the kernel (from any thread); ``store`` is given when the job
        holds a store open, which then closes before other jobs are cancelled."""
        self.soon(self._spawn, job, store)

    def _spawn(self, job: Job[Any], store: Hold[Any] | None) -> None:
        if self._calls is None or self._stores is None or self._stop is None or self._stop.is_set():
            job.fail()
        elif store is not None:
            self._holds.add(store)
            self._stores.start_soon(self._hold_store, job, store)
        else:
            self._calls.start_soon(job.run)

    async def _hold_store(self, job: Job[Any], store: Hold[Any]) -> None:
        try:
            await job.run()
        finally:
            self._holds.discard(store)

    def request_stop(self) -> None:
        """Ask the kernel to finish (from any thread); a no-op once it has."""
        if self._stop is not None:
            try:
                self.soon(self._stop.set)
            except StoreClosed:
                pass  # it has finished already


class Outlet:
    """The host's end of a pump: ``deliver`` runs in trio with a batch of items.

    It returns ``True`` when the host buffer is full; the pump then waits until the
    host, having drained it, calls ``Pump.resume`` (through ``Kernel.soon``).
    """

    def deliver(self, items: list[Any], end: bool) -> bool:
        raise NotImplementedError


@final
class Pump:
    """Moves items from a trio iterable to an ``Outlet``, all that is ready at once."""

    def __init__(self, outlet: Outlet) -> None:
        self._outlet = outlet
        self._space = trio.Event()
        self.scope = trio.CancelScope()

    def resume(self) -> None:
        """The host drained its buffer (call it in trio)."""
        self._space.set()

    def stop(self) -> None:
        """The host left: stop reading (call it in trio); the holder then leaves its block."""
        self.scope.cancel()

    async def run(self, source: AsyncIterable[Any]) -> None:
        iterator = source.__aiter__()
        # A memory channel can be drained without a checkpoint per item: one batch per tick.
        channel = iterator if isinstance(iterator, trio.MemoryReceiveChannel) else None
        with self.scope:
            try:
                async for item in iterator:
                    batch = [item]
                    while channel is not None and len(batch) < BATCH_LIMIT:
                        try:
                            batch.append(channel.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    # No checkpoint between a fresh event and deliver: the host's
                    # resume (run in trio) cannot slip in between and be lost.
                    self._space = trio.Event()
                    if self._outlet.deliver(batch, False):
                        await self._space.wait()
            finally:
                self._outlet.deliver([], True)


@final
class Hold(Generic[T]):
    """Hold a trio async context manager open for a host, in one kernel task.

    ``opened`` is called (in trio) with what it yields; the block is left when
    ``release`` is called (in trio), or at once after ``pump`` drained the yielded
    iterable, when one is given. Run it as a ``Job``: its outcome says how the block
    exited.
    """

    def __init__(
        self,
        open_cm: Callable[[], AbstractAsyncContextManager[T]],
        opened: Callable[[T], None],
        pump: Pump | None = None,
    ) -> None:
        self._open = open_cm
        self._opened = opened
        self._pump = pump
        self._released = trio.Event()

    def release(self) -> None:
        self._released.set()
        if self._pump is not None:
            self._pump.stop()

    async def __call__(self) -> None:
        async with self._open() as value:
            self._opened(value)
            if self._pump is not None:
                assert isinstance(value, AsyncIterable)
                await self._pump.run(value)
            else:
                await self._released.wait()
