"""The run loop of one loaded session: one run at a time, resumable from the log.

``Runner`` owns a session's run slot, its active run, its queued inputs, its approval
timers and its sandbox. A run is a task in the store's nursery: it settles open tool
calls, calls the model, and repeats until it answers without tools or a call waits for a
person (the run parks, durably). A run that began records how it ended, even cancelled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

import trio

from ._agent import Agent
from ._answer import AnswerCheck
from ._context import ContextCompacted
from ._cost import Budget
from ._end import RunEnd
from ._fold import ApprovalHandle
from ._log import KEEP, LeaseHeld, Outlet, SessionLog, StartMoved
from ._output import find_output_type, output_type_name
from ._owner import Ownership
from ._records import (
    ApprovalResolved,
    EventPayload,
    GrantsChanged,
    InputKind,
    InputQueued,
    Message,
    MessageAdded,
    Remember,
    RunResult,
    RunStarted,
    RunStatus,
    SuspensionResolved,
    ToolCallPart,
    new_id,
)
from ._resolve import served_model_error
from ._runtime import Runtime, StoreEvent
from ._step import ActiveRun, Step, unresolved_calls
from .codec import converter, dumps
from .contracts import SandboxSession, SessionInfo
from .errors import (
    HarnessError,
    InvalidArgument,
    MaxStepsExceeded,
    OutputInvalid,
    OwnerTimeout,
    RunAborted,
    SessionClosed,
    SessionReplaced,
    StoreClosed,
    UnknownModel,
)

__all__ = ["QUEUE_RETRY_DELAYS", "Runner"]

QUEUE_RETRY_DELAYS: Final = (0.5, 2.0, 8.0)
"""Backoff before a queued input storage refused to start is tried again; after the last,
it stays queued (durably) until the next call on the session or a hydrate."""


class Runner:
    """One loaded session's runs. The public ``Session`` delegates here."""

    def __init__(self, runtime: Runtime, log: SessionLog) -> None:
        self._rt = runtime
        self.log = log
        self.step = Step(runtime, log, self.sandbox)
        self.owner = Ownership(runtime, log)
        self.ending = RunEnd(runtime, log, self.step, lambda: self.model)
        self.answers = AnswerCheck(runtime, log, self.step.finish_call)
        self.active: ActiveRun | None = None
        self.closed = False
        self._slot = trio.Semaphore(1)
        self._resolving = trio.Lock()
        self._timers: dict[str, trio.CancelScope] = {}
        self._sandbox: SandboxSession | None = None
        self._sandbox_lock = trio.Lock()
        self._queue_failures = 0

    # -- what the session is -------------------------------------------------------

    @property
    def agent(self) -> Agent:
        return self._rt.agent

    @property
    def grace(self) -> float:
        """Seconds cleanup may take while cancelled (ending a run, closing a sandbox)."""
        return self._rt.grace

    def resolve_model(self, ref: str) -> None:
        """``UnknownModel`` unless a configured provider serves ``ref`` (its namespace,
        and the name too when the provider lists its ``models()``)."""
        problem = served_model_error(ref, self._rt.providers) if isinstance(ref, str) else None
        if problem is not None:
            raise UnknownModel(problem)
        self._rt.resolve_model(ref)

    @property
    def model(self) -> str:
        """The model the next run uses: override, else the mode's, else the store default."""
        fold = self.log.fold
        if fold.model is not None:
            return fold.model
        mode = self._rt.agent.mode(fold.mode)
        return (mode.model if mode and mode.model else None) or self._rt.default_model

    def check_open(self) -> None:
        if self.closed:
            raise SessionClosed(f"session '{self.log.id}' is closed; get it again from the store")

    async def sandbox(self) -> SandboxSession:
        """The session's workspace, opened on first use and kept until the session closes."""
        async with self._sandbox_lock:
            if self._sandbox is None:
                record = self.log.record
                self._sandbox = await self._rt.sandbox.open(
                    SessionInfo(record.id, record.agent, dict(record.labels))
                )
            return self._sandbox

    # -- starting runs ---------------------------------------------------------------

    async def start(
        self,
        trigger: str,
        message: Message | None,
        model: str | None,
        outlet: Outlet | None = None,
        output_type: type | None = None,
    ) -> ActiveRun:
        """Wait for the run slot, then start a run task in the store's nursery."""
        self.check_open()
        fold = self.log.fold
        if trigger == "resume":
            # A parked run continues with the model it was started with.
            info = self.log.run_info(fold.open_run) if fold.open_run else None
            model_ref = (info.model if info is not None else None) or self.model
        else:
            model_ref = model or self.model
        self.resolve_model(model_ref)  # a bad ref is the caller's error, before anything runs
        self._queue_failures = 0
        await self._slot.acquire()
        try:
            self.check_open()
            run = self._new_run(trigger, model_ref, outlet)
            run.output_type = output_type or run.output_type
            await self._rt.hub.nursery.start(self._drive, run, message)
        except RuntimeError as exc:  # the store's nursery is closing
            self.active = None
            self._slot.release()
            raise StoreClosed("the session store is closing") from exc
        except BaseException:
            self.active = None
            self._slot.release()
            raise
        return run

    def _new_run(self, trigger: str, model: str, outlet: Outlet | None = None) -> ActiveRun:
        fold = self.log.fold
        resuming = trigger == "resume" and fold.open_run is not None
        run = ActiveRun(
            fold.open_run if resuming and fold.open_run else new_id("run"),
            model,
            fold.mode,
            trigger,
            outlet,
            output_type=self._rt.agent.output_type,
        )
        if resuming:
            run.begun = True
            info = self.log.run_info(run.id)
            if info is not None:
                run.steps = info.steps  # max_steps counts the whole run, not each stretch
        self.active = run
        return run

    def _run_ended(self, run: ActiveRun) -> None:
        """The run task's last act. A queued input takes the slot directly (so it runs
        next, ahead of sends still waiting); otherwise the slot is freed."""
        if self.active is run:
            self.active = None
        run.done.set()
        self.schedule_expiries()
        if run.remote or self.log.replaced:  # another store runs the session (or none is left)
            self._slot.release()
            return
        if run.trigger in ("follow_up", "steer") and not run.begun:
            # Storage refused to start a queued input: back off instead of spinning.
            self._queue_failures += 1
            self._slot.release()
            if (
                self._queue_failures <= len(QUEUE_RETRY_DELAYS)
                and not self.closed
                and not self._rt.hub.closing
            ):
                self._rt.hub.nursery.start_soon(
                    self._retry_queue, QUEUE_RETRY_DELAYS[self._queue_failures - 1]
                )
            else:
                self.log.log.warning("queued_input_stalled", attempts=self._queue_failures)
            return
        if self._can_take_queue():
            kind, message = self.log.fold.inbox[0]
            follow = self._new_run(kind, self.model)
            self._rt.hub.nursery.start_soon(self._drive, follow, message)
            return
        self._slot.release()

    def _can_take_queue(self) -> bool:
        fold = self.log.fold
        return bool(fold.inbox) and not fold.parked and not self.closed and not self._rt.hub.closing

    def wake(self) -> None:
        """Start the next queued input if idle, and the timers of expiring approvals
        (after a hydrate, or when an input was queued)."""
        self.schedule_expiries()
        if self.active is None and self._can_take_queue():
            self._rt.hub.nursery.start_soon(self._run_queued)

    async def _retry_queue(self, delay: float) -> None:
        await trio.sleep(delay)
        if self.active is None and self._can_take_queue():
            await self._run_queued()

    async def _run_queued(self) -> None:
        if not self._can_take_queue():
            return
        await self._slot.acquire()
        if not self._can_take_queue() or self.active is not None:
            self._slot.release()
            return
        kind, message = self.log.fold.inbox[0]
        run = self._new_run(kind, self.model)
        self._rt.hub.nursery.start_soon(self._drive, run, message)

    # -- the run task ----------------------------------------------------------------

    async def _drive(
        self,
        run: ActiveRun,
        message: Message | None,
        *,
        task_status: Any = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The run task. Runs the session if this store can own it, else follows the
        owner; a run that began records how it ended, even when cancelled."""
        task_status.started()
        status: RunStatus = "aborted"
        error: BaseException | None = RunAborted("the run was aborted")
        watch = trio.CancelScope()
        owned = False
        self.log.outlet = run.outlet

        restarts, cancelled, trigger = 0, False, run.trigger

        def start_watch() -> None:
            self._rt.hub.nursery.start_soon(self.owner.watch, run, watch)

        try:
            with run.scope:
                while True:
                    if await self.owner.take(run, message):
                        owned = True
                        if self.owner.deferred is None:
                            start_watch()
                        if run.handed_over:
                            run.trigger = "follow_up"  # its message waits in the queue
                        try:
                            status = await self._execute(run, message, start_watch)
                        except (LeaseHeld, StartMoved) as exc:
                            restarts, owned = self.owner.start_again(run, exc, restarts), False
                            run.trigger = trigger  # a send handed over is followed to its result
                            continue
                        break
                    followed = await self.owner.follow(run, message)
                    if followed is not None:
                        status = followed
                        break
                error = None
        except Exception as exc:
            status, error = "failed", exc
            if isinstance(exc, SessionReplaced | OwnerTimeout):
                run.raise_error = exc
        except BaseException:  # cancelled by the host: the end is bounded by the grace
            cancelled = True
            raise
        finally:
            watch.cancel()
            with trio.CancelScope(shield=True) as cleanup:
                if cancelled or run.scope.cancel_called:  # else: recorded however long it takes
                    cleanup.deadline = trio.current_time() + self._rt.grace
                try:
                    if not run.remote:
                        # A lease left for a first commit that never came was never written.
                        held = owned and self.owner.deferred is None
                        self.owner.deferred = None
                        await self.ending.finish(run, status, error, owned=held)
                finally:
                    if run.outlet is not None:
                        self.log.flush_display()  # the stream's last item: the final state
                        run.outlet.close()
                    if self.log.outlet is run.outlet:
                        self.log.outlet = None
                    self._run_ended(run)
                    if self.log.replaced:
                        await self.unload("replaced")
                    elif (
                        status == "failed" and run.begun and self._rt.policy.close_session_on_fatal
                    ):
                        await self.unload("fatal")

    async def _execute(
        self, run: ActiveRun, message: Message | None, start_watch: Callable[[], None]
    ) -> RunStatus:
        rt, log = self._rt, self.log
        if run.trigger != "resume":
            await self.ending.settle_previous_run()
            assert message is not None
            output = output_type_name(run.output_type) if run.output_type else None
            lease = self.owner.deferred
            await log.append(
                run.id,
                RunStarted(run.model, run.mode, run.trigger, output),
                MessageAdded(message),
                save=lease is not None,
                lease=KEEP if lease is None else lease,
                snapshot=False,
            )
            run.begun = True
            if lease is not None:
                self.owner.deferred = None
                start_watch()
            self._queue_failures = 0
            log.log.info(
                "run_started", run_id=run.id, model=run.model, mode=run.mode, trigger=run.trigger
            )
            if rt.hooks.has("run_started"):
                await rt.hooks.notify(
                    "run_started",
                    log.disabled_hooks,
                    session_id=log.id,
                    run_id=run.id,
                    model=run.model,
                    mode=run.mode,
                    labels=dict(log.record.labels),
                )
        else:
            await self._recall_output_type(run)
        log.log.debug("run_step", run_id=run.id, trigger=run.trigger)
        answered: list[ToolCallPart] | None = None  # the calls of the answer just given
        while True:
            unresolved = unresolved_calls(await log.messages()) if answered is None else answered
            answered = None
            if unresolved:
                if await self.step.settle(run, unresolved) and log.fold.parked:
                    return "suspended" if log.fold.suspensions else "waiting_approval"
                continue  # calls answered while other calls of this round ran go round again
            steering = [m for kind, m in log.fold.inbox if kind == "steer"]
            if steering:
                await log.append(run.id, *(MessageAdded(m) for m in steering))
            if run.steps >= rt.agent.max_steps:
                raise MaxStepsExceeded(
                    f"the run reached max_steps ({rt.agent.max_steps}) without an answer"
                )
            rt.costs.check(log.run_info(run.id), log.fold.usage)
            run.steps += 1
            assistant = await self.step.model(run)  # carried to the next commit
            if run.output_type is not None:
                if await self.answers.judge(run, assistant):
                    return "completed"
            elif not assistant.tool_calls:
                return "completed"
            if rt.costs.budget != Budget():
                await log.flush(run.id)  # the answer's usage counts before its tools run
            rt.costs.check(log.run_info(run.id), log.fold.usage)
            answered = (
                list(assistant.tool_calls) if log.carrying(run.id) else None
            )  # not in the log yet

    async def _recall_output_type(self, run: ActiveRun) -> None:
        """A resumed run asks for the output type it started with (``send(output_type=)``
        may have named another than the agent's)."""
        events = await self.log.run_events(run.id)
        started = next((e.payload for e in events if isinstance(e.payload, RunStarted)), None)
        if started is None:
            return
        if started.output is None:
            run.output_type = None
        elif run.output_type is None or output_type_name(run.output_type) != started.output:
            found = find_output_type(started.output)
            if found is None:
                raise OutputInvalid(
                    f"the run asked for output type '{started.output}', which this process "
                    "has not imported"
                )
            run.output_type = found

    # -- acting on a session -----------------------------------------------------------

    async def _write(
        self,
        run_id: str | None,
        *payloads: EventPayload,
        still_valid: Any = None,
        save: bool = False,
    ) -> None:
        """Append for a caller (and save the record); a replaced session is unloaded."""
        try:
            await self.log.append(run_id, *payloads, still_valid=still_valid)
            if save:
                await self.log.save_record()
        except SessionReplaced:
            await self.unload("replaced")
            raise

    async def change(self, *payloads: EventPayload) -> None:
        """Append a change of settings (in the active run, if one works) and save the record."""
        self.check_open()
        await self._write(self.active.id if self.active else None, *payloads, save=True)

    async def queue(self, kind: InputKind, message: Message) -> None:
        self.check_open()
        await self._write(self.active.id if self.active else None, InputQueued(kind, message))
        self._queue_failures = 0
        self.wake()

    async def resolve(
        self, approval_id: str, approved: bool, reason: str | None, remember: Remember | None
    ) -> RunResult | None:
        """Approve or deny a pending call; exactly one resolution is ever recorded."""
        self.check_open()
        if remember not in (None, "tool", "category"):
            raise InvalidArgument("remember must be None, 'tool' or 'category'")
        async with self._resolving:
            handle = self.log.fold.pending_approval(approval_id)
            payloads: list[EventPayload] = [
                ApprovalResolved(approval_id, approved, reason, remember)
            ]
            grants = self.log.fold.grants
            if remember is not None:
                grant = _grant_for(handle, remember)
                if grant not in grants:
                    payloads.append(GrantsChanged((*grants, grant)))
            # Another process may have answered it meanwhile: checked again after catching up.
            await self._write(
                handle.run_id or None,
                *payloads,
                still_valid=lambda: self.log.fold.pending_approval(approval_id),
            )
        timer = self._timers.pop(approval_id, None)
        if timer is not None:
            timer.cancel()
        return await self._continue_parked()

    async def resume(self, call_id: str, data: Any) -> RunResult | None:
        self.check_open()
        try:
            value = converter.unstructure(data)
            dumps(value)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"resume data must be JSON-serializable: {exc}") from None
        async with self._resolving:
            handle = self.log.fold.pending_suspension(call_id)
            await self._write(
                handle.run_id or None,
                SuspensionResolved(call_id, value),
                still_valid=lambda: self.log.fold.pending_suspension(call_id),
            )
        return await self._continue_parked()

    async def _continue_parked(self) -> RunResult | None:
        fold = self.log.fold
        if fold.parked or self.active is not None or fold.open_run is None:
            return None
        run = await self.start("resume", None, None)
        result: RunResult | None = await run.wait()
        return result

    async def abort(self) -> bool:
        """Cancel the active run, or end a parked one; whether there was something to end.
        A run another store owns is asked to abort (a control event) and waited for."""
        run = self.active
        if run is None or run.handed_over or self.owner.other_owner() is not None:
            try:
                asked = await self.owner.request_abort()
            except SessionReplaced:
                await self.unload("replaced")
                raise
            if asked is not None:
                return asked
        if run is not None:
            run.scope.cancel()
            with trio.CancelScope(shield=True, deadline=trio.current_time() + self._rt.grace):
                await run.done.wait()
            return True
        if self.log.fold.parked:
            await self.ending.end_parked("aborted", "the run was aborted")
            self.wake()  # queued follow-ups run, as after any other run
            return True
        return False

    async def compact(self, keep: int | None, summarizer: Any) -> ContextCompacted | None:
        """Compact the context between runs (a run in progress finishes first)."""
        self.check_open()
        async with self._slot:
            self.check_open()
            event = await self.step.context.compact(
                None, self.model, keep=keep, summarizer=summarizer
            )
            if event is not None:
                await self.log.save_record()
            return event

    async def btw(self, question: str, model: str | None) -> str:
        self.check_open()
        return await self.step.side_question(question, model or self.model)

    # -- approval timers -----------------------------------------------------------------

    def schedule_expiries(self) -> None:
        """Start a timer for each pending approval that has an expiry."""
        for handle in self.log.fold.pending.values():
            if (
                handle.expires_at is not None
                and handle.approval_id not in self._timers
                and not self.closed
            ):
                scope = trio.CancelScope()
                self._timers[handle.approval_id] = scope
                self._rt.hub.nursery.start_soon(
                    self._expire, handle.approval_id, handle.expires_at, scope
                )

    async def _expire(self, approval_id: str, expires_at: float, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep(max(0.0, expires_at - time.time()))
        if self._timers.get(approval_id) is not scope:
            return  # resolved meanwhile (its resolution cancelled this timer)
        # Forget the timer first: resolving cancels the approval's timer, which must not
        # be the scope this very task would continue the run in.
        del self._timers[approval_id]
        if approval_id in self.log.fold.pending and not self.closed:
            try:
                await self.resolve(approval_id, False, "the approval timed out", None)
            except HarnessError as exc:
                self.log.log.warning("approval_expiry_failed", error=str(exc))

    # -- closing -------------------------------------------------------------------------

    async def shutdown(self, reason: str) -> None:
        """Abort active work, release the sandbox and mark the session closed. A parked
        run is durable state, not active work: it stays parked for any process."""
        if self.closed:
            return
        if self.active is not None:
            await self.abort()
        self.closed = True
        for timer in self._timers.values():
            timer.cancel()
        if self._sandbox is not None:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + self._rt.grace):
                try:
                    await self._sandbox.close(reason)
                except Exception as exc:
                    self.log.log.warning("sandbox_close_failed", error=str(exc))
            self._sandbox = None

    async def unload(self, reason: str) -> None:
        """Unload from the store: shut down, forget, tell subscribers and hooks."""
        if self.closed:
            return
        rt = self._rt
        try:
            await self.shutdown(reason)
        except HarnessError as exc:
            # Closing must not fail because the last write of an aborted run was refused.
            self.log.log.error("session_close_incomplete", error=str(exc))
        self.closed = True
        rt.hub.forget(self.log.id, self)
        rt.hub.publish(StoreEvent("session.closed", self.log.id))
        if rt.hooks.has("session_closed"):
            with trio.CancelScope(shield=True, deadline=trio.current_time() + rt.grace):
                await rt.hooks.notify(
                    "session_closed", self.log.disabled_hooks, session_id=self.log.id, reason=reason
                )


def _grant_for(handle: ApprovalHandle, remember: Remember) -> str:
    if remember == "tool":
        return f"tool:{handle.tool}"
    if not handle.category:
        raise InvalidArgument(f"tool '{handle.tool}' has no category to remember")
    return f"category:{handle.category}"
