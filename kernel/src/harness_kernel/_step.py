"""One step of a run: the model call, then the tool calls it asked for.

``Step`` works on a session's log and the store's runtime only. What to do next is
read from the log: tool calls of the last assistant message without results are
settled (run, denied, or parked on an approval), and only then is the model called.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import attrs
import trio

from ._agent import InstructionsContext
from ._compact import Context
from ._log import Outlet, SessionLog
from ._logging import shape
from ._outbound import model_call
from ._policy import sanitize
from ._records import (
    ApprovalRequested,
    EventPayload,
    Message,
    MessageAdded,
    ReasoningPart,
    SuspensionRequested,
    TextPart,
    ToolCallPart,
    ToolFinished,
    ToolOutcome,
    ToolResultPart,
    ToolStarted,
    Usage,
    UsageRecorded,
    new_id,
)
from ._runtime import Runtime
from ._tools import SuspendRun, Tool, ToolContext, render_result
from .codec import converter, dumps
from .contracts import (
    Finish,
    ModelRequest,
    ReasoningDelta,
    ReasoningEnd,
    SandboxSession,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from .errors import (
    ContextProviderFailed,
    HarnessError,
    PluginError,
    ProviderError,
    ToolArgumentsInvalid,
)

__all__ = ["IN_DOUBT", "SUSPENSION_CANCELLED", "ActiveRun", "Step", "unresolved_calls"]

SUSPENSION_CANCELLED: Final = "cancelled: the run ended before anyone resumed this call"
IN_DOUBT: Final = (
    "in doubt: the process stopped while this tool was running; it may or may not have "
    "taken effect, and it was not run again"
)


@attrs.define(eq=False)
class ActiveRun:
    """The in-memory side of a run while its task is alive."""

    id: str
    model: str
    mode: str
    trigger: str
    outlet: Outlet | None = None
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    done: trio.Event = attrs.Factory(trio.Event)
    result: Any = None
    started: float = attrs.Factory(time.perf_counter)
    begun: bool = False
    """``run.started`` is in the log (a run that never began records no end)."""
    remote: bool = False
    """Another store ran it: ``result`` was read from the log."""
    handed_over: bool = False
    """Its message was queued for another store (the owner) to run."""
    raise_error: BaseException | None = None
    """An error the caller gets raised instead of a result (``SessionReplaced``, ``OwnerTimeout``)."""
    partial_text: list[str] = attrs.Factory(list)
    steps: int = 0
    usage: Usage = Usage()
    invalid_arguments: dict[str, str] = attrs.Factory(dict)
    output_type: type | None = None
    """The type the answer must have (``RunResult.output``), if the run asked for one."""
    output: Any = None
    output_failures: int = 0

    async def wait(self) -> Any:
        await self.done.wait()
        return self.result


def unresolved_calls(messages: Sequence[Message]) -> list[ToolCallPart]:
    """Tool calls of the last assistant message that have no result yet."""
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


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


@asynccontextmanager
async def _aclosing(iterator: AsyncIterator[Any]) -> AsyncIterator[AsyncIterator[Any]]:
    try:
        yield iterator
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + 5):
                await close()


class _Assembly:
    """Collects one model response from its stream events."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[str, tuple[str, list[str]]] = {}
        self.usage: Usage | None = None
        self.finish: str | None = None
        self.visible = False
        self.reasoning: list[ReasoningPart] = []
        self._thinking: list[str] | None = None  # the open reasoning block's fragments
        self._summary = False
        self._unended = False  # the last block was closed by text, not by its end

    def feed(self, event: Any) -> None:
        if isinstance(event, ReasoningDelta):
            if self._thinking is None:
                self._thinking, self._summary, self._unended = [], event.summary, False
            self._thinking.append(event.text)
            self.visible = self.visible or bool(event.text)
            return
        if isinstance(event, ReasoningEnd):
            if self._thinking is None and self._unended:  # its end came after the text began
                text, summary = self.reasoning.pop().text, self._summary
            else:
                text, summary = (
                    "".join(self._thinking or ()),
                    self._summary if self._thinking is not None else False,
                )
            self.reasoning.append(
                ReasoningPart(
                    text,
                    summary,
                    event.signature,
                    event.encrypted,
                    event.redacted,
                    event.id,
                    event.source,
                )
            )
            self._thinking, self._unended = None, False
            return
        if self._thinking is not None:  # text or a call ends a block the API never closed
            self.reasoning.append(ReasoningPart("".join(self._thinking), self._summary))
            self._thinking, self._unended = None, True
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


class Step:
    """Model calls and tool calls of one session's runs."""

    def __init__(
        self, runtime: Runtime, log: SessionLog, workspace: Callable[[], Awaitable[SandboxSession]]
    ) -> None:
        self._rt = runtime
        self._log = log
        self._workspace = workspace
        self.context = Context(runtime, log)

    # -- the model call --------------------------------------------------------------

    async def request(
        self,
        run_id: str,
        model: str,
        *,
        messages: tuple[Message, ...] | None = None,
        tools: bool = True,
    ) -> ModelRequest:
        """The request for a model step (or, with ``messages`` and no tools, a side question)."""
        rt, log = self._rt, self._log
        agent = rt.agent
        mode_name = log.fold.mode
        mode = agent.mode(mode_name)
        ictx = InstructionsContext(
            log.id,
            run_id,
            mode_name,
            model,
            log.state_value(agent.state),
            log.record.labels,
            rt.resources,
        )
        instructions = (
            mode.instructions
            if mode is not None and mode.instructions is not None
            else agent.instructions
        )
        text = await _maybe_await(instructions(ictx)) if callable(instructions) else instructions
        sections = [text] if text else []
        for provider in agent.context_providers:
            try:
                rendered = await _maybe_await(provider.render(ictx))
            except Exception as exc:
                if provider.required or rt.policy.context_failure == "fail":
                    raise ContextProviderFailed(
                        f"context provider '{provider.name}' failed"
                    ) from exc
                log.log.warning(
                    "context_provider_skipped",
                    run_id=run_id,
                    provider=provider.name,
                    error=f"{type(exc).__name__}: {exc}",
                )
                continue
            if rendered:
                sections.append(str(rendered))
        _, specs = rt.mode_tools(mode_name)
        _, model_name = rt.resolve_model(model)
        return ModelRequest(
            model=model_name,
            messages=await self.context.messages() if messages is None else messages,
            system="\n\n".join(sections),
            tools=specs if tools else (),
            settings=agent.model_settings,
            session_id=log.id,
            run_id=run_id or None,
        )

    async def model(self, run: ActiveRun) -> Message:
        """Call the model (retrying while nothing reached anyone); carry its answer."""
        rt, log = self._rt, self._log
        provider, _ = rt.resolve_model(run.model)
        request = await self.context.prepare(run, await self.request(run.id, run.model))
        if rt.hooks.has("before_model_call"):
            request = await rt.hooks.chain(
                "before_model_call", "request", request, session_id=log.id, run_id=run.id
            )
        attempt = 1
        while True:
            assembly = _Assembly()
            run.partial_text = assembly.text
            try:
                async with (
                    model_call(rt.hooks, log.disabled_hooks, log.id, run.id, run.model),
                    _aclosing(provider.stream(request)) as events,
                ):
                    async for event in events:
                        assembly.feed(event)
                        if isinstance(
                            event,
                            TextDelta
                            | ReasoningDelta
                            | ToolCallStart
                            | ToolCallDelta
                            | ToolCallEnd,
                        ):
                            await log.delta(event)
                break
            except ProviderError as exc:
                delay = None if assembly.visible else rt.retry.next_delay(exc, attempt)
                if delay is None:
                    raise
                log.log.warning(
                    "model_call_retry", run_id=run.id, attempt=attempt, delay=delay, error=exc.code
                )
                await trio.sleep(delay)
                attempt += 1

        assembly.feed(None)  # closes a reasoning block still open at the end
        parts: list[Any] = list(assembly.reasoning)
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
        usage = None if assembly.usage is None else rt.costs.priced(run.model, assembly.usage)
        if usage is not None:
            self.context.measured(request, usage)
            run.usage = run.usage + usage
            payloads.append(UsageRecorded(usage, run.model))
        payloads.append(MessageAdded(assistant))
        run.partial_text = []
        log.carry(run.id, *payloads)  # one commit per step: with what the run does next
        if rt.hooks.has("after_model_call"):
            await rt.hooks.notify(
                "after_model_call",
                log.disabled_hooks,
                session_id=log.id,
                run_id=run.id,
                request=request,
                text=text,
                tool_calls=list(assistant.tool_calls),
                usage=usage,
                finish_reason=assembly.finish,
            )
        return assistant

    async def side_question(self, question: str, model: str) -> str:
        """Ask the model about a snapshot of the history, with no tools; append nothing."""
        provider, _ = self._rt.resolve_model(model)
        history = list(await self.context.messages())
        # Cut an unfinished tool round off the snapshot: models refuse calls without results.
        for index in range(len(history) - 1, -1, -1):
            if history[index].role == "assistant" and history[index].tool_calls:
                answered = {
                    p.call_id
                    for m in history[index + 1 :]
                    for p in m.parts
                    if isinstance(p, ToolResultPart)
                }
                if any(c.call_id not in answered for c in history[index].tool_calls):
                    history = history[:index]
                break
        request = await self.request(
            "", model, messages=(*history, Message.user(question)), tools=False
        )
        assembly = _Assembly()
        async with (
            model_call(self._rt.hooks, self._log.disabled_hooks, self._log.id, "", model),
            _aclosing(provider.stream(request)) as events,
        ):
            async for event in events:
                assembly.feed(event)
        return "".join(assembly.text)

    # -- tool calls ------------------------------------------------------------------

    def _decision(self, tool: Tool, arguments: dict[str, Any]) -> str:
        """Deny rule, then a session grant, then the mode's policy, then the tool's own."""
        agent, fold = self._rt.agent, self._log.fold
        if tool.name in agent.deny or (tool.category and f"category:{tool.category}" in agent.deny):
            return "deny"
        if f"tool:{tool.name}" in fold.grants or (
            tool.category and f"category:{tool.category}" in fold.grants
        ):
            return "auto"
        mode = agent.mode(fold.mode)
        policy = mode.approval if mode is not None and mode.approval is not None else tool.approval
        try:
            decision = policy(arguments) if callable(policy) else policy
        except Exception as exc:
            self._log.log.error(
                "approval_policy_failed", tool=tool.name, error=f"{type(exc).__name__}: {exc}"
            )
            return "deny"  # a policy that cannot decide must not let the call through
        if decision not in ("auto", "ask", "deny"):
            self._log.log.error("approval_policy_invalid", tool=tool.name, decision=repr(decision))
            return "deny"
        return str(decision)

    async def settle(self, run: ActiveRun, calls: list[ToolCallPart]) -> bool:
        """Run, deny or park each call in order. True if some call waits for a person."""
        rt, fold = self._rt, self._log.fold
        tools, _ = rt.mode_tools(fold.mode)
        parked = False
        for call in calls:
            if call.call_id in fold.started:
                answer = fold.suspension_results.get(call.call_id)
                if answer is not None:
                    if answer.cancelled:
                        await self.finish_call(run, call, "error", SUSPENSION_CANCELLED)
                    else:
                        await self.finish_call(run, call, "ok", render_result(answer.data))
                elif call.call_id in fold.suspensions:
                    parked = True
                else:
                    await self.finish_call(run, call, "in_doubt", IN_DOUBT)
                continue
            tool = tools.get(call.name)
            if tool is None:
                known = ", ".join(sorted(tools)) or "none"
                await self.finish_call(
                    run, call, "error", f"unknown tool '{call.name}' (available: {known})"
                )
                continue
            if call.call_id in run.invalid_arguments:
                await self.finish_call(
                    run, call, "invalid_arguments", run.invalid_arguments.pop(call.call_id)
                )
                continue
            try:
                arguments = tool.validate(call.arguments)
            except ToolArgumentsInvalid as exc:
                await self.finish_call(run, call, "invalid_arguments", str(exc))
                continue
            decision = self._decision(tool, arguments)
            if decision == "deny":
                await self.finish_call(
                    run,
                    call,
                    "denied",
                    f"tool '{tool.name}' is not allowed here (denied by policy)",
                )
                continue
            if decision == "ask":
                resolution = fold.resolutions.get(call.call_id)
                if resolution is None:
                    if not any(h.tool_call_id == call.call_id for h in fold.pending.values()):
                        expires = (
                            time.time() + tool.approval_timeout if tool.approval_timeout else None
                        )
                        await self._log.append(
                            run.id,
                            ApprovalRequested(
                                new_id("apr"),
                                call.call_id,
                                tool.name,
                                call.arguments,
                                tool.category,
                                expires,
                            ),
                        )
                    parked = True
                    continue
                if not resolution.approved:
                    reason = resolution.reason or "denied by the user"
                    await self.finish_call(
                        run, call, "denied", f"the user denied this call: {reason}"
                    )
                    continue
            if rt.hooks.has("before_tool_call"):
                try:
                    veto, _plugin = await rt.hooks.first(
                        "before_tool_call",
                        session_id=self._log.id,
                        run_id=run.id,
                        tool=tool.name,
                        arguments=arguments,
                        category=tool.category,
                        call_id=call.call_id,
                    )
                except PluginError as exc:
                    self._log.log.error("hook_failed", hook="before_tool_call", error=str(exc))
                    veto = "a policy check failed, so the call was not run"
                if veto is not None:
                    await self.finish_call(run, call, "denied", f"denied: {veto}")
                    continue
            if await self._run_tool(run, call, tool, arguments):
                parked = True
        return parked

    async def _run_tool(
        self, run: ActiveRun, call: ToolCallPart, tool: Tool, arguments: dict[str, Any]
    ) -> bool:
        """Execute one call; True if the tool suspended the run."""
        rt, log = self._rt, self._log
        await log.append(run.id, ToolStarted(call.call_id, tool.name, call.arguments))
        started = time.perf_counter()
        bound = log.log.bind(run_id=run.id, tool=tool.name)
        ctx = ToolContext(
            session_id=log.id,
            run_id=run.id,
            call_id=call.call_id,
            tool_name=tool.name,
            sandbox=await self._workspace(),
            resources=rt.resources,
            labels=log.record.labels,
            state=log.state_value(rt.agent.state),
            log=bound,
            suspend=_suspend,
        )
        bound.info("tool_started", arguments=shape(dict(call.arguments)))
        outcome: ToolOutcome
        try:
            content, outcome = await tool.invoke(ctx, arguments), "ok"
        except SuspendRun as suspension:
            await log.append(
                run.id, SuspensionRequested(call.call_id, tool.name, suspension.payload)
            )
            bound.info("tool_suspended")
            return True
        except HarnessError as exc:
            content, outcome = str(exc), "error"
        except Exception as exc:
            error = sanitize(exc, rt.policy)
            detail = f"{type(exc).__name__}: {exc}"
            for value in _strings(call.arguments):
                detail = detail.replace(value, "[argument]")
            bound.error("tool_failed", error=detail)
            content, outcome = (
                rt.redactor.scrub(f"tool '{tool.name}' failed: {error.message}"),
                "error",
            )
        await self.finish_call(
            run, call, outcome, content, duration_ms=(time.perf_counter() - started) * 1000
        )
        return False

    async def finish_call(
        self,
        run: ActiveRun,
        call: ToolCallPart,
        outcome: ToolOutcome,
        content: str,
        *,
        duration_ms: float = 0.0,
    ) -> None:
        """Append the call's result (what the model sees) and tell after_tool_call hooks."""
        rt, log = self._rt, self._log
        is_error = outcome != "ok"
        result = ToolResultPart(call.call_id, content, is_error)
        await log.append(
            run.id, ToolFinished(call.call_id, call.name, outcome, result, duration_ms=duration_ms)
        )
        log.log.info(
            "tool_finished",
            run_id=run.id,
            tool=call.name,
            outcome=outcome,
            duration_ms=round(duration_ms, 3),
        )
        if rt.hooks.has("after_tool_call"):
            await rt.hooks.notify(
                "after_tool_call",
                log.disabled_hooks,
                session_id=log.id,
                run_id=run.id,
                tool=call.name,
                call_id=call.call_id,
                outcome=outcome,
                is_error=is_error,
            )


async def _suspend(payload: Any) -> Any:
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
