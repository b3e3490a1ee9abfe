"""The thread side of ``harness_kernel.sync``: the kernel running under ``trio.run``
in a background thread (a portal), calls into it from any thread, and the buffers
streams are read from.

A call waits on a ``threading.Event`` the kernel sets; Ctrl-C (``KeyboardInterrupt``
in the waiting thread) cancels the call's kernel task and waits for it to have
recorded the cancellation before it goes on.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any, TypeVar

import trio

from ._bridge import BATCH_LIMIT, Hold, Job, Kernel, Outcome, Outlet, Pump
from .errors import HarnessError

__all__ = ["Buffer", "Portal", "acquire", "held", "release"]

_T = TypeVar("_T")
_EXIT_JOIN = 60.0  # seconds: stores left open close within twice their grace period


class Portal(Kernel):
    """The trio kernel running in a background thread."""

    def __init__(self) -> None:
        super().__init__()
        self.users = 0
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="harness-kernel", daemon=True)

    def _main(self) -> None:
        try:
            trio.run(self.serve, self._ready.set)
        except BaseException as exc:  # reported to the opener; the thread ends anyway
            self._failure = exc
        finally:
            self._ready.set()

    def start(self) -> None:
        self.thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise HarnessError("the trio kernel did not start") from self._failure

    def check_thread(self) -> None:
        if threading.current_thread() is self.thread:
            raise HarnessError(
                "harness_kernel.sync was called from inside the kernel (a tool, hook or "
                "provider); code the kernel runs uses the trio API"
            )

    def call(self, fn: Callable[..., Awaitable[_T]], *args: Any, **kwargs: Any) -> _T:
        """Run ``fn(*args, **kwargs)`` as a kernel task and wait; Ctrl-C cancels it."""
        self.check_thread()
        done = threading.Event()
        box: list[Outcome[_T]] = []

        def report(outcome: Outcome[_T]) -> None:
            box.append(outcome)
            done.set()

        job = Job(functools.partial(fn, **kwargs) if kwargs else fn, args, report)
        self.submit(job)
        wait_or_cancel(done, lambda: self.soon(job.cancel))
        return box[0].unwrap()

    def read(self, fn: Callable[[], _T]) -> _T:
        """Evaluate ``fn()`` in the kernel's thread (plain state is only read there)."""
        self.check_thread()
        done = threading.Event()
        box: list[Outcome[_T]] = []

        def in_trio() -> None:
            try:
                box.append(Outcome(value=fn()))
            except Exception as exc:
                box.append(Outcome(error=exc))
            finally:
                done.set()

        self.soon(in_trio)
        done.wait()
        return box[0].unwrap()

    def stop_and_join(self, timeout: float | None = None) -> None:
        self.request_stop()
        self.thread.join(timeout)


def wait_or_cancel(done: threading.Event, cancel: Callable[[], None]) -> None:
    """Wait for ``done``; on Ctrl-C, ``cancel`` and wait for the kernel to have
    recorded the cancellation before ``KeyboardInterrupt`` goes on."""
    try:
        done.wait()
    except KeyboardInterrupt:
        with contextlib.suppress(HarnessError):  # the kernel stopped: nothing to cancel
            cancel()
            done.wait()
        raise


_lock = threading.Lock()
_portal: Portal | None = None


def acquire() -> Portal:
    global _portal
    with _lock:
        if _portal is None:
            portal = Portal()
            portal.start()
            _portal = portal
        _portal.check_thread()
        _portal.users += 1
        return _portal


def release(portal: Portal) -> None:
    global _portal
    with _lock:
        portal.users -= 1
        if portal.users > 0:
            return
        if _portal is portal:
            _portal = None
    portal.stop_and_join()


@atexit.register
def _shutdown_at_exit() -> None:
    """Stores left open close (shielded, bounded) before the interpreter goes."""
    global _portal
    with _lock:
        portal, _portal = _portal, None
    if portal is not None:
        portal.stop_and_join(_EXIT_JOIN)


# -- holding and streams -----------------------------------------------------------------


class Buffer(Outlet):
    """Items handed over by a pump (in the kernel's thread), read by host threads."""

    def __init__(self, portal: Portal) -> None:
        self._portal = portal
        self._items: deque[Any] = deque()
        self._ended = False
        self._full = False
        self._ready = threading.Condition()
        self.pump = Pump(self)

    def deliver(self, items: list[Any], end: bool) -> bool:
        with self._ready:
            self._items.extend(items)
            self._ended = self._ended or end
            self._full = not self._ended and len(self._items) >= BATCH_LIMIT
            self._ready.notify_all()
            return self._full

    def next(self) -> Any:
        with self._ready:
            while not self._items:
                if self._ended:
                    raise StopIteration
                self._ready.wait()
            item = self._items.popleft()
            resume = self._full and len(self._items) <= BATCH_LIMIT // 2
            if resume:
                self._full = False
        if resume:
            self._portal.soon(self.pump.resume)
        return item


@contextmanager
def held(
    portal: Portal,
    open_cm: Callable[[], AbstractAsyncContextManager[_T]],
    pump: Pump | None = None,
    store: bool = False,
) -> Iterator[_T]:
    """Hold a trio context manager open in a kernel task for as long as this block,
    pumping what it yields when ``pump`` is given (see ``harness_kernel.asyncio``)."""
    portal.check_thread()
    opened = threading.Event()
    done = threading.Event()
    first: list[Outcome[Any]] = []
    last: list[Outcome[Any]] = []

    def on_open(value: Any) -> None:
        first.append(Outcome(value=value))
        opened.set()

    def report(outcome: Outcome[Any]) -> None:
        if not opened.is_set():
            first.append(outcome)
            opened.set()
        last.append(outcome)
        done.set()

    hold = Hold(open_cm, on_open, pump)
    job: Job[Any] = Job(hold, (), report)
    portal.submit(job, hold if store else None)
    wait_or_cancel(opened, lambda: portal.soon(job.cancel))
    value: _T = first[0].unwrap()

    def leave() -> None:
        if not done.is_set():
            try:
                portal.soon(hold.release)
            except HarnessError:
                return  # the kernel stopped: the holder has left already
            done.wait()

    try:
        yield value
    except BaseException:
        leave()
        raise
    leave()
    if last:
        last[0].unwrap()
