"""Running one command: its own process group, capped output, a timeout that kills the group.

The command starts in a new session (so a new process group whose id is its pid).
When the command's first process exits, or the timeout expires, the whole group is
sent ``SIGKILL``: nothing a command starts outlives it (unless it left the group on
purpose with ``setsid``; under ``bwrap`` the PID namespace ends even those).

The group is killed while its leader is an unreaped zombie (its exit is observed
through a pidfd without reaping it), so the group id cannot have been reused by an
unrelated process when the signal is sent.

Output is read as it comes and kept up to a cap per stream, half from the start and
half from the end, with a notice in between; the rest is read and discarded, so a
chatty command is never blocked on a full pipe and its exit status is unchanged.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from harness_kernel.errors import SandboxError

__all__ = ["Completed", "OutputCapture", "run_process_group"]

CHUNK = 1 << 16
PIPE_GRACE = 2.0
"""Seconds to wait for pipes to close after the command's group was killed. Only a
process that escaped the group (``setsid``) can hold them open that long."""
REAP_GRACE = 5.0


@attrs.define
class OutputCapture:
    """Keeps the first and the last ``limit / 2`` bytes of a stream and counts the rest."""

    limit: int
    head: bytearray = attrs.field(factory=bytearray)
    tail: bytearray = attrs.field(factory=bytearray)
    total: int = 0

    @property
    def _head_limit(self) -> int:
        return self.limit // 2

    @property
    def _tail_limit(self) -> int:
        return self.limit - self.limit // 2

    def feed(self, data: bytes | bytearray) -> None:
        self.total += len(data)
        room = self._head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            # Trim in batches: keeping up to twice the tail makes trimming amortized O(1).
            if len(self.tail) > 2 * self._tail_limit:
                del self.tail[: len(self.tail) - self._tail_limit]

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    def text(self) -> str:
        if not self.truncated:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", errors="replace")
        tail = bytes(self.tail[-self._tail_limit :]) if self._tail_limit else b""
        omitted = self.total - len(self.head) - len(tail)
        notice = (
            f"\n[... output truncated: {omitted} bytes omitted; the stream had {self.total} bytes, "
            f"more than the limit of {self.limit} ...]\n"
        )
        return self.head.decode("utf-8", errors="replace") + notice + tail.decode("utf-8", errors="replace")


@attrs.frozen
class Completed:
    """What happened to a command: the raw wait status and the captured streams."""

    returncode: int
    stdout: OutputCapture
    stderr: OutputCapture
    timed_out: bool
    duration_ms: float
    stopped: str | None = None
    """Why the watchdog stopped the command, when it did."""


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def _exited(process: trio.Process) -> None:
    """Wait until ``process`` exits, without reaping it (its pid stays reserved)."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # no pidfd here: wait normally (reaps)
        await process.wait()
        return
    try:
        await trio.lowlevel.wait_readable(pidfd)
    finally:
        trio.lowlevel.notify_closing(pidfd)
        os.close(pidfd)


async def _drain(stream: trio.abc.ReceiveStream, capture: OutputCapture, done: trio.Event) -> None:
    while True:
        chunk = await stream.receive_some(CHUNK)
        if not chunk:
            break
        capture.feed(chunk)
    done.set()


async def _feed(stream: trio.abc.SendStream, data: bytes) -> None:
    try:
        if data:
            await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the command exited or closed its input without reading it all
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


async def run_process_group(
    argv: Sequence[str],
    *,
    cwd: str,
    env: dict[str, str],
    stdin: bytes | None,
    timeout: float | None,
    limit: int,
    running: set[trio.Process],
    kill_tree: Callable[[], None] | None = None,
    watchdog: Callable[[], Awaitable[str | None]] | None = None,
) -> Completed:
    """Run ``argv`` to completion in its own process group; see the module docstring.

    ``running`` holds the process while it runs, so its owner can kill it on close.
    ``kill_tree`` kills what the command started beyond its group (its cgroup), each
    time the group is killed. ``watchdog`` runs while the command does; when it returns
    a reason, the command is killed as at a timeout and ``Completed.stopped`` says why.
    Raises ``SandboxError`` when the program cannot be started. If the caller is
    cancelled, the group is killed and the process reaped before the cancellation
    propagates.
    """
    started = time.perf_counter()
    try:
        process = await trio.lowlevel.open_process(
            list(argv),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SandboxError(f"cannot start command '{argv[0]}': {reason}") from exc
    except ValueError as exc:  # e.g. an embedded NUL byte in an argument
        raise SandboxError(f"cannot start command '{argv[0]!r}': {exc}") from exc
    running.add(process)
    out, err = OutputCapture(limit), OutputCapture(limit)
    out_done, err_done = trio.Event(), trio.Event()
    timed_out = False
    stopped: str | None = None
    reaped = False

    def kill() -> None:
        _kill_group(process.pid)
        if kill_tree is not None:
            kill_tree()

    async def watch(scope: trio.CancelScope) -> None:
        nonlocal stopped
        assert watchdog is not None
        reason = await watchdog()
        if reason is not None:
            stopped = reason
            scope.cancel()

    try:
        async with trio.open_nursery() as nursery:
            assert process.stdout is not None
            assert process.stderr is not None
            nursery.start_soon(_drain, process.stdout, out, out_done)
            nursery.start_soon(_drain, process.stderr, err, err_done)
            if stdin is not None:
                assert process.stdin is not None
                nursery.start_soon(_feed, process.stdin, stdin)
            with trio.move_on_after(math.inf if timeout is None else timeout) as deadline:
                async with trio.open_nursery() as waiting:
                    if watchdog is not None:
                        waiting.start_soon(watch, waiting.cancel_scope)
                    await _exited(process)
                    waiting.cancel_scope.cancel()
            if deadline.cancelled_caught or stopped is not None:
                timed_out = stopped is None
                kill()
                await _exited(process)
            # The leader has exited but is not reaped yet: its pid still names the group.
            kill()
            await process.wait()
            reaped = True
            running.discard(process)  # from here on its pid may name someone else
            with trio.move_on_after(PIPE_GRACE):
                await out_done.wait()
                await err_done.wait()
            nursery.cancel_scope.cancel()
    finally:
        if not reaped:
            kill()
            with trio.CancelScope(shield=True, deadline=trio.current_time() + REAP_GRACE):
                await process.wait()
        running.discard(process)
        with trio.CancelScope(shield=True):
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    await stream.aclose()
    returncode = process.returncode
    assert returncode is not None
    return Completed(returncode, out, err, timed_out, (time.perf_counter() - started) * 1000, stopped)


def kill_running(running: set[trio.Process]) -> None:
    """Kill the process group of every command still running (their ``exec`` returns)."""
    for process in list(running):
        _kill_group(process.pid)
