"""``harness-kernel chat``: a REPL that streams answers and asks for approvals.

Ctrl-C during a run (or while an approval is being asked) aborts that run; Ctrl-C with
nothing running, a second Ctrl-C while aborting, Ctrl-D or ``/exit`` leave the chat,
closing the store properly.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, Literal, TextIO

import trio

from .._records import FilePart, ImagePart, RunResult
from .._runtime import StoreEvent
from .._session import ApprovalHandle, Session
from .._store import SessionStore
from ._output import EventPrinter, describe_usage, media_placeholder, short

__all__ = ["Chat", "LineReader"]

BANNER = "Type a message, or /help. Ctrl-C aborts a run; Ctrl-C again (or Ctrl-D, /exit) leaves."
HELP = """\
  /help          this list
  /exit, /quit   leave the chat (so does Ctrl-D at the prompt)
  Ctrl-C         abort the running answer, or the approval being asked; with
                 nothing running (or pressed again while aborting), leave
  an approval question takes y (yes), n (no, the model is told) or a (always:
  approve this tool for the rest of the session)"""
_ANSWERS = {
    "y": "yes",
    "yes": "yes",
    "n": "no",
    "no": "no",
    "a": "always",
    "always": "always",
}


class LineReader:
    """Lines from a file descriptor, read by one worker thread at a time.

    Exactly one ``os.read`` is outstanding at any moment, so an abandoned wait (Ctrl-C
    while a question was asked) never leaves a second reader that would steal the next
    line. ``os.read`` on the raw descriptor holds no interpreter lock that could block
    shutdown while the thread is still waiting.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._send, self._receive = trio.open_memory_channel[str | None](1000)
        self._pending = b""

    async def pump(self) -> None:
        """Read until end of file, handing over complete lines (run in a nursery)."""
        async with self._send:
            while True:
                chunk = await trio.to_thread.run_sync(
                    os.read, self.fd, 65536, abandon_on_cancel=True
                )
                if not chunk:
                    if self._pending:
                        await self._send.send(self._pending.decode("utf-8", "replace"))
                    await self._send.send(None)
                    return
                self._pending += chunk
                *lines, self._pending = self._pending.split(b"\n")
                for line in lines:
                    await self._send.send(line.decode("utf-8", "replace").rstrip("\r"))

    async def readline(self) -> str | None:
        """The next line without its newline; ``None`` at end of input."""
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            return None


class Chat:
    def __init__(self, store: SessionStore, session: Session, out: TextIO | None = None) -> None:
        self.store = store
        self.session = session
        self.out = out or sys.stdout
        self.printer = EventPrinter(store.agent.name, self.out, self.out)
        self._busy: trio.CancelScope | None = None
        self._aborting = False
        self._leave = trio.CancelScope()
        self._echo = False

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def prompt(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    async def answer(self, reader: LineReader) -> str | None:
        """The next input line (``None`` at the end), echoed when input is piped."""
        line = await reader.readline()
        if line is None:
            self.say("")
        elif self._echo:
            self.say(line)
        return line

    # -- interrupts -----------------------------------------------------------------

    async def _interrupts(self, signals: AsyncIterator[int]) -> None:
        async for _ in signals:
            if self._busy is not None and not self._aborting:
                self._aborting = True
                self.printer.finish()
                self.say("^C aborting the run (Ctrl-C again to leave)")
                self._busy.cancel()
            else:
                self.printer.finish()
                self.say("^C")
                self._leave.cancel()

    async def _guarded(self, work: Callable[[], Awaitable[Any]]) -> tuple[bool, Any]:
        """Run ``work`` so that Ctrl-C aborts it: ``(completed, value)``. An aborted
        piece of work also ends the session's run."""
        self._aborting = False
        value = None
        with trio.CancelScope() as scope:
            self._busy = scope
            try:
                value = await work()
            finally:
                self._busy = None
        if scope.cancelled_caught:
            await self.session.abort()
            self.printer.finish()
            self.say("(run aborted)")
            return False, None
        return True, value

    # -- the loop -------------------------------------------------------------------

    async def run(self, fd: int = 0) -> int:
        reader = LineReader(fd)
        # Piped input is not echoed by a terminal: echo it, so a transcript reads well.
        self._echo = not os.isatty(fd)
        with _own_ctrl_c_echo(fd):
            await self._run(reader)
        return 0

    async def _run(self, reader: LineReader) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader.pump)
            with trio.open_signal_receiver(signal.SIGINT) as signals:
                nursery.start_soon(self._interrupts, signals)
                with self._leave:
                    await self._welcome()
                    await self._loop(reader)
            nursery.cancel_scope.cancel()

    async def _welcome(self) -> None:
        s = self.session
        self.say(f"session {s.id} | agent {self.store.agent.name} | model {s.model}")
        history = await s.history()
        if history:
            self.say(f"(resumed: {len(history)} messages; the last ones follow)")
            for message in history[-6:]:
                if message.role not in ("user", "assistant"):
                    continue
                who = "you" if message.role == "user" else self.store.agent.name
                if message.text:
                    self.say(f"{who}> {short(message.text, 200)}")
                for part in message.parts:
                    if isinstance(part, ImagePart | FilePart):
                        self.say(f"{who}> {media_placeholder(part)}")
        self.say(BANNER)
        waiting = len(s.pending_approvals)
        if waiting:
            plural = "s" if waiting > 1 else ""
            self.say(f"{waiting} tool call{plural} from before wait for your approval:")

    async def _loop(self, reader: LineReader) -> None:
        if self.session.pending_approvals and not await self._approvals(reader):
            return
        while True:
            self.prompt("you> ")
            line = await self.answer(reader)
            if line is None:
                return
            text = line.strip()
            if not text:
                continue
            if text in ("/exit", "/quit"):
                return
            if text == "/help":
                self.say(HELP)
                continue
            done, result = await self._guarded(partial(self._stream, text))
            if done and result is not None and result.usage.cost is not None:
                self.say(f"  [usage] {describe_usage(result.usage)}")
            waiting = done and result is not None and result.status == "waiting_approval"
            if waiting and not await self._approvals(reader):
                return

    async def _stream(self, text: str) -> RunResult | None:
        async with self.session.stream(text) as events:
            async for item in events:
                self.printer.feed(item)
        self.printer.finish()
        return events.result

    # -- approvals ------------------------------------------------------------------

    async def _approvals(self, reader: LineReader) -> bool:
        """Ask about each pending approval until the run stops asking; ``False`` when
        the input ended."""
        while self.session.pending_approvals:
            handle = self.session.pending_approvals[0]
            done, decision = await self._guarded(partial(self._ask, reader, handle))
            if not done:
                return True
            if decision is None:
                return False
            await self._guarded(partial(self._resolve, handle, decision))
        return True

    async def _ask(self, reader: LineReader, handle: ApprovalHandle) -> str | None:
        while True:
            self.prompt(
                f"  approve {handle.tool} {short(dict(handle.arguments), 120)}? "
                "[y]es / [n]o / [a]lways for this tool: "
            )
            line = await self.answer(reader)
            if line is None:
                return None
            answer = _ANSWERS.get(line.strip().lower())
            if answer is not None:
                return answer
            self.say("  please answer y, n or a")

    async def _resolve(self, handle: ApprovalHandle, decision: str) -> RunResult | None:
        """Approve or deny, showing the continued run's events as they are recorded."""

        async def act() -> RunResult | None:
            if decision == "no":
                return await self.session.deny(handle.approval_id, "denied by the user")
            remember: Literal["tool"] | None = "tool" if decision == "always" else None
            return await self.session.approve(handle.approval_id, remember=remember)

        return await follow(self.store, self.session.id, self.printer, act)


@contextmanager
def _own_ctrl_c_echo(fd: int) -> Iterator[None]:
    """A terminal echoes Ctrl-C as ``^C`` itself (ECHOCTL), and the chat says ``^C ...``
    too: turn the terminal's echo of control characters off while the chat runs."""
    try:
        import termios
    except ImportError:  # Windows: no termios, no ECHOCTL
        yield
        return
    try:
        saved = termios.tcgetattr(fd)
    except (termios.error, OSError):  # not a terminal
        yield
        return
    quiet = list(saved)
    quiet[3] &= ~termios.ECHOCTL
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


async def follow(
    store: SessionStore,
    session_id: str,
    printer: EventPrinter,
    act: Callable[[], Awaitable[RunResult | None]],
) -> RunResult | None:
    """Call ``act`` while printing the session's durable events as they are recorded
    (used for runs that continue after an approval, which have no stream)."""
    result: list[RunResult | None] = []
    failure: list[Exception] = []
    async with store.subscribe() as events:
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                try:
                    result.append(await act())
                except Exception as exc:  # re-raised below, outside the nursery
                    failure.append(exc)
                finally:
                    nursery.cancel_scope.cancel()

            nursery.start_soon(run)
            async for item in events:
                _show(printer, session_id, item)
        # Everything recorded before ``act`` returned is already in the channel.
        while True:
            try:
                item = events.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            _show(printer, session_id, item)
    printer.finish()
    if failure:
        raise failure[0]
    return result[0] if result else None


def _show(printer: EventPrinter, session_id: str, item: StoreEvent) -> None:
    if item.session_id != session_id:
        return
    if item.event is not None:
        printer.feed(item.event)
    elif item.kind == "display_state_changed":
        printer.display(getattr(item, "display", None))
