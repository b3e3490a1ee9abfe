"""The fold: what a session is, derived from its durable events; and its snapshot.

``SessionFold.apply`` is the one reducer of the log. The live session applies each event
it appends; hydration applies the events after the record's snapshot; repairing a bad
snapshot applies the whole log. ``display`` turns the fold into the ``DisplayState`` UIs
read, so the UI view and the run loop never disagree.

The snapshot (``SessionRecord.snapshot``) holds everything the fold keeps except
history and finished runs, which are read from the log when someone needs them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs
import cattrs

from ._context import Compacted, ContextCompacted
from ._display import DisplayState
from ._records import (
    AbortRequested,
    ApprovalRequested,
    ApprovalResolved,
    ErrorInfo,
    Event,
    GrantsChanged,
    InputKind,
    InputQueued,
    Message,
    MessageAdded,
    ModeChanged,
    ModelChanged,
    RunFinished,
    RunStarted,
    RunState,
    RunSummary,
    SessionStatus,
    StateChanged,
    SuspensionRequested,
    SuspensionResolved,
    ToolFinished,
    ToolStarted,
    Usage,
    UsageRecorded,
)
from .codec import converter
from .errors import ApprovalAlreadyResolved, UnknownApproval, UnknownSuspension

__all__ = ["ApprovalHandle", "RunInfo", "SessionFold", "SnapshotInvalid", "SuspensionHandle"]

SNAPSHOT_VERSION: Final = 1
"""Bumped whenever the snapshot's shape changes: an older snapshot is refolded."""

RESOLVED_MEMORY: Final = 256
"""How many resolved approval ids a session remembers (to say "already resolved")."""


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


@attrs.frozen
class SuspensionHandle:
    """A tool call that suspended its run; ``resume(call_id, data)`` answers it."""

    call_id: str
    session_id: str
    run_id: str
    tool: str
    payload: Any
    requested_at: float


@attrs.define(slots=True)
class RunInfo:
    """Mutable bookkeeping of one run while folding; frozen into ``RunSummary`` on read.

    (Folding 100,000 events must be cheap: ``attrs.evolve`` per event is not.)"""

    run_id: str
    status: RunState
    started_at: float
    first_seq: int
    model: str | None = None
    mode: str | None = None
    finished_at: float | None = None
    last_seq: int | None = None
    usage: Usage = Usage()
    error: ErrorInfo | None = None
    steps: int = 0
    first_message: str | None = None
    """The id of the user message the run began with (how a caller in another process
    finds the run that took its message)."""
    output: Any = None

    def summary(self) -> RunSummary:
        return RunSummary(
            self.run_id,
            self.status,
            self.started_at,
            self.first_seq,
            self.finished_at,
            self.last_seq,
            self.model,
            self.mode,
            self.usage,
            self.error,
            self.steps,
            self.output,
        )


class SnapshotInvalid(Exception):
    """A snapshot that cannot be used (missing, older, or not decodable): fold the log."""


@attrs.define
class _Snapshot:
    """The persisted form of a fold (minus history and finished runs)."""

    version: int
    last_seq: int
    mode: str
    model: str | None
    state: dict[str, Any]
    usage: Usage
    grants: tuple[str, ...]
    open_run: RunInfo | None
    pending: list[ApprovalHandle]
    resolutions: dict[str, ApprovalResolved]
    resolved: list[str]
    started: dict[str, ToolStarted]
    suspensions: list[SuspensionHandle]
    suspension_results: dict[str, SuspensionResolved]
    inbox: list[tuple[InputKind, Message]]
    last_error: ErrorInfo | None
    compacted: Compacted | None = None


class SessionFold:
    """The session's state as its log says, up to ``last_seq``.

    ``runs`` holds the runs folded by this instance (after a snapshot: the open run and
    later ones); older finished runs are read from the log on demand.
    """

    __slots__ = (
        "abort_requests",
        "compacted",
        "grants",
        "inbox",
        "last_error",
        "last_seq",
        "mode",
        "model",
        "open_run",
        "pending",
        "resolutions",
        "resolved",
        "runs",
        "session_id",
        "started",
        "state",
        "suspension_results",
        "suspensions",
        "usage",
    )

    def __init__(
        self,
        session_id: str,
        mode: str,
        model: str | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        self.session_id = session_id
        self.mode = mode
        self.model = model
        self.state: dict[str, Any] = dict(state or {})
        self.usage = Usage()
        self.grants: tuple[str, ...] = ()
        self.open_run: str | None = None
        self.runs: dict[str, RunInfo] = {}
        self.pending: dict[str, ApprovalHandle] = {}
        self.resolutions: dict[str, ApprovalResolved] = {}  # by tool call id, open run only
        self.resolved: dict[str, None] = {}  # recently resolved approval ids, oldest first
        self.started: dict[str, ToolStarted] = {}
        self.suspensions: dict[str, SuspensionHandle] = {}
        self.suspension_results: dict[str, SuspensionResolved] = {}  # open run only
        self.inbox: list[tuple[InputKind, Message]] = []
        self.last_error: ErrorInfo | None = None
        self.last_seq = 0
        self.abort_requests: set[str] = set()  # runs another process asked to abort
        self.compacted: Compacted | None = None  # the latest context.compacted

    # -- derived -------------------------------------------------------------------

    @property
    def parked(self) -> bool:
        """A run waits for approvals or suspensions."""
        return self.open_run is not None and bool(self.pending or self.suspensions)

    @property
    def status(self) -> SessionStatus:
        if self.suspensions:
            return "suspended"
        if self.pending:
            return "waiting_approval"
        return "running" if self.open_run is not None else "idle"

    def display(
        self, streaming_text: str = "", tool_buffers: Mapping[str, str] | None = None
    ) -> DisplayState:
        """The UI snapshot: this fold plus what is streaming now."""
        return DisplayState(
            mode=self.mode,
            model=self.model,
            open_run=self.open_run,
            current_message=streaming_text,
            active_tools={c: t.name for c, t in self.started.items() if c not in self.suspensions},
            tool_input_buffers=dict(tool_buffers or {}),
            pending_approvals=tuple(self.pending),
            pending_suspensions=tuple(self.suspensions),
            queued_follow_ups=tuple(m for _, m in self.inbox),
            usage=self.usage,
            last_error=self.last_error,
        )

    def pending_approval(self, approval_id: str) -> ApprovalHandle:
        """The pending approval; ``ApprovalAlreadyResolved`` or ``UnknownApproval`` otherwise."""
        handle = self.pending.get(approval_id)
        if handle is not None:
            return handle
        if approval_id in self.resolved:
            raise ApprovalAlreadyResolved(
                f"approval '{approval_id}' in session '{self.session_id}' was already resolved"
            )
        raise UnknownApproval(f"no pending approval '{approval_id}' in session '{self.session_id}'")

    def pending_suspension(self, call_id: str) -> SuspensionHandle:
        """The pending suspension of ``call_id``; ``UnknownSuspension`` otherwise."""
        handle = self.suspensions.get(call_id)
        if handle is None:
            raise UnknownSuspension(
                f"no pending suspension for call '{call_id}' in session '{self.session_id}' (unknown or already resumed)"
            )
        return handle

    # -- the reducer -----------------------------------------------------------------

    def apply(self, event: Event) -> Message | None:
        """Fold one event; returns the message it adds to the history, if any."""
        payload = event.payload
        run_id = event.run_id
        added: Message | None = None
        if isinstance(payload, MessageAdded):
            added = payload.message
            info = self.runs.get(run_id) if run_id else None
            if info is not None:
                if added.role == "assistant":
                    info.steps += 1
                elif added.role == "user" and info.first_message is None:
                    info.first_message = added.id
            if self.inbox and any(m.id == added.id for _, m in self.inbox):
                self.inbox = [(k, m) for k, m in self.inbox if m.id != added.id]
        elif isinstance(payload, ToolFinished):
            self.started.pop(payload.call_id, None)
            self.resolutions.pop(payload.call_id, None)
            self.suspension_results.pop(payload.call_id, None)
            added = Message("tool", (payload.result,), id=payload.message_id, created_at=event.at)
        elif isinstance(payload, ToolStarted):
            self.started[payload.call_id] = payload
        elif isinstance(payload, UsageRecorded):
            self.usage = self.usage + payload.usage
            info = self.runs.get(run_id) if run_id else None
            if info is not None:
                info.usage = info.usage + payload.usage
        elif isinstance(payload, RunStarted) and run_id:
            self.runs[run_id] = RunInfo(
                run_id, "running", event.at, event.seq, model=payload.model, mode=payload.mode
            )
            self.last_error = None
            self.open_run = run_id
        elif isinstance(payload, RunFinished) and run_id:
            ended = self.runs.get(run_id)
            if ended is None:
                ended = self.runs[run_id] = RunInfo(run_id, "running", event.at, event.seq)
            ended.status, ended.finished_at, ended.last_seq, ended.error = (
                payload.status,
                event.at,
                event.seq,
                payload.error,
            )
            ended.output = payload.output
            self.last_error = payload.error
            self.abort_requests.discard(run_id)
            if self.open_run == run_id:
                self.open_run = None
                self.pending.clear()
                self.resolutions.clear()
                self.suspensions.clear()
                self.suspension_results.clear()
        elif isinstance(payload, ApprovalRequested):
            self._mark_run(run_id, "waiting_approval")
            self.pending[payload.approval_id] = ApprovalHandle(
                payload.approval_id,
                self.session_id,
                run_id or "",
                payload.call_id,
                payload.tool,
                payload.arguments,
                payload.category,
                event.at,
                payload.expires_at,
            )
        elif isinstance(payload, ApprovalResolved):
            handle = self.pending.pop(payload.approval_id, None)
            if handle is not None:
                self.resolutions[handle.tool_call_id] = payload
            self.resolved[payload.approval_id] = None
            if len(self.resolved) > RESOLVED_MEMORY:
                del self.resolved[next(iter(self.resolved))]
            if not self.pending and not self.suspensions:
                self._mark_run(run_id, "running")
        elif isinstance(payload, SuspensionRequested):
            self._mark_run(run_id, "suspended")
            self.suspensions[payload.call_id] = SuspensionHandle(
                payload.call_id,
                self.session_id,
                run_id or "",
                payload.tool,
                payload.payload,
                event.at,
            )
        elif isinstance(payload, SuspensionResolved):
            if self.suspensions.pop(payload.call_id, None) is not None:
                self.suspension_results[payload.call_id] = payload
            if not self.pending and not self.suspensions:
                self._mark_run(run_id, "running")
        elif isinstance(payload, InputQueued):
            self.inbox.append((payload.kind, payload.message))
        elif isinstance(payload, AbortRequested):
            if payload.run_id == self.open_run:
                self.abort_requests.add(payload.run_id)
        elif isinstance(payload, GrantsChanged):
            self.grants = payload.grants
        elif isinstance(payload, ModeChanged):
            self.mode = payload.mode
        elif isinstance(payload, ModelChanged):
            self.model = payload.model
        elif isinstance(payload, StateChanged):
            self.state = dict(payload.state)
        elif isinstance(payload, ContextCompacted):
            self.compacted = Compacted(event.seq, event.at, payload)
        self.last_seq = event.seq
        return added

    def preview(self, events: Sequence[Event]) -> SessionFold:
        """A copy of this fold with ``events`` folded in; this fold is left as it is (the
        snapshot a commit stores along with its events, before storage has them)."""
        copy = SessionFold.__new__(SessionFold)
        for name in SessionFold.__slots__:
            value = getattr(self, name)
            if isinstance(value, dict | list | set):
                value = type(value)(value)
            setattr(copy, name, value)
        for run_id in {e.run_id for e in events if e.run_id}:
            info = copy.runs.get(run_id)
            if info is not None:
                copy.runs[run_id] = attrs.evolve(info)
        for event in events:
            copy.apply(event)
        return copy

    def _mark_run(self, run_id: str | None, status: RunState) -> None:
        info = self.runs.get(run_id) if run_id else None
        if info is not None and info.finished_at is None:
            info.status = status

    # -- the snapshot ----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """This fold as JSON-ready data for ``SessionRecord.snapshot``."""
        open_info = self.runs.get(self.open_run) if self.open_run else None
        data: dict[str, Any] = converter.unstructure(
            _Snapshot(
                SNAPSHOT_VERSION,
                self.last_seq,
                self.mode,
                self.model,
                self.state,
                self.usage,
                self.grants,
                open_info,
                list(self.pending.values()),
                self.resolutions,
                list(self.resolved),
                self.started,
                list(self.suspensions.values()),
                self.suspension_results,
                self.inbox,
                self.last_error,
                self.compacted,
            )
        )
        return data

    @classmethod
    def from_snapshot(
        cls, session_id: str, data: Mapping[str, Any] | None, last_seq: int
    ) -> SessionFold:
        """The fold a snapshot stands for; ``SnapshotInvalid`` if it cannot be trusted."""
        if not data:
            raise SnapshotInvalid("no snapshot")
        if data.get("version") != SNAPSHOT_VERSION:
            raise SnapshotInvalid(f"snapshot version {data.get('version')!r}")
        try:
            snap = converter.structure(data, _Snapshot)
        except (cattrs.BaseValidationError, KeyError, TypeError, ValueError) as exc:
            raise SnapshotInvalid(f"snapshot does not decode: {type(exc).__name__}") from None
        if snap.last_seq != last_seq:
            raise SnapshotInvalid(f"snapshot is of seq {snap.last_seq}, the record says {last_seq}")
        if any(h.session_id != session_id for h in snap.pending) or any(
            s.session_id != session_id for s in snap.suspensions
        ):
            raise SnapshotInvalid("snapshot of another session")
        fold = cls(session_id, snap.mode, snap.model, snap.state)
        fold.usage = snap.usage
        fold.grants = snap.grants
        if snap.open_run is not None:
            fold.open_run = snap.open_run.run_id
            fold.runs[snap.open_run.run_id] = snap.open_run
        fold.pending = {h.approval_id: h for h in snap.pending}
        fold.resolutions = dict(snap.resolutions)
        fold.resolved = dict.fromkeys(snap.resolved)
        fold.started = dict(snap.started)
        fold.suspensions = {s.call_id: s for s in snap.suspensions}
        fold.suspension_results = dict(snap.suspension_results)
        fold.inbox = list(snap.inbox)
        fold.last_error = snap.last_error
        fold.compacted = snap.compacted
        fold.last_seq = snap.last_seq
        return fold
