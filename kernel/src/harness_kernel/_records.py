"""Records: messages, usage, the session record, runs and the durable events.

Every record is a frozen attrs class. ``codec.py`` turns them into JSON-ready dicts
carrying ``schema_version`` and back; nothing here knows about storage.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal, TypeAlias

import attrs

from ._context import ContextCompacted

__all__ = [
    "AbortRequested",
    "ApprovalRequested",
    "ApprovalResolved",
    "ContextCompacted",
    "ErrorInfo",
    "Event",
    "EventPayload",
    "FilePart",
    "GrantsChanged",
    "ImagePart",
    "InputKind",
    "InputQueued",
    "Lease",
    "MAX_INLINE_BYTES",
    "Message",
    "MessageAdded",
    "ModeChanged",
    "ModelChanged",
    "Part",
    "ReasoningPart",
    "Remember",
    "Role",
    "RunFinished",
    "RunResult",
    "RunStarted",
    "RunState",
    "RunStatus",
    "RunSummary",
    "SessionRecord",
    "SessionStatus",
    "StateChanged",
    "SuspensionRequested",
    "SuspensionResolved",
    "TextPart",
    "ToolCallPart",
    "ToolFinished",
    "ToolOutcome",
    "ToolResultPart",
    "ToolStarted",
    "UnknownPayload",
    "Usage",
    "UsageRecorded",
    "new_id",
]

Role: TypeAlias = Literal["system", "user", "assistant", "tool"]
RunStatus: TypeAlias = Literal["completed", "failed", "aborted", "waiting_approval", "suspended"]
ToolOutcome: TypeAlias = Literal["ok", "error", "invalid_arguments", "denied", "in_doubt"]
SessionStatus: TypeAlias = Literal["idle", "running", "waiting_approval", "suspended"]
RunState: TypeAlias = Literal[
    "running", "completed", "failed", "aborted", "waiting_approval", "suspended"
]
"""A ``RunStatus``, or ``running`` while the run works."""
InputKind: TypeAlias = Literal["follow_up", "steer"]
Remember: TypeAlias = Literal["tool", "category"]


def new_id(prefix: str) -> str:
    """A fresh, URL-safe, time-ordered id such as ``run_0193f2c1a4b2_9f2c4e1d``."""
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}_{secrets.token_hex(4)}"


@attrs.frozen
class Usage:
    """Token counts. Adding two ``Usage`` values sums them; providers stream one as an event.

    ``input_tokens`` counts every prompt token, cached ones included (for Anthropic:
    input + cache reads + cache writes); ``cache_read_tokens`` and ``cache_write_tokens``
    say how many of them were served from or written to a prompt cache;
    ``reasoning_tokens`` how many of ``output_tokens`` the model spent thinking (where
    the API reports it). ``cost`` is what the tokens cost in US dollars, set by the
    store from its price table (``create_session_store(prices=...)``) or reported by
    the provider; ``None`` when no price is known. A sum's cost counts the known costs."""

    type: ClassVar[str] = "usage"

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            None
            if self.cost is None and other.cost is None
            else (self.cost or 0.0) + (other.cost or 0.0),
        )


@attrs.frozen
class TextPart:
    """Plain text in a message."""

    text: str


@attrs.frozen
class ToolCallPart:
    """A tool call the assistant asked for; ``arguments`` is the parsed JSON object."""

    call_id: str
    name: str
    arguments: Mapping[str, Any]


@attrs.frozen
class ToolResultPart:
    """The result of a tool call, as the model will see it."""

    call_id: str
    content: str
    is_error: bool = False


@attrs.frozen
class ReasoningPart:
    """What the model thought before answering, as its API hands it over.

    ``text`` is the reasoning text the API shows (Anthropic's thinking, a compatible
    server's ``reasoning_content``) or, with ``summary``, a summary of it (the OpenAI
    Responses API). The opaque fields are the API's own and are sent back unchanged on
    the next turn by the provider that made them: ``signature`` (Anthropic thinking),
    ``encrypted`` (OpenAI encrypted reasoning content, or the data of an Anthropic
    ``redacted_thinking`` block, then ``redacted`` is true and ``text`` empty), ``id``
    (the API's item id). ``source`` names the API that can read them (``"anthropic"``,
    ``"openai-responses"``); other providers leave the part out of their requests.
    Never part of ``Message.text``.
    """

    text: str = ""
    summary: bool = False
    signature: str | None = None
    encrypted: str | None = None
    redacted: bool = False
    id: str | None = None
    source: str | None = None


MAX_INLINE_BYTES = 20 * 1024 * 1024
"""The largest ``data`` an ``ImagePart`` or ``FilePart`` may carry inline (20 MiB).

Bigger content is refused when the part is built (``ValueError``), before anything is
stored or sent; pass a ``url`` or a host-resolved ``ref`` instead. Providers may refuse
smaller sizes their API does not take (``BadRequest``, before the request is sent)."""


def _size(data: bytes | None) -> str:
    return "None" if data is None else f"<{len(data)} bytes>"


def _one_source(instance: ImagePart | FilePart, _: Any, __: Any) -> None:
    kind = type(instance).__name__
    given = [name for name in ("data", "url", "ref") if getattr(instance, name) is not None]
    if len(given) != 1:
        raise ValueError(
            f"{kind} takes exactly one of data, url or ref (got {', '.join(given) or 'none'})"
        )
    if instance.data is not None:
        if not isinstance(instance.data, bytes):
            raise ValueError(f"{kind}.data must be bytes, not {type(instance.data).__name__}")
        if len(instance.data) > MAX_INLINE_BYTES:
            raise ValueError(
                f"{kind} is too large to send inline: {len(instance.data)} bytes, the limit is "
                f"{MAX_INLINE_BYTES} bytes (MAX_INLINE_BYTES); pass a url or a ref instead"
            )
        if not instance.media_type:
            raise ValueError(f"{kind} with inline data needs a media_type (such as 'image/png')")


@attrs.frozen
class ImagePart:
    """An image in a message: inline ``data`` (bytes, at most ``MAX_INLINE_BYTES``), a
    ``url`` the API fetches (``https:`` or ``data:``), or a ``ref`` the host resolves
    (in a ``before_model_call`` hook) before the request is sent. Exactly one is set;
    ``media_type`` (``image/png``, ``image/jpeg``, ...) is required with ``data``."""

    media_type: str = ""
    data: bytes | None = attrs.field(default=None, validator=_one_source, repr=_size)
    url: str | None = None
    ref: str | None = None


@attrs.frozen
class FilePart:
    """A document in a message (a PDF, plain text, ...), given like an ``ImagePart``:
    inline ``data`` up to ``MAX_INLINE_BYTES``, a ``url`` or a host-resolved ``ref``;
    ``name`` is the file name some APIs show the model."""

    media_type: str = ""
    data: bytes | None = attrs.field(default=None, validator=_one_source, repr=_size)
    url: str | None = None
    ref: str | None = None
    name: str | None = None


Part: TypeAlias = TextPart | ToolCallPart | ToolResultPart | ReasoningPart | ImagePart | FilePart


def _parts(parts: Iterable[Part]) -> tuple[Part, ...]:
    return tuple(parts)


def _names(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(names)


@attrs.frozen
class Message:
    """One message of a conversation: ``role`` and a tuple of parts."""

    role: Role
    parts: tuple[Part, ...] = attrs.field(converter=_parts)
    id: str = attrs.field(factory=lambda: new_id("msg"))
    created_at: float = attrs.field(factory=time.time)

    @property
    def text(self) -> str:
        """The text parts joined, in order; for a ``tool`` message, the content of its
        results (one per line when it holds several)."""
        if self.role == "tool":
            return "\n".join(p.content for p in self.parts if isinstance(p, ToolResultPart))
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    @property
    def tool_calls(self) -> tuple[ToolCallPart, ...]:
        return tuple(p for p in self.parts if isinstance(p, ToolCallPart))

    @property
    def reasoning(self) -> tuple[ReasoningPart, ...]:
        return tuple(p for p in self.parts if isinstance(p, ReasoningPart))

    @classmethod
    def user(cls, text: str, *attachments: ImagePart | FilePart) -> Message:
        """A user message: ``text``, then images or files (``Message.user("What is this?", image)``)."""
        return cls("user", (TextPart(text), *attachments))


@attrs.frozen
class ErrorInfo:
    """A sanitized error: what users, streams and ``RunResult.error`` see."""

    code: str
    message: str
    retryable: bool = False
    stack: str | None = None


@attrs.frozen
class Lease:
    """Who runs a session now: ``owner`` (a store instance), its ``host`` and ``pid``,
    until ``expires_at`` (epoch seconds) unless renewed. Written with compare-and-swap on
    the record, so at most one live lease exists."""

    owner: str
    host: str
    pid: int
    expires_at: float

    def live(self, now: float) -> bool:
        return self.expires_at > now


@attrs.frozen
class SessionRecord:
    """Snapshot of a session's folded log plus the fields listing filters on.

    ``last_seq`` is the sequence number the snapshot folds up to; ``revision`` is the
    compare-and-swap token of ``SessionStorage.save``.
    """

    id: str
    agent: str
    labels: Mapping[str, str] = attrs.field(factory=dict)
    created_at: float = attrs.field(factory=time.time)
    updated_at: float = attrs.field(factory=time.time)
    mode: str | None = None
    model: str | None = None
    state: Mapping[str, Any] = attrs.field(factory=dict)
    usage: Usage = Usage()
    status: SessionStatus = "idle"
    last_seq: int = 0
    revision: int = 0
    incarnation: str = ""
    """Random id given by ``create``: a session deleted and created again is a new
    incarnation, and appends name the one they continue. ``""``: written before
    incarnations existed (never checked)."""
    lease: Lease | None = None
    """The store running the session, while a run lives (see ``Lease``)."""
    snapshot: Mapping[str, Any] | None = None
    """The folded state a loaded session needs (see ``SessionRecord`` above), as JSON-ready
    data the kernel reads back; ``None`` (or a snapshot that does not decode) makes the
    kernel fold the log instead."""
    title: str = ""
    """What people call the session: set by the host (``Session.set_metadata``), else
    taken from the first user message; ``""`` until either happens."""
    preview: str = ""
    """The start of the last answer, for a listing."""
    tags: tuple[str, ...] = ()
    """Tags people gave the session (sorted, each once); listings filter on them."""
    pinned: bool = False
    """Pinned by people; listings filter on it."""


@attrs.frozen
class RunSummary:
    """One run as recorded in the log; what ``Session.runs()`` lists."""

    run_id: str
    status: RunState
    started_at: float
    first_seq: int
    finished_at: float | None = None
    last_seq: int | None = None
    model: str | None = None
    mode: str | None = None
    usage: Usage = Usage()
    error: ErrorInfo | None = None
    steps: int = 0
    output: Any = None  # the typed answer as JSON data


@attrs.frozen
class RunResult:
    """What ``send`` returns and the last item of ``stream`` carries."""

    session_id: str
    run_id: str
    status: RunStatus
    text: str = ""
    messages: tuple[Message, ...] = ()
    tool_calls: tuple[ToolCallPart, ...] = ()
    usage: Usage = Usage()
    error: ErrorInfo | None = None
    duration_ms: float = 0.0
    output: Any = None
    """The answer as an instance of the run's ``output_type`` (``None`` without one)."""


# -- durable event payloads --------------------------------------------------------


@attrs.frozen
class MessageAdded:
    """A message joined the history (user input, assistant answer or tool result)."""

    type: ClassVar[str] = "message.added"
    message: Message


@attrs.frozen
class RunStarted:
    """A run began. ``trigger`` says why: ``send``, ``follow_up`` or ``resume``."""

    type: ClassVar[str] = "run.started"
    model: str
    mode: str
    trigger: str = "send"
    output: str | None = None  # the qualified name of the run's output type


@attrs.frozen
class RunFinished:
    """A run ended with ``status`` (a ``RunStatus``)."""

    type: ClassVar[str] = "run.finished"
    status: RunStatus
    usage: Usage = Usage()
    error: ErrorInfo | None = None
    duration_ms: float = 0.0
    steps: int = 0
    output: Any = None  # the typed answer as JSON data


@attrs.frozen
class ToolStarted:
    """A tool began executing. Without a matching ``tool.finished`` it is in doubt."""

    type: ClassVar[str] = "tool.started"
    call_id: str
    name: str
    arguments: Mapping[str, Any]


@attrs.frozen
class ToolFinished:
    """A tool call ended; ``result`` joins the history as a ``tool`` message."""

    type: ClassVar[str] = "tool.finished"
    call_id: str
    name: str
    outcome: ToolOutcome
    result: ToolResultPart
    message_id: str = attrs.field(factory=lambda: new_id("msg"))
    duration_ms: float = 0.0


@attrs.frozen
class ApprovalRequested:
    """A tool call waits for a person's decision."""

    type: ClassVar[str] = "approval.requested"
    approval_id: str
    call_id: str
    tool: str
    arguments: Mapping[str, Any]
    category: str | None = None
    expires_at: float | None = None


@attrs.frozen
class ApprovalResolved:
    """A pending approval was approved or denied (``reason`` reaches the model)."""

    type: ClassVar[str] = "approval.resolved"
    approval_id: str
    approved: bool
    reason: str | None = None
    remember: Remember | None = None


@attrs.frozen
class SuspensionRequested:
    """A tool suspended the run until ``resume(call_id, data)``."""

    type: ClassVar[str] = "suspension.requested"
    call_id: str
    tool: str
    payload: Any = None


@attrs.frozen
class SuspensionResolved:
    """A suspension was resumed with ``data`` or cancelled."""

    type: ClassVar[str] = "suspension.resolved"
    call_id: str
    data: Any = None
    cancelled: bool = False


@attrs.frozen
class InputQueued:
    """A user message waits for its turn: ``follow_up`` (runs after the current run) or
    ``steer`` (joins the current run before its next model step)."""

    type: ClassVar[str] = "input.queued"
    kind: InputKind
    message: Message


@attrs.frozen
class GrantsChanged:
    """The session's approval grants: ``tool:<name>`` and ``category:<name>`` entries."""

    type: ClassVar[str] = "grants.changed"
    grants: tuple[str, ...] = attrs.field(converter=_names, default=())


@attrs.frozen
class ModeChanged:
    type: ClassVar[str] = "mode.changed"
    previous: str | None
    mode: str


@attrs.frozen
class ModelChanged:
    """The session's model override changed (``None`` clears it)."""

    type: ClassVar[str] = "model.changed"
    previous: str | None
    model: str | None


@attrs.frozen
class StateChanged:
    """The session state after ``update_state``; ``changed`` lists the fields set."""

    type: ClassVar[str] = "state.changed"
    state: Mapping[str, Any]
    changed: tuple[str, ...] = attrs.field(converter=_names, default=())


@attrs.frozen
class UsageRecorded:
    """Tokens one model call used."""

    type: ClassVar[str] = "usage.recorded"
    usage: Usage
    model: str


@attrs.frozen
class AbortRequested:
    """Another process asked the owner to abort run ``run_id`` (a control event: the
    owner applies it within its poll interval)."""

    type: ClassVar[str] = "control.abort"
    run_id: str
    by: str = ""


@attrs.frozen
class UnknownPayload:
    """An event whose type this version does not know (newer writer, or a plugin's)."""

    type: str
    data: Mapping[str, Any]


EventPayload: TypeAlias = (
    MessageAdded
    | RunStarted
    | RunFinished
    | ToolStarted
    | ToolFinished
    | ApprovalRequested
    | ApprovalResolved
    | SuspensionRequested
    | SuspensionResolved
    | InputQueued
    | GrantsChanged
    | ModeChanged
    | ModelChanged
    | StateChanged
    | UsageRecorded
    | AbortRequested
    | ContextCompacted
    | UnknownPayload
)

PAYLOAD_TYPES: dict[str, type[Any]] = {
    cls.type: cls
    for cls in (
        MessageAdded,
        RunStarted,
        RunFinished,
        ToolStarted,
        ToolFinished,
        ApprovalRequested,
        ApprovalResolved,
        SuspensionRequested,
        SuspensionResolved,
        InputQueued,
        GrantsChanged,
        ModeChanged,
        ModelChanged,
        StateChanged,
        UsageRecorded,
        AbortRequested,
        ContextCompacted,
    )
}


@attrs.frozen
class Event:
    """One durable entry of a session's log.

    ``seq`` is contiguous from 1 per session; ``run_id`` ties the event to a run.
    """

    seq: int
    payload: EventPayload
    at: float = attrs.field(factory=time.time)
    run_id: str | None = None

    @property
    def type(self) -> str:
        return self.payload.type
