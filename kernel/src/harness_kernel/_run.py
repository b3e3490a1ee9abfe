"""The run loop: model step, tool calls, approvals; what to do next comes from the log.

A run looks at the session's history to decide its next step: if the last assistant
message has tool calls without results, it settles them (run, deny, or park on an
approval); otherwise it calls the model. That is what lets a parked run continue in
another process: the log holds everything the loop needs.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from ._agent import InstructionsContext
from ._logging import shape
from ._policy import sanitize
from ._records import (
    ApprovalRequested,
    ApprovalResolved,
    ErrorInfo,
    EventPayload,
    Message,
    MessageAdded,
    RunFinished,
    RunResult,
    RunStarted,
    SuspensionRequested,
    SuspensionResolved,
    TextPart,
    ToolCallPart,
    ToolFinished,
    ToolResultPart,
    ToolStarted,
    Usage,
    UsageRecorded,
    new_id,
)
from ._session import ActiveRun, Session
from ._tools import SuspendRun, Tool, ToolContext, render_result
from .contracts import (
    Finish,
    ModelRequest,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from .errors import (
    ContextProviderFailed,
    HarnessError,
    MaxStepsExceeded,
    PluginError,
    ProviderError,
    RunAborted,
    ToolArgumentsInvalid,
)

__all__ = ["drive", "end_parked_run"]

SUSPENSION_CANCELLED = "cancelled: the run ended before anyone resumed this call"
IN_DOUBT = (
    "in doubt: the process stopped while this tool was running; it may or may not have "
    "taken effect, and it was not run again"
)


async def drive(
    session: Session, run: ActiveRun, message: Message | None, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """The run task. Always records how the run ended, even when cancelled."""
    task_status.started()
    status: str = "aborted"
    error: BaseException | None = RunAborted("the run was aborted")
    try:
        with run.scope:
            status = await _execute(session, run, message)
            error = None
    except Exception as exc:
        status, error = "failed", exc
    finally:
        with trio.CancelScope(shield=True) as cleanup:
            cleanup.deadline = trio.current_time() + session.runtime.grace
            try:
                await _finish(session, run, status, error)
            finally:
                if run.channel is not None:
                    run.channel.close()
                session.run_ended(run)
                if status == "failed" and session.runtime.policy.close_session_on_fatal:
                    from ._store import close_session

                    await close_session(session.runtime, session, "fatal")


async def _execute(session: Session, run: ActiveRun, message: Message | None) -> str:
    rt = session.runtime
    if run.trigger != "resume":
        await _settle_previous_run(session)
        assert message is not None
        await session.append(run, RunStarted(run.model, run.mode, run.trigger), MessageAdded(message))
        if rt.hooks.has("run_started"):
            await rt.hooks.notify(
                "run_started", session.disabled_hooks, session_id=session.id, run_id=run.id,
                model=run.model, mode=run.mode, labels=dict(session.labels),
            )
    session.log.debug("run_step", session_id=session.id, run_id=run.id, trigger=run.trigger)
    while True:
        unresolved = _unresolved_calls(session)
        if unresolved:
            if await _settle_tool_calls(session, run, unresolved) and session.parked:
                return "suspended" if session.pending_suspensions else "waiting_approval"
            # Parked calls answered while other calls of this round ran go round again.
            continue
        steering = session.take_steering()
        if steering:
            await session.append(run, *(MessageAdded(m) for m in steering))
        if run.steps >= rt.agent.max_steps:
            raise MaxStepsExceeded(f"the run reached max_steps ({rt.agent.max_steps}) without an answer")
        run.steps += 1
        assistant = await _model_step(session, run)
        if not assistant.tool_calls:
            return "completed"


def _unresolved_calls(session: Session) -> list[ToolCallPart]:
    """Tool calls of the last assistant message that have no result yet."""
    messages = session.messages
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.role == "assistant":
            calls = message.tool_calls
            if not calls:
                return []
            answered = {
                p.call_id
                for m in messages[index + 1 :]
                for p in m.parts
                if isinstance(p, ToolResultPart)
            }
            return [c for c in calls if c.call_id not in answered]
        if message.role == "user":
            return []
    return []


# -- the model step --------------------------------------------------------------------


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _build_request(
    session: Session, run_id: str, model: str, *, messages: tuple[Message, ...] | None = None, tools: bool = True
) -> ModelRequest:
    """The request for a model step (or, with ``messages`` and no tools, a side question)."""
    rt = session.runtime
    agent = rt.agent
    mode = agent.mode(session.mode)
    ictx = InstructionsContext(
        session.id, run_id, session.mode, model, session.state, session.labels, rt.resources
    )
    instructions = mode.instructions if mode is not None and mode.instructions is not None else agent.instructions
    text = await _maybe_await(instructions(ictx)) if callable(instructions) else instructions
    sections = [text] if text else []
    for provider in agent.context_providers:
        try:
            rendered = await _maybe_await(provider.render(ictx))
        except Exception as exc:
            if provider.required or rt.policy.context_failure == "fail":
                raise ContextProviderFailed(f"context provider '{provider.name}' failed") from exc
            session.log.warning(
                "context_provider_skipped", session_id=session.id, run_id=run_id,
                provider=provider.name, error=f"{type(exc).__name__}: {exc}",
            )
            continue
        if rendered:
            sections.append(str(rendered))
    _, specs = rt.mode_tools(session.mode)
    _, model_name = rt.resolve_model(model)
    return ModelRequest(
        model=model_name,
        messages=tuple(session.messages) if messages is None else messages,
        system="\n\n".join(sections),
        tools=specs if tools else (),
        settings=agent.model_settings,
        session_id=session.id,
        run_id=run_id or None,
    )


class _Assembly:
    """Collects one model response from its stream events."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[str, tuple[str, list[str]]] = {}
        self.usage: Usage | None = None
        self.finish: str | None = None
        self.visible = False

    def feed(self, event: Any) -> None:
        if isinstance(event, TextDelta):
            if event.text:
                self.text.append(event.text)
                self.visible = True
        elif isinstance(event, ToolCallStart):
            self.calls.setdefault(event.call_id, (event.name, []))
            self.visible = True
        elif isinstance(event, ToolCallDelta):
            self.calls.setdefault(event.call_id, ("", []))[1].append(event.arguments)
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, Finish):
            self.finish = event.reason


@asynccontextmanager
async def _aclosing(iterator: AsyncIterator[Any]) -> AsyncIterator[AsyncIterator[Any]]:
    try:
        yield iterator
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + 5):
                await close()


async def _model_step(session: Session, run: ActiveRun) -> Message:
    rt = session.runtime
    request = await _build_request(session, run.id, run.model)
    if rt.hooks.has("before_model_call"):
        request = await rt.hooks.chain(
            "before_model_call", "request", request, session_id=session.id, run_id=run.id
        )
    provider, _ = rt.resolve_model(run.model)
    attempt = 1
    while True:
        assembly = _Assembly()
        run.partial_text = assembly.text
        try:
            async with _aclosing(provider.stream(request)) as events:
                async for event in events:
                    assembly.feed(event)
                    if isinstance(event, TextDelta | ToolCallStart | ToolCallDelta | ToolCallEnd):
                        await session.emit_delta(run, event)
            break
        except ProviderError as exc:
            # Retry only while nothing of this attempt reached anyone.
            delay = None if assembly.visible else rt.retry.next_delay(exc, attempt)
            if delay is None:
                raise
            session.log.warning(
                "model_call_retry", session_id=session.id, run_id=run.id, attempt=attempt,
                delay=delay, error=exc.code,
            )
            await trio.sleep(delay)
            attempt += 1

    parts: list[Any] = []
    text = "".join(assembly.text)
    if text:
        parts.append(TextPart(text))
    for call_id, (name, fragments) in assembly.calls.items():
        raw = "".join(fragments).strip() or "{}"
        try:
            arguments = json.loads(raw)
            if not isinstance(arguments, dict):
                raise ValueError("not an object")
        except ValueError:
            arguments = {}
            run.invalid_arguments[call_id] = (
                f"invalid arguments for '{name}': not a JSON object (the response may have been cut off"
                f"{'; finish reason: ' + assembly.finish if assembly.finish else ''})"
            )
        parts.append(ToolCallPart(call_id, name, arguments))
    assistant = Message("assistant", tuple(parts))
    payloads: list[EventPayload] = []
    if assembly.usage is not None:
        run.usage = run.usage + assembly.usage
        payloads.append(UsageRecorded(assembly.usage, run.model))
    payloads.append(MessageAdded(assistant))
    run.partial_text = []
    await session.append(run, *payloads)
    if rt.hooks.has("after_model_call"):
        await rt.hooks.notify(
            "after_model_call", session.disabled_hooks, session_id=session.id, run_id=run.id,
            request=request, text=text, tool_calls=list(assistant.tool_calls),
        )
    return assistant


# -- tool calls --------------------------------------------------------------------------


def _policy_decision(session: Session, tool: Tool, arguments: dict[str, Any]) -> str:
    """Deny rule, then a session grant, then the mode's policy, then the tool's own."""
    agent = session.runtime.agent
    if tool.name in agent.deny or (tool.category and f"category:{tool.category}" in agent.deny):
        return "deny"
    grants = session.grants
    if f"tool:{tool.name}" in grants or (tool.category and f"category:{tool.category}" in grants):
        return "auto"
    mode = agent.mode(session.mode)
    policy = mode.approval if mode is not None and mode.approval is not None else tool.approval
    try:
        decision = policy(arguments) if callable(policy) else policy
    except Exception as exc:
        session.log.error("approval_policy_failed", tool=tool.name, error=f"{type(exc).__name__}: {exc}")
        return "deny"  # a policy that cannot decide must not let the call through
    if decision not in ("auto", "ask", "deny"):
        session.log.error("approval_policy_invalid", tool=tool.name, decision=repr(decision))
        return "deny"
    return str(decision)


async def _settle_tool_calls(session: Session, run: ActiveRun, calls: list[ToolCallPart]) -> bool:
    """Run, deny or park each call in order. True if some call waits for approval."""
    rt = session.runtime
    tools, _ = rt.mode_tools(session.mode)
    parked = False
    for call in calls:
        if call.call_id in session.started_tools:
            answer = session.suspension_result(call.call_id)
            if answer is not None:
                if answer.cancelled:
                    await _finish_call(session, run, call, "error", SUSPENSION_CANCELLED)
                else:
                    await _finish_call(session, run, call, "ok", render_result(answer.data))
            elif session.suspension_for(call.call_id) is not None:
                parked = True
            else:
                await _finish_call(session, run, call, "in_doubt", IN_DOUBT)
            continue
        tool = tools.get(call.name)
        if tool is None:
            known = ", ".join(sorted(tools)) or "none"
            await _finish_call(session, run, call, "error", f"unknown tool '{call.name}' (available: {known})")
            continue
        if call.call_id in run.invalid_arguments:
            await _finish_call(session, run, call, "invalid_arguments", run.invalid_arguments.pop(call.call_id))
            continue
        try:
            arguments = tool.validate(call.arguments)
        except ToolArgumentsInvalid as exc:
            await _finish_call(session, run, call, "invalid_arguments", str(exc))
            continue
        decision = _policy_decision(session, tool, arguments)
        if decision == "deny":
            await _finish_call(session, run, call, "denied", f"tool '{tool.name}' is not allowed here (denied by policy)")
            continue
        if decision == "ask":
            resolution = session.resolution(call.call_id)
            if resolution is None:
                if session.pending_for_call(call.call_id) is None:
                    expires = time.time() + tool.approval_timeout if tool.approval_timeout else None
                    await session.append(
                        run,
                        ApprovalRequested(new_id("apr"), call.call_id, tool.name, call.arguments, tool.category, expires),
                    )
                parked = True
                continue
            if not resolution.approved:
                reason = resolution.reason or "denied by the user"
                await _finish_call(session, run, call, "denied", f"the user denied this call: {reason}")
                continue
        if rt.hooks.has("before_tool_call"):
            try:
                veto, _plugin = await rt.hooks.first(
                    "before_tool_call", session_id=session.id, run_id=run.id, tool=tool.name,
                    arguments=arguments, category=tool.category,
                )
            except PluginError as exc:
                session.log.error("hook_failed", hook="before_tool_call", error=str(exc), session_id=session.id)
                veto = "a policy check failed, so the call was not run"
            if veto is not None:
                await _finish_call(session, run, call, "denied", f"denied: {veto}")
                continue
        if await _run_tool(session, run, call, tool, arguments):
            parked = True
    return parked


async def _run_tool(
    session: Session, run: ActiveRun, call: ToolCallPart, tool: Tool, arguments: dict[str, Any]
) -> bool:
    """Execute one call; True if the tool suspended the run."""
    rt = session.runtime
    await session.append(run, ToolStarted(call.call_id, tool.name, call.arguments))
    started = time.perf_counter()
    ctx = ToolContext(
        session_id=session.id, run_id=run.id, call_id=call.call_id, tool_name=tool.name,
        sandbox=await session.sandbox(), resources=rt.resources, labels=session.labels,
        state=session.state, log=session.log.bind(session_id=session.id, run_id=run.id, tool=tool.name),
        suspend=_suspend,
    )
    session.log.info(
        "tool_started", session_id=session.id, run_id=run.id, tool=tool.name,
        arguments=shape(dict(call.arguments)),
    )
    try:
        content, outcome = await tool.invoke(ctx, arguments), "ok"
    except SuspendRun as suspension:
        await session.append(run, SuspensionRequested(call.call_id, tool.name, suspension.payload))
        session.log.info("tool_suspended", session_id=session.id, run_id=run.id, tool=tool.name)
        return True
    except HarnessError as exc:
        content, outcome = str(exc), "error"
    except Exception as exc:
        error = sanitize(exc, rt.policy)
        detail = f"{type(exc).__name__}: {exc}"
        for value in _strings(call.arguments):
            detail = detail.replace(value, "[argument]")
        session.log.error("tool_failed", session_id=session.id, run_id=run.id, tool=tool.name, error=detail)
        content, outcome = f"tool '{tool.name}' failed: {error.message}", "error"
    await _finish_call(session, run, call, outcome, content, duration_ms=(time.perf_counter() - started) * 1000)
    return False


async def _suspend(payload: Any) -> Any:
    from .codec import converter, dumps

    data = converter.unstructure(payload)
    try:
        dumps(data)
    except (TypeError, ValueError) as exc:
        raise ToolArgumentsInvalid(f"suspension payload must be JSON-serializable: {exc}") from None
    raise SuspendRun(data)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if len(value) >= 4 else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


async def _finish_call(
    session: Session, run: ActiveRun | None, call: ToolCallPart, outcome: str, content: str,
    *, duration_ms: float = 0.0,
) -> None:
    rt = session.runtime
    is_error = outcome != "ok"
    result = ToolResultPart(call.call_id, content, is_error)
    await session.append(run, ToolFinished(call.call_id, call.name, outcome, result, duration_ms=duration_ms))
    session.log.info(
        "tool_finished", session_id=session.id, run_id=run.id if run else None, tool=call.name,
        outcome=outcome, duration_ms=round(duration_ms, 3),
    )
    if rt.hooks.has("after_tool_call"):
        await rt.hooks.notify(
            "after_tool_call", session.disabled_hooks, session_id=session.id,
            run_id=run.id if run else session.open_run, tool=call.name, call_id=call.call_id,
            outcome=outcome, is_error=is_error,
        )


# -- ending runs -------------------------------------------------------------------------


async def _close_open_calls(session: Session, run: ActiveRun | None, why: str) -> None:
    """Give every unanswered tool call a result, so the history stays valid for models."""
    for call in _unresolved_calls(session):
        answer = session.suspension_result(call.call_id)
        if answer is not None and answer.cancelled:
            await _finish_call(session, run, call, "error", SUSPENSION_CANCELLED)
        elif call.call_id in session.started_tools:
            await _finish_call(
                session, run, call, "error", f"cancelled: {why} while this tool was running (its effects may be partial)"
            )
        else:
            await _finish_call(session, run, call, "error", f"not run: {why}")


async def _settle_previous_run(session: Session) -> None:
    """Before a new run: end a run left parked (declined) or dangling after a crash."""
    if session.open_run is None:
        return
    if session.parked:
        await end_parked_run(session, "aborted", "a new user message arrived", decline="interrupted_by_user_message")
        return
    # Started but never finished, and nothing pending: the process died mid-run.
    ghost = ActiveRun(session.open_run, session.model, session.mode, "recover")
    for call in _unresolved_calls(session):
        outcome = "in_doubt" if call.call_id in session.started_tools else "error"
        content = IN_DOUBT if outcome == "in_doubt" else "not run: the process stopped before this call ran"
        await _finish_call(session, ghost, call, outcome, content)
    error = ErrorInfo("run.interrupted", "the process stopped during this run")
    await _record_end(session, ghost, "failed", error)


async def end_parked_run(session: Session, status: str, why: str, *, decline: str | None = None) -> None:
    """End a run parked on approvals: decline them, answer its calls, record its end."""
    run = ActiveRun(session.open_run or "", session.model, session.mode, "end")
    for handle in session.pending_approvals:
        await session.append(run, ApprovalResolved(handle.approval_id, False, decline or why))
    for suspension in session.pending_suspensions:
        await session.append(run, SuspensionResolved(suspension.call_id, None, cancelled=True))
    await _close_open_calls(session, run, why)
    code = "run.interrupted" if decline else "run.aborted"
    await _record_end(session, run, status, ErrorInfo(code, why))
    await session.save_record()


async def _record_end(session: Session, run: ActiveRun, status: str, error: ErrorInfo | None) -> RunResult:
    """Append ``run.finished`` (usage and steps from the log) and tell run_finished hooks."""
    summary = session.run_summary(run.id)
    usage = summary.usage if summary is not None else run.usage
    steps = summary.steps if summary is not None else run.steps
    duration = (time.perf_counter() - run.started) * 1000 if run.trigger not in ("end", "recover") else 0.0
    await session.append(run, RunFinished(status, usage, error, duration, steps))
    result = _result(session, run, status, error)
    rt = session.runtime
    if rt.hooks.has("run_finished"):
        await rt.hooks.notify("run_finished", session.disabled_hooks, session_id=session.id, run_id=run.id, result=result)
    return result


def _result(session: Session, run: ActiveRun, status: str, error: ErrorInfo | None) -> RunResult:
    messages = session.messages_of(run.id)
    last_assistant = next((m for m in reversed(messages) if m.role == "assistant"), None)
    summary = session.run_summary(run.id)
    return RunResult(
        session_id=session.id,
        run_id=run.id,
        status=status,  # type: ignore[arg-type]
        text=last_assistant.text if last_assistant else "",
        messages=messages,
        tool_calls=tuple(c for m in messages for c in m.tool_calls),
        usage=summary.usage if summary is not None else run.usage,
        error=error,
        duration_ms=(time.perf_counter() - run.started) * 1000,
    )


async def _finish(session: Session, run: ActiveRun, status: str, error: BaseException | None) -> None:
    rt = session.runtime
    info: ErrorInfo | None = None
    if error is not None:
        info = await _classify(session, error)
        session.log.error(
            "run_failed" if status == "failed" else "run_aborted", session_id=session.id, run_id=run.id,
            error=f"{type(error).__name__}: {error}", code=info.code,
        )
    parked = status in ("waiting_approval", "suspended")
    ended = False
    try:
        if not parked:
            partial = "".join(run.partial_text)
            if partial:
                await session.append(run, MessageAdded(Message("assistant", (TextPart(partial),))))
            why = "the run was aborted" if status == "aborted" else "the run failed"
            for handle in session.pending_approvals:  # asked while other calls still ran
                await session.append(run, ApprovalResolved(handle.approval_id, False, why))
            for suspension in session.pending_suspensions:
                await session.append(run, SuspensionResolved(suspension.call_id, None, cancelled=True))
            await _close_open_calls(session, run, why)
            run.result = await _record_end(session, run, status, info)
            ended = True
        await session.save_record()
    except HarnessError as exc:
        session.log.error("run_end_not_recorded", session_id=session.id, run_id=run.id, error=str(exc))
        if info is None and not parked:
            status, info = "failed", sanitize(exc, rt.policy)
    if not ended:
        run.result = _result(session, run, status, info)


async def side_question(session: Session, question: str, model: str) -> str:
    """Ask the model about a snapshot of the history, with no tools; append nothing."""
    provider, _ = session.runtime.resolve_model(model)
    history = list(session.messages)
    # Cut an unfinished tool round off the snapshot: models refuse calls without results.
    for index in range(len(history) - 1, -1, -1):
        if history[index].role == "assistant" and history[index].tool_calls:
            answered = {p.call_id for m in history[index + 1 :] for p in m.parts if isinstance(p, ToolResultPart)}
            if any(c.call_id not in answered for c in history[index].tool_calls):
                history = history[:index]
            break
    request = await _build_request(session, "", model, messages=(*history, Message.user(question)), tools=False)
    assembly = _Assembly()
    async with _aclosing(provider.stream(request)) as events:
        async for event in events:
            assembly.feed(event)
    return "".join(assembly.text)


async def _classify(session: Session, error: BaseException) -> ErrorInfo:
    """The ErrorInfo users see: a classify_error hook's, else the sanitized one; known
    secret values are masked either way (a provider may put its key in a message)."""
    info = await _classify_raw(session, error)
    scrub = session.runtime.redactor.scrub
    return attrs.evolve(info, message=scrub(info.message), stack=scrub(info.stack) if info.stack else None)


async def _classify_raw(session: Session, error: BaseException) -> ErrorInfo:
    rt = session.runtime
    if rt.hooks.has("classify_error"):
        try:
            custom, _ = await rt.hooks.first("classify_error", error=error, session_id=session.id)
        except PluginError as exc:
            session.log.error("hook_failed", hook="classify_error", error=str(exc))
            custom = None
        if isinstance(custom, ErrorInfo):
            return custom
    return sanitize(error, rt.policy)
