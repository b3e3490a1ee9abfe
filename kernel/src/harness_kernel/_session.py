"""The public ``Session``: one conversation, as a host sees it.

A thin handle over the session's ``Runner`` (runs) and ``SessionLog`` (state and
history). Every name here is documented in DESIGN section 3 and the embedding guide,
and a test pins the list.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, final

import trio

from ._compaction import Summarizer
from ._context import ContextCompacted
from ._display import DisplayState
from ._fold import ApprovalHandle, SuspensionHandle
from ._log import Outlet
from ._metadata import clean_tags, clean_title
from ._output import check_output_type
from ._records import (
    Event,
    GrantsChanged,
    Message,
    ModeChanged,
    ModelChanged,
    Remember,
    RunResult,
    RunSummary,
    StateChanged,
    TextPart,
    Usage,
)
from ._run import Runner
from ._step import ActiveRun
from ._validation import ValidationFailed, structure_strictly
from .codec import converter, dumps
from .errors import (
    ConfigError,
    InvalidArgument,
    StateValidationError,
    UnknownGrant,
    UnknownMode,
)

__all__ = ["ApprovalHandle", "RunStream", "Session", "SuspensionHandle"]

STREAM_BUFFER = 256
"""Items a ``stream()`` reader may fall behind by before the run waits for it."""


@final
class RunStream:
    """What ``stream()`` yields: iterate for events; ``result`` once iteration ended.

    Items are durable ``Event`` values (with ``seq``) and transient ``TextDelta`` /
    ``ToolCallStart`` / ``ToolCallDelta`` / ``ToolCallEnd`` / ``DisplayStateChanged``
    values, in the order they happened; every item has a ``type``.
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
        result: RunResult | None = self._run.result
        return result

    async def wait(self) -> RunResult:
        """Wait for the run to end (consuming nothing) and return its result."""
        result: RunResult = await self._run.wait()
        return result


@final
class Session:
    """One conversation. Get it from the store (``create``, ``get``, ``get_or_create``)."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self._log = runner.log
        self._agent = runner.agent

    # -- plain state -------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._log.id

    @property
    def labels(self) -> Mapping[str, str]:
        """Identity labels (``tenant_id``, ``principal``, ...), fixed at creation."""
        return self._log.record.labels

    @property
    def is_running(self) -> bool:
        """A run task is alive (not true while a run is parked)."""
        return self._runner.active is not None

    @property
    def closed(self) -> bool:
        return self._runner.closed

    @property
    def mode(self) -> str:
        return self._log.fold.mode

    @property
    def model(self) -> str:
        """The model the next run uses: override, else the mode's, else the store default."""
        return self._runner.model

    @property
    def model_override(self) -> str | None:
        return self._log.fold.model

    @property
    def state(self) -> Any:
        """The session state: an instance of the agent's state class (a dict without one)."""
        return self._log.state_value(self._agent.state)

    @property
    def usage(self) -> Usage:
        return self._log.fold.usage

    @property
    def last_seq(self) -> int:
        """The seq of the last durable event of this session."""
        return self._log.last_seq

    @property
    def current_run(self) -> RunSummary | None:
        """The run that is active or parked, if any."""
        fold = self._log.fold
        info = self._log.run_info(fold.open_run) if fold.open_run else None
        return info.summary() if info is not None else None

    @property
    def pending_approvals(self) -> list[ApprovalHandle]:
        return list(self._log.fold.pending.values())

    @property
    def pending_suspensions(self) -> list[SuspensionHandle]:
        return list(self._log.fold.suspensions.values())

    @property
    def queued_follow_ups(self) -> list[Message]:
        """Queued user messages (follow-ups and steering not yet taken), oldest first."""
        return [m for _, m in self._log.fold.inbox]

    @property
    def grants(self) -> tuple[str, ...]:
        """Approval grants for the rest of the session: ``tool:<name>``, ``category:<name>``."""
        return self._log.fold.grants

    @property
    def display_state(self) -> DisplayState:
        """The UI snapshot, current after every event (see ``DisplayState``)."""
        return self._log.display_state

    # -- metadata for people -------------------------------------------------------------

    @property
    def title(self) -> str:
        """The title set by ``set_metadata``, else the start of the first user message
        (once a run saved it); ``""`` before either."""
        return self._log.record.title

    @property
    def preview(self) -> str:
        """The start of the last answer, as saved at the end of a run."""
        return self._log.record.preview

    @property
    def tags(self) -> tuple[str, ...]:
        return self._log.record.tags

    @property
    def pinned(self) -> bool:
        return self._log.record.pinned

    async def set_metadata(
        self,
        *,
        title: str | None = None,
        tags: Iterable[str] | None = None,
        pinned: bool | None = None,
    ) -> None:
        """Rename, tag or pin the session (``None`` leaves a field as it is; ``title=""``
        goes back to the derived title). Saved at once in the session record, so every
        process and listing sees it; ``InvalidArgument`` for a bad value, nothing saved."""
        self._runner.check_open()
        changes: dict[str, Any] = {}
        if title is not None:
            changes["title"] = clean_title(title)
        if tags is not None:
            changes["tags"] = clean_tags(tags)
        if pinned is not None:
            if not isinstance(pinned, bool):
                raise InvalidArgument("pinned must be true or false")
            changes["pinned"] = pinned
        if changes:
            await self._log.set_metadata(changes)

    # -- runs --------------------------------------------------------------------------

    async def send(
        self,
        message: str | Message,
        *,
        model: str | None = None,
        output_type: type | None = None,
    ) -> RunResult:
        """Run the agent on ``message`` and return the result once the run stops.

        Waits its turn if a run is active. If the caller is cancelled, the run is aborted.
        ``output_type`` (an attrs class; default: the agent's) asks for a typed answer,
        returned as ``RunResult.output``.
        """
        run = await self._runner.start(
            "send", _as_message(message), model, output_type=_output_type(output_type)
        )
        try:
            result: RunResult = await run.wait()
        finally:
            if not run.done.is_set():
                run.scope.cancel()
        if run.raise_error is not None:
            raise run.raise_error
        return result

    @asynccontextmanager
    async def stream(
        self,
        message: str | Message,
        *,
        model: str | None = None,
        output_type: type | None = None,
    ) -> AsyncIterator[RunStream]:
        """Run the agent and iterate its events as they happen.

        Leaving the block before the run ended aborts the run; the block exits once the
        run has recorded its end. ``output_type`` as for ``send``.
        """
        checked = _output_type(output_type)
        send, receive = trio.open_memory_channel[Any](STREAM_BUFFER)
        run = await self._runner.start(
            "send", _as_message(message), model, Outlet(send), output_type=checked
        )
        try:
            yield RunStream(run, receive)
        finally:
            receive.close()  # not aclose(): a cancelled caller must still reach the abort below
            if not run.done.is_set():
                run.scope.cancel()
                with trio.CancelScope(
                    shield=True, deadline=trio.current_time() + self._runner.grace
                ):
                    await run.done.wait()

    async def abort(self) -> bool:
        """Cancel the active run (model stream and tools); it ends ``aborted`` with what it
        produced recorded. A run parked on approvals is ended too. Returns whether there
        was something to abort."""
        return await self._runner.abort()

    async def follow_up(self, message: str | Message) -> None:
        """Queue ``message`` to run after the current run (FIFO, persisted). Starts a run
        at once if the session is idle. Returns without waiting for that run."""
        await self._runner.queue("follow_up", _as_message(message))

    async def steer(self, message: str | Message) -> None:
        """Add ``message`` to the current run before its next model step, without
        aborting it. With no run working, it is queued like a follow-up."""
        await self._runner.queue("steer", _as_message(message))

    async def btw(self, question: str, *, model: str | None = None) -> str:
        """Ask the model a side question on a snapshot of the history: no tools, nothing
        appended, allowed while a run is active. Returns the answer text."""
        return await self._runner.btw(question, model)

    # -- settings ----------------------------------------------------------------------

    async def compact(
        self, *, keep_tokens: int | None = None, summarizer: str | Summarizer | None = None
    ) -> ContextCompacted | None:
        """Summarize the start of the model context now (after a run in progress ends).

        Keeps ``keep_tokens`` of the newest messages verbatim (default: the agent's
        ``CompactionPolicy`` share of the model's budget, else just the newest message);
        ``summarizer`` (a model ref or a host function) overrides the policy's. Returns
        the ``context.compacted`` event appended, or ``None`` if there was nothing to
        compact. ``history()`` is unchanged; model requests send the summary from now on.
        """
        if keep_tokens is not None and (
            isinstance(keep_tokens, bool) or not isinstance(keep_tokens, int) or keep_tokens < 0
        ):
            raise InvalidArgument("keep_tokens must be a whole number >= 0")
        return await self._runner.compact(keep_tokens, summarizer)

    async def switch_mode(self, name: str) -> None:
        """Switch to mode ``name``; the next model step uses its instructions and tools."""
        self._runner.check_open()
        if self._agent.mode(name) is None:
            known = ", ".join(m.name for m in self._agent.modes)
            raise UnknownMode(f"agent '{self._agent.name}' has no mode '{name}' (modes: {known})")
        if name != self.mode:
            await self._runner.change(ModeChanged(self.mode, name))

    async def set_model(self, ref: str | None) -> None:
        """Override the model for this session (``None`` clears the override)."""
        self._runner.check_open()
        if ref is not None:
            self._runner.resolve_model(ref)
        if ref != self.model_override:
            await self._runner.change(ModelChanged(self.model_override, ref))

    async def update_state(self, **changes: Any) -> Any:
        """Set fields of the session state, validated against the agent's state class.

        Raises ``StateValidationError`` naming every unknown field or bad value; nothing
        is changed then. Returns the new state.
        """
        self._runner.check_open()
        cls = self._agent.state
        merged = {**self._log.fold.state, **converter.unstructure(changes)}
        if cls is not None:
            try:
                value: Any = structure_strictly(merged, cls, root="state")
            except ValidationFailed as exc:
                raise StateValidationError("; ".join(exc.errors)) from None
            merged = converter.unstructure(value)
        else:
            try:
                dumps(merged)
            except (TypeError, ValueError) as exc:
                raise StateValidationError(
                    f"state values must be JSON-serializable: {exc}"
                ) from None
        await self._runner.change(StateChanged(merged, tuple(changes)))
        return self.state

    # -- approvals and suspensions -------------------------------------------------------

    async def approve(
        self, approval_id: str, *, remember: Remember | None = None
    ) -> RunResult | None:
        """Approve a pending tool call; the parked run continues. Returns the run's result
        when it stops again (``None`` if other approvals are still pending).

        ``UnknownApproval`` / ``ApprovalAlreadyResolved`` (both ``KeyError``) otherwise."""
        return await self._runner.resolve(approval_id, True, None, remember)

    async def deny(self, approval_id: str, reason: str = "denied by the user") -> RunResult | None:
        """Deny a pending tool call; ``reason`` reaches the model in the tool result."""
        return await self._runner.resolve(approval_id, False, reason, None)

    async def resume(self, call_id: str, data: Any = None) -> RunResult | None:
        """Answer a suspended tool call: ``data`` becomes the tool's result and the run
        continues. Returns the run's result when it stops again (``None`` if other
        approvals or suspensions are still pending)."""
        return await self._runner.resume(call_id, data)

    async def grant_tool(self, name: str) -> None:
        """Let ``name`` run without asking for the rest of the session."""
        await self._set_grants((*self.grants, f"tool:{name}"))

    async def grant_category(self, category: str) -> None:
        """Let every tool of ``category`` run without asking for the rest of the session."""
        await self._set_grants((*self.grants, f"category:{category}"))

    async def revoke(self, grant: str) -> None:
        """Remove a grant (``tool:<name>``, ``category:<name>``, or a bare tool name)."""
        target = grant if ":" in grant else f"tool:{grant}"
        if target not in self.grants:
            raise UnknownGrant(
                f"no grant '{target}' in session '{self.id}' (grants: {', '.join(self.grants) or 'none'})"
            )
        await self._set_grants(tuple(g for g in self.grants if g != target))

    async def _set_grants(self, grants: tuple[str, ...]) -> None:
        self._runner.check_open()
        unique = tuple(dict.fromkeys(grants))
        if unique != self.grants:
            await self._runner.change(GrantsChanged(unique))

    # -- history and runs --------------------------------------------------------------

    async def history(self, limit: int | None = None, before: str | None = None) -> list[Message]:
        """Messages in order; the last ``limit`` of them, older than message id ``before``."""
        self._runner.check_open()
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise InvalidArgument("limit must be a non-negative integer or None")
        return await self._log.history(limit, before)

    async def runs(self) -> list[RunSummary]:
        """Every run of the session, oldest first."""
        self._runner.check_open()
        return await self._log.runs()

    async def run_events(self, run_id: str) -> list[Event]:
        """The durable events of one run, read back from storage."""
        self._runner.check_open()
        return await self._log.run_events(run_id)

    async def close(self) -> None:
        """Unload the session: abort its run, close its sandbox; the data is kept."""
        await self._runner.unload("close")

    def __repr__(self) -> str:
        return f"<Session {self.id!r} mode={self.mode!r} running={self.is_running}>"


def _output_type(cls: type | None) -> type | None:
    if cls is None:
        return None
    try:
        return check_output_type(cls, "send")
    except ConfigError as exc:
        raise InvalidArgument(str(exc)) from None


def _as_message(message: str | Message) -> Message:
    if isinstance(message, Message):
        if message.role != "user":
            raise InvalidArgument("only user messages can be sent")
        return message
    if not isinstance(message, str):
        raise TypeError(f"message must be str or Message, got {type(message).__name__}")
    return Message("user", (TextPart(message),))
