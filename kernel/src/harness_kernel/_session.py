"""A loaded session: its state is a fold over its durable log.

Every change is an event appended to storage first and folded into memory second, so
memory is never ahead of storage, and hydrating a session is folding its log again.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, final

import attrs
import trio

from ._display import DisplayState, DisplayStateChanged
from ._records import (
    ApprovalRequested,
    ApprovalResolved,
    ErrorInfo,
    Event,
    EventPayload,
    GrantsChanged,
    InputQueued,
    Message,
    MessageAdded,
    ModeChanged,
    ModelChanged,
    RunFinished,
    RunResult,
    RunStarted,
    RunSummary,
    SessionRecord,
    StateChanged,
    SuspensionRequested,
    SuspensionResolved,
    TextPart,
    ToolFinished,
    ToolStarted,
    Usage,
    UsageRecorded,
)
from ._runtime import Runtime, StoreEvent
from ._validation import ValidationFailed, structure_strictly
from .codec import converter
from .contracts import SandboxSession, SessionInfo, TextDelta, ToolCallDelta, ToolCallStart
from .errors import (
    Conflict,
    HarnessError,
    SessionClosed,
    SessionConflict,
    StateValidationError,
    StoreClosed,
    UnknownMode,
)

__all__ = ["ApprovalHandle", "RunStream", "Session", "SuspensionHandle"]


@attrs.frozen
class ApprovalHandle:
    """A tool call waiting for a person: approve or deny it by ``approval_id``."""

    approval_id: str
    session_id: str
    run_id: str
    tool_call_id: str
    tool: str
    arguments: Mapping[str, Any]
    category: str | None
    requested_at: float
    expires_at: float | None = None


@attrs.define(slots=True)
class _RunInfo:
    """Mutable bookkeeping of one run while folding; frozen into RunSummary on read.

    (Folding 10,000 events must be cheap: ``attrs.evolve`` per event was not.)"""

    run_id: str
    status: str
    started_at: float
    first_seq: int
    model: str | None = None
    mode: str | None = None
    finished_at: float | None = None
    last_seq: int | None = None
    usage: Usage = Usage()
    error: ErrorInfo | None = None
    steps: int = 0

    def summary(self) -> RunSummary:
        return RunSummary(
            self.run_id, self.status, self.started_at, self.first_seq, self.finished_at,
            self.last_seq, self.model, self.mode, self.usage, self.error, self.steps,
        )


@attrs.frozen
class SuspensionHandle:
    """A tool call that suspended its run; ``resume(call_id, data)`` answers it."""

    call_id: str
    session_id: str
    run_id: str
    tool: str
    payload: Any
    requested_at: float


@attrs.define(eq=False)
class ActiveRun:
    """The in-memory side of a run while its task is alive."""

    id: str
    model: str
    mode: str
    trigger: str
    channel: trio.MemorySendChannel[Any] | None = None
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    done: trio.Event = attrs.Factory(trio.Event)
    result: RunResult | None = None
    started: float = attrs.Factory(time.perf_counter)
    partial_text: list[str] = attrs.Factory(list)
    steps: int = 0
    usage: Usage = Usage()
    invalid_arguments: dict[str, str] = attrs.Factory(dict)

    async def wait(self) -> RunResult:
        await self.done.wait()
        assert self.result is not None
        return self.result


class RunStream:
    """What ``stream()`` yields: iterate for events; ``result`` once iteration ended.

    Items are durable ``Event`` values (with ``seq``) and transient ``TextDelta`` /
    ``ToolCallStart`` / ``ToolCallDelta`` / ``ToolCallEnd`` values, in the order they
    happened; every item has a ``type``.
    """

    def __init__(self, run: ActiveRun, receive: trio.MemoryReceiveChannel[Any]) -> None:
        self._run = run
        self._receive = receive
        self.run_id = run.id

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._receive.__aiter__()

    @property
    def result(self) -> RunResult | None:
        """The run's result once it ended (``None`` before)."""
        return self._run.result

    async def wait(self) -> RunResult:
        """Wait for the run to end (consuming nothing) and return its result."""
        return await self._run.wait()


@final
class Session:
    """One conversation. Get it from the store (``create``, ``get``, ``get_or_create``)."""

    def __init__(self, runtime: Runtime, record: SessionRecord, events: Sequence[Event] = ()) -> None:
        self._rt = runtime
        self._record = record
        self.id = record.id
        self._messages: list[Message] = []
        self._message_index: dict[str, int] = {}
        self._runs: dict[str, _RunInfo] = {}
        self._run_first_message: dict[str, int] = {}
        self._last_seq = 0
        self._mode = record.mode or runtime.agent.default_mode
        self._model: str | None = record.model
        self._state: dict[str, Any] = dict(record.state) or self._default_state()
        self._state_obj: Any = None
        self._usage = Usage()
        self._open_run: str | None = None
        self._pending: dict[str, ApprovalHandle] = {}
        self._resolutions: dict[str, ApprovalResolved] = {}  # by tool call id, open run only
        self._started: dict[str, ToolStarted] = {}
        self._suspensions: dict[str, SuspensionHandle] = {}
        self._suspension_results: dict[str, SuspensionResolved] = {}  # open run only
        self._inbox: list[tuple[str, Message]] = []
        self._grants: tuple[str, ...] = ()
        self._last_error: ErrorInfo | None = None
        self._streaming_text: list[str] = []  # stream-only: the answer being streamed
        self._tool_buffers: dict[str, str] = {}  # stream-only: tool arguments being streamed
        self._timers: dict[str, trio.CancelScope] = {}
        self._slot = trio.Semaphore(1)
        self._write_lock = trio.Lock()
        self._active: ActiveRun | None = None
        self._closed = False
        self.disabled_hooks: set[str] = set()
        # Every record about this session carries its id and identity labels.
        self.log = runtime.log.bind(session_id=record.id, **({"labels": dict(record.labels)} if record.labels else {}))
        self._sandbox: SandboxSession | None = None
        self._sandbox_lock = trio.Lock()
        for event in events:
            self._fold(event)

    # -- read-only state ---------------------------------------------------------

    @property
    def labels(self) -> Mapping[str, str]:
        """Identity labels (``tenant_id``, ``principal``, ...), fixed at creation."""
        return self._record.labels

    @property
    def agent(self) -> str:
        return self._record.agent

    @property
    def is_running(self) -> bool:
        return self._active is not None

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def model(self) -> str:
        """The model the next run uses: override, else the mode's, else the store default."""
        if self._model is not None:
            return self._model
        mode = self._rt.agent.mode(self._mode)
        return (mode.model if mode and mode.model else None) or self._rt.default_model

    @property
    def model_override(self) -> str | None:
        return self._model

    @property
    def state(self) -> Any:
        """The session state: an instance of the agent's state class (a dict without one)."""
        if self._rt.agent.state is None:
            return dict(self._state)
        if self._state_obj is None:
            try:
                self._state_obj = converter.structure(self._state, self._rt.agent.state)
            except Exception:
                # Stored state from an older state class: keep what still fits.
                fields = {f.name for f in attrs.fields(self._rt.agent.state)}
                kept = {k: v for k, v in self._state.items() if k in fields}
                try:
                    self._state_obj = converter.structure(kept, self._rt.agent.state)
                except Exception:
                    self._state_obj = self._rt.agent.state()
        return self._state_obj

    @property
    def usage(self) -> Usage:
        return self._usage

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def record(self) -> SessionRecord:
        """The session record as this process knows it."""
        return self._snapshot()

    @property
    def current_run(self) -> RunSummary | None:
        """The run that is active or parked, if any."""
        info = self._runs.get(self._open_run) if self._open_run else None
        return info.summary() if info is not None else None

    @property
    def pending_approvals(self) -> list[ApprovalHandle]:
        return list(self._pending.values())

    @property
    def pending_suspensions(self) -> list[SuspensionHandle]:
        return list(self._suspensions.values())

    @property
    def queued_follow_ups(self) -> list[Message]:
        """Queued user messages (follow-ups and steering not yet taken), oldest first."""
        return [m for _, m in self._inbox]

    @property
    def grants(self) -> tuple[str, ...]:
        """Approval grants for the rest of the session: ``tool:<name>``, ``category:<name>``."""
        return self._grants

    @property
    def display_state(self) -> DisplayState:
        """The UI snapshot, current after every event (see ``DisplayState``).

        Built from the same fold that hydrates the session, plus what is streaming now;
        ``harness_kernel._display.reduce`` is the equivalent pure reducer (tests check
        that folding the persisted log with it gives this same value at rest)."""
        active = {c: t.name for c, t in self._started.items() if c not in self._suspensions}
        return DisplayState(
            mode=self._mode,
            model=self._model,
            open_run=self._open_run,
            current_message="".join(self._streaming_text),
            active_tools=active,
            tool_input_buffers=dict(self._tool_buffers),
            pending_approvals=tuple(self._pending),
            pending_suspensions=tuple(self._suspensions),
            queued_follow_ups=tuple(m for _, m in self._inbox),
            usage=self._usage,
            last_error=self._last_error,
        )

    @property
    def parked(self) -> bool:
        """A run waits for approvals or suspensions."""
        return self._open_run is not None and bool(self._pending or self._suspensions)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- folding ---------------------------------------------------------------------

    def _default_state(self) -> dict[str, Any]:
        cls = self._rt.agent.state
        return converter.unstructure(cls()) if cls is not None else {}

    def _add_message(self, message: Message) -> None:
        self._message_index[message.id] = len(self._messages)
        self._messages.append(message)

    def _fold(self, event: Event) -> None:
        payload = event.payload
        run_id = event.run_id
        if isinstance(payload, MessageAdded):
            self._add_message(payload.message)
            if payload.message.role == "assistant":
                self._streaming_text, self._tool_buffers = [], {}
            if payload.message.role == "assistant" and run_id in self._runs:
                self._runs[run_id].steps += 1
            if self._inbox and any(m.id == payload.message.id for _, m in self._inbox):
                self._inbox = [(k, m) for k, m in self._inbox if m.id != payload.message.id]
        elif isinstance(payload, ToolFinished):
            self._started.pop(payload.call_id, None)
            self._resolutions.pop(payload.call_id, None)
            self._suspension_results.pop(payload.call_id, None)
            self._add_message(
                Message("tool", (payload.result,), id=payload.message_id, created_at=event.at)
            )
        elif isinstance(payload, ToolStarted):
            self._started[payload.call_id] = payload
        elif isinstance(payload, UsageRecorded):
            self._usage = self._usage + payload.usage
            if run_id in self._runs:
                info = self._runs[run_id]
                info.usage = info.usage + payload.usage
        elif isinstance(payload, RunStarted) and run_id:
            self._runs[run_id] = _RunInfo(
                run_id, "running", event.at, event.seq, model=payload.model, mode=payload.mode
            )
            self._last_error = None
            self._run_first_message[run_id] = len(self._messages)
            self._open_run = run_id
        elif isinstance(payload, RunFinished) and run_id:
            ended = self._runs.get(run_id)
            if ended is None:
                ended = self._runs[run_id] = _RunInfo(run_id, "running", event.at, event.seq)
            ended.status, ended.finished_at, ended.last_seq, ended.error = (
                payload.status, event.at, event.seq, payload.error
            )
            self._last_error = payload.error
            self._streaming_text, self._tool_buffers = [], {}
            if self._open_run == run_id:
                self._open_run = None
                self._pending.clear()
                self._resolutions.clear()
                self._suspensions.clear()
                self._suspension_results.clear()
        elif isinstance(payload, ApprovalRequested):
            self._mark_run(run_id, "waiting_approval")
            self._pending[payload.approval_id] = ApprovalHandle(
                payload.approval_id, self.id, run_id or "", payload.call_id, payload.tool,
                payload.arguments, payload.category, event.at, payload.expires_at,
            )
        elif isinstance(payload, ApprovalResolved):
            handle = self._pending.pop(payload.approval_id, None)
            if handle is not None:
                self._resolutions[handle.tool_call_id] = payload
            if not self._pending and not self._suspensions:
                self._mark_run(run_id, "running")
        elif isinstance(payload, SuspensionRequested):
            self._mark_run(run_id, "suspended")
            self._suspensions[payload.call_id] = SuspensionHandle(
                payload.call_id, self.id, run_id or "", payload.tool, payload.payload, event.at
            )
        elif isinstance(payload, SuspensionResolved):
            if self._suspensions.pop(payload.call_id, None) is not None:
                self._suspension_results[payload.call_id] = payload
            if not self._pending and not self._suspensions:
                self._mark_run(run_id, "running")
        elif isinstance(payload, InputQueued):
            self._inbox.append((payload.kind, payload.message))
        elif isinstance(payload, GrantsChanged):
            self._grants = payload.grants
        elif isinstance(payload, ModeChanged):
            self._mode = payload.mode
        elif isinstance(payload, ModelChanged):
            self._model = payload.model
        elif isinstance(payload, StateChanged):
            self._state = dict(payload.state)
            self._state_obj = None
        self._last_seq = event.seq

    def _mark_run(self, run_id: str | None, status: str) -> None:
        info = self._runs.get(run_id) if run_id else None
        if info is not None and info.finished_at is None:
            info.status = status

    def _snapshot(self, **changes: Any) -> SessionRecord:
        # From the log, not from the run task: a record saved while a run parks must say so.
        if self._suspensions:
            status = "suspended"
        elif self._pending:
            status = "waiting_approval"
        elif self._open_run is not None:
            status = "running"
        else:
            status = "idle"
        return attrs.evolve(
            self._record,
            mode=self._mode,
            model=self._model,
            state=dict(self._state),
            usage=self._usage,
            status=status,
            last_seq=self._last_seq,
            updated_at=time.time(),
            **changes,
        )

    # -- persistence -------------------------------------------------------------------

    def check_open(self) -> None:
        if self._closed:
            raise SessionClosed(f"session '{self.id}' is closed; get it again from the store")

    async def append(self, run: ActiveRun | None, *payloads: EventPayload, run_id: str | None = None) -> list[Event]:
        """Append events durably, then fold and publish them.

        On ``Conflict`` (another writer moved ahead) the tail is reloaded and
        ``SessionConflict`` raised: nothing is forked or overwritten.
        """
        async with self._write_lock:
            now = time.time()
            run_id = run.id if run else run_id
            events = [
                Event(self._last_seq + i, payload, now, run_id) for i, payload in enumerate(payloads, start=1)
            ]
            try:
                await self._rt.storage.append(self.id, events, expected_seq=self._last_seq)
            except Conflict as exc:
                await self._reload_tail()
                raise SessionConflict(
                    f"session '{self.id}' was changed by another writer; this run stopped and "
                    "the session reloaded the newer history"
                ) from exc
            for event in events:
                self._fold(event)
        for event in events:
            await self._publish(run, event)
        return events

    async def _reload_tail(self) -> None:
        for event in await self._rt.storage.read(self.id, after_seq=self._last_seq):
            self._fold(event)
            await self._publish(None, event)

    async def _publish(self, run: ActiveRun | None, event: Event) -> None:
        await self.emit(run, event)
        self._rt.publish(StoreEvent("event", self.id, event))
        await self._display_changed(run)
        if self._rt.hooks.has("on_event"):
            await self._rt.hooks.notify("on_event", self.disabled_hooks, session_id=self.id, event=event)

    async def _display_changed(self, run: ActiveRun | None) -> None:
        # Built only for someone who listens: a run's stream, or a store subscriber.
        streaming = run is not None and run.channel is not None
        if not (streaming or self._rt.has_subscribers()):
            return
        state = self.display_state
        if streaming:
            await self.emit(run, DisplayStateChanged(state))
        self._rt.publish(StoreEvent("display_state_changed", self.id, display=state))

    async def emit_delta(self, run: ActiveRun, item: Any) -> None:
        """A stream-only event: to the run's stream, and into ``display_state``."""
        await self.emit(run, item)
        if isinstance(item, TextDelta):
            self._streaming_text.append(item.text)
        elif isinstance(item, ToolCallStart):
            self._tool_buffers[item.call_id] = ""
        elif isinstance(item, ToolCallDelta):
            self._tool_buffers[item.call_id] = self._tool_buffers.get(item.call_id, "") + item.arguments
        else:
            return
        await self._display_changed(run)

    async def emit(self, run: ActiveRun | None, item: Any) -> None:
        """Hand an item to the run's stream, if someone is streaming it."""
        if run is not None and run.channel is not None:
            try:
                await run.channel.send(item)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                run.channel = None

    async def save_record(self) -> None:
        """Write the record snapshot (compare-and-swap on ``revision``).

        The record is an index and a cache of the log; if another writer saved first, the
        newer of the two snapshots is kept.
        """
        for _ in range(3):
            record = self._snapshot(revision=self._record.revision + 1)
            try:
                await self._rt.storage.save(record, expected_revision=self._record.revision)
            except Conflict:
                stored = await self._rt.storage.load(self.id)
                if stored is None:
                    return
                self._record = stored
                if stored.last_seq >= self._last_seq:
                    return
                continue
            self._record = record
            return

    # -- sandbox -----------------------------------------------------------------------

    async def sandbox(self) -> SandboxSession:
        """The session's workspace, opened on first use and kept until the session closes."""
        async with self._sandbox_lock:
            if self._sandbox is None:
                info = SessionInfo(self.id, self._record.agent, dict(self._record.labels))
                self._sandbox = await self._rt.sandbox.open(info)
            return self._sandbox

    # -- runs --------------------------------------------------------------------------

    async def start(
        self, trigger: str, message: Message | None, model: str | None, channel: Any = None
    ) -> ActiveRun:
        """Wait for the session's run slot, then start a run task in the store's nursery."""
        from ._run import drive

        self.check_open()
        model_ref = model or self.model
        self._rt.resolve_model(model_ref)  # a bad ref is the caller's error, before anything runs
        await self._slot.acquire()
        try:
            self.check_open()
            run_id = self._open_run if trigger == "resume" and self._open_run else _new_run_id()
            run = ActiveRun(run_id, model_ref, self._mode, trigger, channel)
            info = self._runs.get(run_id)
            if trigger == "resume" and info is not None:
                run.steps = info.steps  # max_steps counts the whole run, not each stretch
            self._active = run
            await self._rt.nursery.start(drive, self, run, message)
        except RuntimeError as exc:  # the store's nursery is closing
            self._active = None
            self._slot.release()
            raise StoreClosed("the session store is closing") from exc
        except BaseException:
            self._active = None
            self._slot.release()
            raise
        return run

    def run_ended(self, run: ActiveRun) -> None:
        """Called by the run task as its last act. A queued follow-up takes the slot
        directly (so it runs next, ahead of sends that are still waiting); otherwise the
        slot is freed."""
        from ._run import drive

        if self._active is run:
            self._active = None
        run.done.set()
        self.schedule_expiries()
        if self._inbox and not self.parked and not self._closed and not self._rt_closing():
            kind, message = self._inbox[0]
            follow = ActiveRun(_new_run_id(), self.model, self._mode, kind)
            self._active = follow
            self._rt.nursery.start_soon(drive, self, follow, message)
            return
        self._slot.release()

    def _rt_closing(self) -> bool:
        return self._rt.closing()

    def kick(self) -> None:
        """Start the next queued input if the session is idle (after hydrate or queueing)."""
        if self._active is None and self._inbox and not self.parked and not self._closed:
            self._rt.nursery.start_soon(self._run_queued)

    async def _run_queued(self) -> None:
        if not self._inbox or self._closed:
            return
        await self._slot.acquire()
        if not self._inbox or self.parked or self._closed or self._active is not None:
            self._slot.release()
            return
        from ._run import drive

        kind, message = self._inbox[0]
        run = ActiveRun(_new_run_id(), self.model, self._mode, kind)
        self._active = run
        self._rt.nursery.start_soon(drive, self, run, message)

    def schedule_expiries(self) -> None:
        """Start a timer for each pending approval that has an expiry."""
        for handle in self._pending.values():
            if handle.expires_at is not None and handle.approval_id not in self._timers and not self._closed:
                scope = trio.CancelScope()
                self._timers[handle.approval_id] = scope
                self._rt.nursery.start_soon(self._expire, handle.approval_id, handle.expires_at, scope)

    async def _expire(self, approval_id: str, expires_at: float, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep(max(0.0, expires_at - time.time()))
        if self._timers.get(approval_id) is not scope:
            return  # resolved meanwhile (its resolution cancelled this timer)
        # Forget the timer first: resolving cancels the approval's timer, which must not
        # be the scope this very task would continue the run in.
        del self._timers[approval_id]
        if approval_id in self._pending and not self._closed:
            try:
                await self.deny(approval_id, "the approval timed out")
            except HarnessError as exc:
                self.log.warning("approval_expiry_failed", error=str(exc))

    def messages_of(self, run_id: str) -> tuple[Message, ...]:
        start = self._run_first_message.get(run_id, len(self._messages))
        return tuple(self._messages[start:])

    @property
    def messages(self) -> Sequence[Message]:
        return self._messages

    @property
    def open_run(self) -> str | None:
        return self._open_run

    @property
    def started_tools(self) -> Mapping[str, ToolStarted]:
        return self._started

    def resolution(self, call_id: str) -> ApprovalResolved | None:
        return self._resolutions.get(call_id)

    def suspension_result(self, call_id: str) -> SuspensionResolved | None:
        return self._suspension_results.get(call_id)

    def suspension_for(self, call_id: str) -> SuspensionHandle | None:
        return self._suspensions.get(call_id)

    def run_summary(self, run_id: str) -> RunSummary | None:
        info = self._runs.get(run_id)
        return info.summary() if info is not None else None

    def pending_for_call(self, call_id: str) -> ApprovalHandle | None:
        return next((h for h in self._pending.values() if h.tool_call_id == call_id), None)

    @property
    def runtime(self) -> Runtime:
        return self._rt

    async def send(self, message: str | Message, *, model: str | None = None) -> RunResult:
        """Run the agent on ``message`` and return the result once the run stops.

        Waits its turn if a run is active. If the caller is cancelled, the run is aborted.
        """
        run = await self.start("send", _as_message(message), model)
        try:
            return await run.wait()
        finally:
            if not run.done.is_set():
                run.scope.cancel()

    @asynccontextmanager
    async def stream(self, message: str | Message, *, model: str | None = None) -> AsyncIterator[RunStream]:
        """Run the agent and iterate its events as they happen.

        Leaving the block before the run ended aborts the run; the block exits once the
        run has recorded its end.
        """
        send, receive = trio.open_memory_channel[Any](256)
        run = await self.start("send", _as_message(message), model, send)
        try:
            yield RunStream(run, receive)
        finally:
            await receive.aclose()
            if not run.done.is_set():
                run.scope.cancel()
                with trio.CancelScope(shield=True, deadline=trio.current_time() + self._rt.grace):
                    await run.done.wait()

    async def abort(self) -> bool:
        """Cancel the active run (model stream and tools); it ends ``aborted`` with what it
        produced recorded. A run parked on approvals is ended too. Returns whether there
        was something to abort."""
        run = self._active
        if run is not None:
            run.scope.cancel()
            with trio.CancelScope(shield=True, deadline=trio.current_time() + self._rt.grace):
                await run.done.wait()
            return True
        if self.parked:
            from ._run import end_parked_run

            await end_parked_run(self, "aborted", "the run was aborted")
            self.kick()  # queued follow-ups run, as after any other run
            return True
        return False

    # -- settings ----------------------------------------------------------------------

    async def switch_mode(self, name: str) -> None:
        """Switch to mode ``name``; the next model step uses its instructions and tools."""
        self.check_open()
        if self._rt.agent.mode(name) is None:
            known = ", ".join(m.name for m in self._rt.agent.modes)
            raise UnknownMode(f"agent '{self._rt.agent.name}' has no mode '{name}' (modes: {known})")
        if name != self._mode:
            await self.append(self._active, ModeChanged(self._mode, name))
            await self.save_record()

    async def set_model(self, ref: str | None) -> None:
        """Override the model for this session (``None`` clears the override)."""
        self.check_open()
        if ref is not None:
            self._rt.resolve_model(ref)
        if ref != self._model:
            await self.append(self._active, ModelChanged(self._model, ref))
            await self.save_record()

    async def update_state(self, **changes: Any) -> Any:
        """Set fields of the session state, validated against the agent's state class.

        Raises ``StateValidationError`` naming every unknown field or bad value; nothing
        is changed then. Returns the new state.
        """
        self.check_open()
        cls = self._rt.agent.state
        merged = {**self._state, **converter.unstructure(changes)}
        if cls is not None:
            try:
                value: Any = structure_strictly(merged, cls, root="state")
            except ValidationFailed as exc:
                raise StateValidationError("; ".join(exc.errors)) from None
            merged = converter.unstructure(value)
        else:
            try:
                from .codec import dumps

                dumps(merged)
            except (TypeError, ValueError) as exc:
                raise StateValidationError(f"state values must be JSON-serializable: {exc}") from None
        await self.append(self._active, StateChanged(merged, tuple(changes)))
        await self.save_record()
        return self.state

    # -- approvals ---------------------------------------------------------------------

    def _handle(self, approval_id: str) -> ApprovalHandle:
        handle = self._pending.get(approval_id)
        if handle is None:
            raise KeyError(f"no pending approval '{approval_id}' in session '{self.id}' (unknown or already resolved)")
        return handle

    async def approve(self, approval_id: str, *, remember: str | None = None) -> RunResult | None:
        """Approve a pending tool call; the parked run continues. Returns the run's result
        when it stops again (``None`` if other approvals are still pending)."""
        return await self._resolve(approval_id, True, None, remember)

    async def deny(self, approval_id: str, reason: str = "denied by the user") -> RunResult | None:
        """Deny a pending tool call; ``reason`` reaches the model in the tool result."""
        return await self._resolve(approval_id, False, reason, None)

    async def _resolve(
        self, approval_id: str, approved: bool, reason: str | None, remember: str | None
    ) -> RunResult | None:
        self.check_open()
        if remember not in (None, "tool", "category"):
            raise ValueError("remember must be None, 'tool' or 'category'")
        handle = self._handle(approval_id)
        payloads: list[EventPayload] = [ApprovalResolved(approval_id, approved, reason, remember)]
        if remember is not None:
            grant = self._grant_for(handle, remember)
            if grant not in self._grants:
                payloads.append(GrantsChanged((*self._grants, grant)))
        await self.append(None, *payloads, run_id=handle.run_id or None)
        timer = self._timers.pop(approval_id, None)
        if timer is not None:
            timer.cancel()
        return await self._continue_parked()

    async def _continue_parked(self) -> RunResult | None:
        if self.parked or self._active is not None or self._open_run is None:
            return None
        run = await self.start("resume", None, None)
        return await run.wait()

    def _grant_for(self, handle: ApprovalHandle, remember: str) -> str:
        if remember == "tool":
            return f"tool:{handle.tool}"
        if not handle.category:
            raise ValueError(f"tool '{handle.tool}' has no category to remember")
        return f"category:{handle.category}"

    async def grant_tool(self, name: str) -> None:
        """Let ``name`` run without asking for the rest of the session."""
        await self._set_grants((*self._grants, f"tool:{name}"))

    async def grant_category(self, category: str) -> None:
        """Let every tool of ``category`` run without asking for the rest of the session."""
        await self._set_grants((*self._grants, f"category:{category}"))

    async def revoke(self, grant: str) -> None:
        """Remove a grant (``tool:<name>``, ``category:<name>``, or a bare tool name)."""
        target = grant if ":" in grant else f"tool:{grant}"
        if target not in self._grants:
            raise KeyError(f"no grant '{target}' in session '{self.id}' (grants: {', '.join(self._grants) or 'none'})")
        await self._set_grants(tuple(g for g in self._grants if g != target))

    async def _set_grants(self, grants: tuple[str, ...]) -> None:
        self.check_open()
        unique = tuple(dict.fromkeys(grants))
        if unique != self._grants:
            await self.append(self._active, GrantsChanged(unique))
            await self.save_record()

    # -- suspensions, follow-ups, steering, side questions -------------------------

    async def resume(self, call_id: str, data: Any = None) -> RunResult | None:
        """Answer a suspended tool call: ``data`` becomes the tool's result and the run
        continues. Returns the run's result when it stops again (``None`` if other
        approvals or suspensions are still pending)."""
        self.check_open()
        if call_id not in self._suspensions:
            raise KeyError(f"no pending suspension for call '{call_id}' in session '{self.id}' (unknown or already resumed)")
        from .codec import converter as _conv
        from .codec import dumps

        try:
            dumps(_conv.unstructure(data))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"resume data must be JSON-serializable: {exc}") from None
        handle = self._suspensions[call_id]
        await self.append(None, SuspensionResolved(call_id, _conv.unstructure(data)), run_id=handle.run_id or None)
        return await self._continue_parked()

    async def follow_up(self, message: str | Message) -> None:
        """Queue ``message`` to run after the current run (FIFO, persisted). Starts a run
        at once if the session is idle. Returns without waiting for that run."""
        await self._queue("follow_up", message)

    async def steer(self, message: str | Message) -> None:
        """Add ``message`` to the current run before its next model step, without
        aborting it. With no run working, it is queued like a follow-up."""
        await self._queue("steer", message)

    async def _queue(self, kind: str, message: str | Message) -> None:
        self.check_open()
        await self.append(self._active, InputQueued(kind, _as_message(message)))
        self.kick()

    def take_steering(self) -> list[Message]:
        """The queued steering messages, for the run loop to add before a model step."""
        return [m for k, m in self._inbox if k == "steer"]

    async def btw(self, question: str, *, model: str | None = None) -> str:
        """Ask the model a side question on a snapshot of the history: no tools, nothing
        appended, allowed while a run is active. Returns the answer text."""
        from ._run import side_question

        self.check_open()
        return await side_question(self, question, model or self.model)

    # -- history and runs --------------------------------------------------------------

    async def history(self, limit: int | None = None, before: str | None = None) -> list[Message]:
        """Messages in order; the last ``limit`` of them, older than message id ``before``."""
        self.check_open()
        end = len(self._messages)
        if before is not None:
            if before not in self._message_index:
                raise KeyError(f"no message '{before}' in session '{self.id}'")
            end = self._message_index[before]
        start = 0 if limit is None else max(0, end - limit)
        return self._messages[start:end]

    async def runs(self) -> list[RunSummary]:
        """Every run of the session, oldest first."""
        return [info.summary() for info in self._runs.values()]

    async def run_events(self, run_id: str) -> list[Event]:
        """The durable events of one run, read back from storage."""
        summary = self._runs.get(run_id)
        if summary is None:
            raise KeyError(f"no run '{run_id}' in session '{self.id}'")
        events: list[Event] = []
        after = summary.first_seq - 1
        stop = summary.last_seq or math.inf
        while after < stop:
            batch = await self._rt.storage.read(self.id, after_seq=after, limit=500)
            if not batch:
                break
            events.extend(e for e in batch if e.run_id == run_id and e.seq <= stop)
            after = batch[-1].seq
        return events

    # -- closing -----------------------------------------------------------------------

    async def close(self) -> None:
        """Unload the session: abort its run, close its sandbox; the data is kept."""
        from ._store import close_session

        await close_session(self._rt, self, "close")

    async def shutdown(self, reason: str) -> None:
        """Abort active work, release the sandbox and mark the session closed.

        A run parked on approvals or suspensions is durable state, not active work: it
        stays parked in storage and continues after ``get_or_create`` in any process.
        """
        if self._closed:
            return
        if self._active is not None:
            await self.abort()
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        if self._sandbox is not None:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + self._rt.grace):
                try:
                    await self._sandbox.close(reason)
                except Exception as exc:
                    self.log.warning("sandbox_close_failed", error=str(exc))
            self._sandbox = None


def _as_message(message: str | Message) -> Message:
    if isinstance(message, Message):
        if message.role != "user":
            raise ValueError("only user messages can be sent")
        return message
    if not isinstance(message, str):
        raise TypeError(f"message must be str or Message, got {type(message).__name__}")
    return Message("user", (TextPart(message),))


def _new_run_id() -> str:
    from ._records import new_id

    return new_id("run")

