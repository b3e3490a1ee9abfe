"""One owner per session: the lease, and acting on a session another store runs.

The store that runs a session holds a lease on its record (owner, host, pid, expiry),
taken and renewed with the record's compare-and-swap, so at most one live lease exists.
While it holds the lease it reads the log every ``poll_interval`` for what other
processes appended: queued inputs, resolutions, abort requests. A store that finds a
live lease held by another never runs the session and never declares that run crashed;
it appends its request (the log is the mailbox) and follows the log until the owner
produced the answer. Only an expired lease (the owner died) lets it take over.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Final

import trio

from ._fold import RunInfo
from ._log import LeaseHeld, SessionLog
from ._records import AbortRequested, InputQueued, Lease, Message, RunResult, RunStatus
from ._runtime import Runtime
from ._step import ActiveRun
from .codec import converter
from .contracts import WatchNotice
from .errors import HarnessError, OwnerTimeout, SessionConflict, SessionReplaced

__all__ = ["START_RETRIES", "Ownership"]

HOST: Final = socket.gethostname()
START_RETRIES: Final = 8
"""How often a run starts again when other stores keep moving the log before its first
commit; then it fails with ``SessionConflict``."""


class Ownership:
    """The lease of one loaded session, and the requests it sends to another owner."""

    def __init__(self, runtime: Runtime, log: SessionLog) -> None:
        self._rt = runtime
        self._log = log
        self.deferred: Lease | None = None
        """A lease ``take(defer=True)`` left for the run's first commit to write."""

    def _mine(self) -> Lease:
        return Lease(self._rt.owner, HOST, os.getpid(), self._rt.lease_clock() + self._rt.lease_ttl)

    def other_owner(self) -> Lease | None:
        """The live lease of another store, as this store last read the record."""
        held = self._log.record.lease
        if held is not None and held.owner != self._rt.owner and held.live(self._rt.lease_clock()):
            return held
        return None

    async def take(self, run: ActiveRun, message: Message | None) -> bool:
        """Hold the lease (True), or find another store's live lease (False).

        When ``run`` starts with ``message`` and nothing comes before its first append
        (no run is open), and the storage saves a record with an append, nothing is
        written yet: the lease is left in ``deferred`` for that append to write in the
        same commit (which raises ``LeaseHeld`` if another store took it meanwhile)."""
        self.deferred = None
        defer = (
            self._rt.storage_appends_records
            and run.trigger != "resume"
            and message is not None
            and self._log.fold.open_run is None
        )
        if self.other_owner() is not None:
            await self._log.sync()  # the lease we know of may be over
            if self.other_owner() is not None:
                return False
        if defer:
            self.deferred = self._mine()
            return True
        try:
            await self._log.save_record(lease=self._mine(), snapshot=False)
        except LeaseHeld:
            return False
        return True

    def start_again(self, run: ActiveRun, why: Exception, restarts: int) -> int:
        """Another store took the lease or moved the log before ``run``'s first commit:
        it decides again (follows, or starts anew). ``SessionConflict`` if it began, or
        after ``START_RETRIES``; else the count of restarts so far."""
        if run.begun or restarts >= START_RETRIES:
            raise SessionConflict(
                f"session '{self._log.id}' kept being changed by other stores; this run did "
                "not start"
            ) from why
        return restarts + 1

    @asynccontextmanager
    async def notices(self) -> AsyncIterator[trio.MemoryReceiveChannel[WatchNotice] | None]:
        """The storage's notices of this session's appends, where it offers them
        (``capabilities.watch``): from the store's own watch while it listens, else
        from a watch of this session; ``None`` otherwise, and the caller polls."""
        storage = self._rt.storage
        async with AsyncExitStack() as stack:
            channel: trio.MemoryReceiveChannel[WatchNotice] | None = None
            if self._rt.hub.listening:
                hub, sid = self._rt.hub, self._log.id
                channel = await stack.enter_async_context(hub.notices(sid))
                try:  # what was appended before this listened is announced at once
                    last = await storage.last_seq(sid)
                except HarnessError:
                    last = 0
                if last > self._log.last_seq:
                    hub.announce(WatchNotice(sid, last))
            elif storage.capabilities.watch:
                try:
                    watch = storage.watch(
                        [self._log.id], after_seq={self._log.id: self._log.last_seq}
                    )
                    channel = await stack.enter_async_context(watch)
                except (NotImplementedError, HarnessError) as exc:
                    self._log.log.warning("watch_unavailable", error=str(exc) or type(exc).__name__)
            yield channel

    async def pause(self, notices: trio.MemoryReceiveChannel[WatchNotice] | None) -> None:
        """Until the next poll, or sooner when the storage announces an append this
        store has not folded yet (its own appends are announced too, and skipped)."""
        with trio.move_on_after(self._rt.poll_interval):
            if notices is None:
                await trio.sleep_forever()
            while True:
                notice = await notices.receive()
                if notice.last_seq == 0 or notice.last_seq > self._log.last_seq:
                    return

    async def watch(self, run: ActiveRun, scope: trio.CancelScope) -> None:
        """While ``run`` lives: fold what others append, renew the lease, honour aborts."""
        with scope:
            async with self.notices() as notices:
                await self._watch(run, notices)

    async def _watch(
        self, run: ActiveRun, notices: trio.MemoryReceiveChannel[WatchNotice] | None
    ) -> None:
        rt, log = self._rt, self._log
        renew_at = trio.current_time() + rt.lease_ttl / 3
        while True:
            await self.pause(notices)
            try:
                await log.sync()
                if trio.current_time() >= renew_at:
                    await log.save_record(lease=self._mine(), snapshot=False)
                    renew_at = trio.current_time() + rt.lease_ttl / 3
            except LeaseHeld as exc:
                log.log.error("lease_lost", run_id=run.id, owner=exc.lease.owner)
                run.scope.cancel()
                return
            except SessionReplaced:
                run.scope.cancel()
                return
            except HarnessError as exc:
                log.log.warning("lease_watch_failed", run_id=run.id, error=str(exc))
                continue
            if run.id in log.fold.abort_requests:
                run.scope.cancel()
                return

    async def follow(self, run: ActiveRun, message: Message | None) -> RunStatus | None:
        """``run`` belongs to another store: hand it over and follow the log.

        A send is queued for the owner and followed until the owner's run of it stops; a
        continuation (``resume``) is followed until the open run stops. Returns the
        status (``run.result`` set), ``"completed"`` with no result for a queued input
        (the owner runs it in its own time), or ``None`` once no live owner is left, so
        the caller takes over.
        """
        rt, log = self._rt, self._log
        if run.trigger in ("follow_up", "steer"):
            run.remote = True
            return "completed"
        if message is not None and not run.handed_over:
            await log.append(None, InputQueued("follow_up", message))
            run.handed_over = True
        target = None if message is not None else log.fold.open_run
        owner = self.other_owner()
        with trio.move_on_after(rt.owner_timeout):
            async with self.notices() as notices:
                while True:
                    info = self._run_of(message.id if message is not None else None, target)
                    if info is not None and (
                        info.finished_at is not None
                        or (log.fold.open_run == info.run_id and log.fold.parked)
                    ):
                        run.remote = True
                        run.id = info.run_id
                        run.result = await self._result(info, run.output_type)
                        status: RunStatus = run.result.status
                        return status
                    if self.other_owner() is None:
                        return None
                    owner = self.other_owner() or owner
                    await self.pause(notices)
                    await log.sync()
        raise OwnerTimeout(_timeout_message(log.id, owner, rt.owner_timeout))

    def _run_of(self, message_id: str | None, run_id: str | None) -> RunInfo | None:
        runs = self._log.fold.runs
        if run_id is not None:
            return runs.get(run_id)
        return next(
            (info for info in reversed(runs.values()) if info.first_message == message_id), None
        )

    async def _result(self, info: RunInfo, output_type: type | None = None) -> RunResult:
        fold = self._log.fold
        status: RunStatus
        if info.finished_at is not None:
            status = "completed" if info.status == "running" else info.status
        else:
            status = "suspended" if fold.suspensions else "waiting_approval"
        messages = await self._log.messages_between(info.first_seq, info.last_seq)
        last = next((m for m in reversed(messages) if m.role == "assistant"), None)
        return RunResult(
            session_id=self._log.id,
            run_id=info.run_id,
            status=status,
            text=last.text if last else "",
            messages=messages,
            tool_calls=tuple(c for m in messages for c in m.tool_calls),
            usage=info.usage,
            error=info.error,
            duration_ms=((info.finished_at or time.time()) - info.started_at) * 1000,
            output=(
                converter.structure(info.output, output_type)
                if output_type is not None and info.output is not None
                else info.output
            ),
        )

    async def request_abort(self) -> bool | None:
        """Ask the owner to abort its run; wait until it ended. ``None`` if no other
        store runs the session (the caller acts itself)."""
        rt, log = self._rt, self._log
        await log.sync()
        owner = self.other_owner()
        target = log.fold.open_run
        if owner is None or target is None or log.fold.parked:
            return None
        await log.append(None, AbortRequested(target, rt.owner))
        with trio.move_on_after(rt.owner_timeout):
            async with self.notices() as notices:
                while True:
                    info = log.fold.runs.get(target)
                    if info is not None and info.finished_at is not None:
                        return True
                    if self.other_owner() is None:
                        return None
                    await self.pause(notices)
                    await log.sync()
        raise OwnerTimeout(_timeout_message(log.id, owner, rt.owner_timeout))


def _timeout_message(session_id: str, owner: Lease | None, timeout: float) -> str:
    who = f"{owner.owner} (host {owner.host}, pid {owner.pid})" if owner else "another store"
    return (
        f"session '{session_id}' is run by {who}, which did not answer within {timeout:g} s; "
        "the request stays in the session's log and may still be applied"
    )
