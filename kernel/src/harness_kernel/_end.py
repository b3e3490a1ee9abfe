"""How a run ends: what it leaves in the log when it completes, fails, is aborted or
was left behind by a process that died.

Every run that began records its end (``run.finished``), after giving each unanswered
tool call a result and declining what still waited for a person, so the history stays
valid for any model that reads it later.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs

from ._log import KEEP, LeaseChange, SessionLog
from ._policy import sanitize
from ._records import (
    ApprovalResolved,
    ErrorInfo,
    Message,
    MessageAdded,
    RunFinished,
    RunResult,
    RunStatus,
    SuspensionResolved,
    TextPart,
)
from ._runtime import Runtime
from ._step import IN_DOUBT, SUSPENSION_CANCELLED, ActiveRun, Step, unresolved_calls
from .codec import converter
from .errors import HarnessError, PluginError

__all__ = ["RunEnd"]


class RunEnd:
    """The endings of one session's runs."""

    def __init__(
        self, runtime: Runtime, log: SessionLog, step: Step, model: Callable[[], str]
    ) -> None:
        self._rt = runtime
        self.log = log
        self.step = step
        self._model = model

    async def finish(
        self, run: ActiveRun, status: RunStatus, error: BaseException | None, *, owned: bool
    ) -> None:
        log = self.log
        info: ErrorInfo | None = None
        if error is not None:
            info = await self.classify(error)
            log.log.error(
                "run_failed" if status == "failed" else "run_aborted",
                run_id=run.id,
                error=f"{type(error).__name__}: {error}",
                code=info.code,
            )
        if not run.begun or log.replaced:
            # Nothing of this run reached the log (or the log is another session's now).
            run.result = self.result(run, status, info, ())
            if owned and not log.replaced:
                await self.release()
            return
        parked = status in ("waiting_approval", "suspended")
        ended = False
        lease = None if owned else KEEP
        try:
            if not parked:
                if status != "completed":
                    await log.flush(run.id)  # an answer whose calls must get results
                partial = "".join(run.partial_text)
                if partial:
                    await log.append(
                        run.id, MessageAdded(Message("assistant", (TextPart(partial),)))
                    )
                why = "the run was aborted" if status == "aborted" else "the run failed"
                await self.close_open_calls(run, why)
                run.result = await self.record_end(run, status, info, save=True, lease=lease)
                ended = True
            else:
                await log.save_record(lease=lease)
        except HarnessError as exc:
            log.log.error("run_end_not_recorded", run_id=run.id, error=str(exc))
            if info is None and not parked:
                status, info = "failed", await self.classify(exc)  # secrets masked too
        if not ended:
            first = self._first_seq(run)
            run.result = self.result(run, status, info, log.cached_since(first))
        if parked:
            log.log.info("run_parked", run_id=run.id, status=status)

    async def release(self) -> None:
        try:
            await self.log.save_record(lease=None)
        except HarnessError as exc:  # it expires on its own
            self.log.log.warning("lease_not_released", error=str(exc))

    def _first_seq(self, run: ActiveRun) -> int:
        info = self.log.run_info(run.id)
        return info.first_seq if info is not None else self.log.last_seq + 1

    async def close_open_calls(
        self, run: ActiveRun, why: str, *, decline: str | None = None
    ) -> None:
        """Decline what waits, and give every unanswered tool call a result, so the
        history stays valid for models."""
        fold = self.log.fold
        for handle in list(fold.pending.values()):
            await self.log.append(
                run.id, ApprovalResolved(handle.approval_id, False, decline or why)
            )
        for call_id in list(fold.suspensions):
            await self.log.append(run.id, SuspensionResolved(call_id, None, cancelled=True))
        for call in unresolved_calls(await self.log.messages()):
            answer = fold.suspension_results.get(call.call_id)
            if answer is not None and answer.cancelled:
                await self.step.finish_call(run, call, "error", SUSPENSION_CANCELLED)
            elif call.call_id in fold.started:
                await self.step.finish_call(
                    run,
                    call,
                    "error",
                    f"cancelled: {why} while this tool was running (its effects may be partial)",
                )
            else:
                await self.step.finish_call(run, call, "error", f"not run: {why}")

    async def settle_previous_run(self) -> None:
        """Before a new run: end a run left parked (declined) or dangling after a crash."""
        fold = self.log.fold
        if fold.open_run is None:
            return
        if fold.parked:
            await self.end_parked(
                "aborted", "a new user message arrived", decline="interrupted_by_user_message"
            )
            return
        # Started but never finished, and nothing pending: the process died mid-run.
        ghost = ActiveRun(fold.open_run, self._model(), fold.mode, "recover", begun=True)
        for call in unresolved_calls(await self.log.messages()):
            if call.call_id in fold.started:
                await self.step.finish_call(ghost, call, "in_doubt", IN_DOUBT)
            else:
                await self.step.finish_call(
                    ghost, call, "error", "not run: the process stopped before this call ran"
                )
        await self.record_end(
            ghost, "failed", ErrorInfo("run.interrupted", "the process stopped during this run")
        )

    async def end_parked(self, status: RunStatus, why: str, *, decline: str | None = None) -> None:
        """End a run parked on approvals or suspensions: decline them, answer its calls,
        record its end."""
        run = ActiveRun(
            self.log.fold.open_run or "", self._model(), self.log.fold.mode, "end", begun=True
        )
        await self.close_open_calls(run, why, decline=decline)
        code = "run.interrupted" if decline else "run.aborted"
        await self.record_end(run, status, ErrorInfo(code, why), save=True)

    async def record_end(
        self,
        run: ActiveRun,
        status: RunStatus,
        error: ErrorInfo | None,
        *,
        save: bool = False,
        lease: LeaseChange = KEEP,
    ) -> RunResult:
        """Append ``run.finished`` (usage and steps from the log) and tell run_finished hooks.

        With ``save`` the record's snapshot (and ``lease``, as in ``save_record``) goes
        with it, in the same commit where the storage can."""
        log = self.log
        info = log.run_info(run.id, carried=True)  # the answer going with run.finished counts
        usage = info.usage if info is not None else run.usage
        steps = info.steps if info is not None else run.steps
        first = info.first_seq if info is not None else log.last_seq + 1
        timed = run.trigger not in ("end", "recover")
        duration = (time.perf_counter() - run.started) * 1000 if timed else 0.0
        output = converter.unstructure(run.output) if run.output is not None else None
        await log.append(
            run.id,
            RunFinished(status, usage, error, duration, steps, output),
            save=save,
            lease=lease,
        )
        result = self.result(run, status, error, await log.messages_since(first))
        log.log.info(
            "run_finished",
            run_id=run.id,
            status=status,
            duration_ms=round(duration, 3),
            usage=attrs.asdict(usage),
            steps=steps,
        )
        if self._rt.hooks.has("run_finished"):
            await self._rt.hooks.notify(
                "run_finished", log.disabled_hooks, session_id=log.id, run_id=run.id, result=result
            )
        return result

    def result(
        self,
        run: ActiveRun,
        status: RunStatus,
        error: ErrorInfo | None,
        messages: tuple[Message, ...],
    ) -> RunResult:
        last_assistant = next((m for m in reversed(messages) if m.role == "assistant"), None)
        info = self.log.run_info(run.id)
        return RunResult(
            session_id=self.log.id,
            run_id=run.id,
            status=status,
            text=last_assistant.text if last_assistant else "",
            messages=messages,
            tool_calls=tuple(c for m in messages for c in m.tool_calls),
            usage=info.usage if info is not None else run.usage,
            error=error,
            duration_ms=(time.perf_counter() - run.started) * 1000,
            output=run.output,
        )

    async def classify(self, error: BaseException) -> ErrorInfo:
        """The ErrorInfo users see: a classify_error hook's, else the sanitized one; known
        secret values are masked either way (a provider may put its key in a message)."""
        rt = self._rt
        info: ErrorInfo | None = None
        if rt.hooks.has("classify_error"):
            try:
                custom, _ = await rt.hooks.first(
                    "classify_error", error=error, session_id=self.log.id
                )
            except PluginError as exc:
                self.log.log.error("hook_failed", hook="classify_error", error=str(exc))
                custom = None
            if isinstance(custom, ErrorInfo):
                info = custom
        if info is None:
            info = sanitize(error, rt.policy)
        scrub = rt.redactor.scrub
        return attrs.evolve(
            info, message=scrub(info.message), stack=scrub(info.stack) if info.stack else None
        )
