"""The asyncio side of ``harness_kernel.asyncio``: the kernel as a trio guest of one
asyncio loop, calls into it, and the buffers streams are read from.

Trio guest mode (``trio.lowlevel.start_guest_run``) runs trio's scheduler as callbacks
of the host loop, in the host's thread: trio and asyncio code never run at the same
time, so results are handed over by setting asyncio futures directly, and the host
reaches trio through the token, which wakes trio when it is idle.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import trio

from ._bridge import BATCH_LIMIT, Hold, Job, Kernel, Outcome, Outlet, Pump
from .errors import HarnessError

__all__ = ["Buffer", "GuestKernel", "acquire", "call", "held"]

_T = TypeVar("_T")

TICK_BUDGET = 0.0005
"""Seconds of back-to-back trio ticks before the host loop gets its turn."""


class _Ticks:
    """Run trio's guest ticks back to back, within ``TICK_BUDGET``, in one callback of
    the host loop, instead of one loop iteration (and its selector poll) per tick.

    A tick asks for the next one as its last act; the request is queued here and run by
    the loop below, so ticks never nest. Trio still polls its own I/O every tick.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: deque[Callable[[], object]] = deque()
        self._scheduled = False

    def schedule(self, fn: Callable[[], object]) -> None:
        self._queue.append(fn)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        deadline = time.perf_counter() + TICK_BUDGET
        try:
            while self._queue:
                self._queue.popleft()()
                if time.perf_counter() > deadline:
                    break
        finally:
            if self._queue:
                self._loop.call_soon(self._run)
            else:
                self._scheduled = False


class GuestKernel(Kernel):
    """The trio kernel running as a guest of one asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.users = 0
        self.stopping = False
        self.ready: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[Any] = loop.create_future()
        self._watcher: asyncio.Task[None] | None = None

    def start(self) -> None:
        try:
            trio.lowlevel.start_guest_run(
                self.serve,
                self._on_ready,
                run_sync_soon_threadsafe=self.loop.call_soon_threadsafe,
                run_sync_soon_not_threadsafe=_Ticks(self.loop).schedule,
                done_callback=self._on_done,
                host_uses_signal_set_wakeup_fd=True,
            )
        except RuntimeError as exc:
            raise HarnessError(
                "harness_kernel.asyncio was called from inside trio; a trio program uses "
                "harness_kernel.create_session_store directly"
            ) from exc
        self._watcher = self.loop.create_task(self._watch_loop(), name="harness-kernel guest run")

    def _on_ready(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)

    def _on_done(self, outcome: Any) -> None:
        if KERNELS.get(self.loop) is self:
            del KERNELS[self.loop]
        if not self.done.done():
            self.done.set_result(outcome)
        if not self.ready.done():
            self.ready.set_exception(HarnessError("the trio kernel did not start"))

    async def _watch_loop(self) -> None:
        try:
            await asyncio.shield(self.done)
        except asyncio.CancelledError:
            # The loop is shutting down with stores still open: finish the kernel (they
            # close, shielded and bounded) before the loop closes under it.
            self.stop()
            await asyncio.shield(self.done)
            raise

    def stop(self) -> None:
        self.stopping = True
        if self.ready.done():
            self.request_stop()
        else:
            self.ready.add_done_callback(lambda _: self.request_stop())

    async def release(self) -> None:
        self.users -= 1
        if self.users == 0 and not self.stopping:
            self.stop()
            await asyncio.shield(self.done)


KERNELS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GuestKernel] = (
    weakref.WeakKeyDictionary()
)


async def acquire() -> GuestKernel:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        pass
    else:
        raise HarnessError(
            "harness_kernel.asyncio was called from inside trio; a trio program uses "
            "harness_kernel.create_session_store directly"
        )
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise HarnessError("harness_kernel.asyncio needs a running asyncio loop") from None
    kernel = KERNELS.get(loop)
    while kernel is not None and kernel.stopping:
        # Only one trio run per thread: a kernel still finishing goes first.
        await asyncio.shield(kernel.done)
        kernel = KERNELS.get(loop)
    if kernel is None:
        kernel = KERNELS[loop] = GuestKernel(loop)
        try:
            kernel.start()
        except BaseException:
            del KERNELS[loop]
            raise
    kernel.users += 1
    try:
        await asyncio.shield(kernel.ready)
    except BaseException:
        await kernel.release()
        raise
    return kernel


def settle(future: asyncio.Future[Outcome[Any]], outcome: Outcome[Any]) -> None:
    if not future.done():
        future.set_result(outcome)


async def finish(kernel: Kernel, job: Job[Any], done: asyncio.Future[Outcome[Any]]) -> None:
    """The awaiting task was cancelled: cancel the job and let it end (it records)."""
    try:
        kernel.soon(job.cancel)
    except HarnessError:
        return  # the kernel has stopped: the job has ended
    await asyncio.shield(done)


async def call(
    kernel: GuestKernel, fn: Callable[..., Awaitable[_T]], *args: Any, **kwargs: Any
) -> _T:
    """Await ``fn(*args, **kwargs)`` run as a kernel task; cancelling the caller cancels it."""
    done: asyncio.Future[Outcome[_T]] = kernel.loop.create_future()
    job = Job(
        functools.partial(fn, **kwargs) if kwargs else fn, args, functools.partial(settle, done)
    )
    kernel.submit(job)
    try:
        outcome = await asyncio.shield(done)
    except asyncio.CancelledError:
        await finish(kernel, job, done)
        raise
    return outcome.unwrap()


# -- streams -----------------------------------------------------------------------------


class Buffer(Outlet):
    """Items handed over by a pump, read by one asyncio task."""

    def __init__(self, kernel: GuestKernel) -> None:
        self._kernel = kernel
        self._items: deque[Any] = deque()
        self._ended = False
        self._full = False
        self._waiter: asyncio.Future[None] | None = None
        self.pump = Pump(self)

    def deliver(self, items: list[Any], end: bool) -> bool:
        self._items.extend(items)
        self._ended = self._ended or end
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._full = not self._ended and len(self._items) >= BATCH_LIMIT
        return self._full

    async def next(self) -> Any:
        while not self._items:
            if self._ended:
                raise StopAsyncIteration
            self._waiter = self._kernel.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        if self._full and len(self._items) <= BATCH_LIMIT // 2:
            self._full = False
            self._kernel.soon(self.pump.resume)
        return item


async def leave(
    kernel: Kernel, hold: Hold[Any], done: asyncio.Future[Outcome[Any]]
) -> Outcome[Any]:
    if not done.done():
        try:
            kernel.soon(hold.release)
        except HarnessError:
            pass  # the kernel stopped: the holder has left already
    return await asyncio.shield(done)


@asynccontextmanager
async def held(
    kernel: GuestKernel,
    open_cm: Callable[[], AbstractAsyncContextManager[_T]],
    pump: Pump | None = None,
    store: bool = False,
) -> AsyncIterator[_T]:
    """Hold a trio context manager open in a kernel task for as long as this block,
    pumping what it yields when ``pump`` is given. Leaving early stops the pump, so the
    kernel leaves its block as a trio caller who stopped reading would (a stream's run
    is aborted); this block exits once the kernel's has."""
    opened: asyncio.Future[Outcome[Any]] = kernel.loop.create_future()
    done: asyncio.Future[Outcome[Any]] = kernel.loop.create_future()
    hold = Hold(open_cm, lambda value: settle(opened, Outcome(value=value)), pump)

    def report(outcome: Outcome[Any]) -> None:
        settle(opened, outcome)
        settle(done, outcome)

    job: Job[Any] = Job(hold, (), report)
    kernel.submit(job, hold if store else None)
    try:
        first = await asyncio.shield(opened)
    except asyncio.CancelledError:
        await finish(kernel, job, done)
        raise
    value: _T = first.unwrap()
    try:
        yield value
    except BaseException:
        await leave(kernel, hold, done)
        raise
    (await leave(kernel, hold, done)).unwrap()
