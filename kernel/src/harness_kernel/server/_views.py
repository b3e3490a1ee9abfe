"""What the API reads and answers, as attrs classes: request bodies and responses.

The OpenAPI document's schemas are generated from these classes, request bodies are
checked against the same schemas, and responses are these classes unstructured by the
kernel's converter, so the three cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from harness_kernel import ApprovalHandle, Message, RunSummary, SuspensionHandle, Usage

__all__ = [
    "Aborted",
    "ApprovalList",
    "ApproveBody",
    "BtwAnswer",
    "BtwBody",
    "CreateSessionBody",
    "DenyBody",
    "EventData",
    "EventList",
    "Health",
    "HistoryPage",
    "MetadataBody",
    "ProblemDocument",
    "Queued",
    "QueueBody",
    "ResumeBody",
    "RunList",
    "SendBody",
    "SessionPage",
    "SessionSummary",
    "SessionView",
    "SuspensionList",
    "Waiting",
]


def _doc(text: str) -> dict[str, str]:
    return {"description": text}


# -- request bodies -------------------------------------------------------------------


@attrs.frozen
class CreateSessionBody:
    """A new session: its id (generated when absent) and labels (your key's tenant
    labels are added and cannot be changed)."""

    id: str | None = attrs.field(default=None, metadata=_doc("1-128 of letters, digits, ._:@-"))
    labels: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class SendBody:
    """A user message to run the agent on."""

    text: str
    model: str | None = attrs.field(default=None, metadata=_doc("a model ref for this run"))


@attrs.frozen
class QueueBody:
    """A user message for a follow-up or for steering the current run."""

    text: str


@attrs.frozen
class ApproveBody:
    """Approve a pending tool call; ``remember`` also approves the tool (or its category)
    for the rest of the session."""

    remember: Literal["tool", "category"] | None = None


@attrs.frozen
class DenyBody:
    """Deny a pending tool call; the reason reaches the model."""

    reason: str = "denied by the user"


@attrs.frozen
class ResumeBody:
    """Answer a suspended tool call: ``data`` becomes the tool's result."""

    data: Any = None


@attrs.frozen
class MetadataBody:
    """Rename, tag or pin a session; a field left out stays as it is. ``title: ""``
    goes back to the title taken from the first message; ``tags`` replaces the tags."""

    title: str | None = attrs.field(default=None, metadata=_doc("at most 200 characters"))
    tags: tuple[str, ...] | None = attrs.field(
        default=None, metadata=_doc("at most 32, each 1-64 characters without spaces")
    )
    pinned: bool | None = None


@attrs.frozen
class BtwBody:
    """A side question on a snapshot of the history: no tools, nothing recorded."""

    question: str
    model: str | None = None


# -- responses ------------------------------------------------------------------------


@attrs.frozen
class Health:
    """The service's state: ``ok``, or ``starting`` / ``stopping`` when not ready."""

    status: str


@attrs.frozen
class ProblemDocument:
    """An error (RFC 9457); ``code`` is the kernel's error code."""

    type: str
    title: str
    status: int
    detail: str
    code: str


@attrs.frozen
class SessionSummary:
    """A session as listed."""

    id: str
    agent: str
    labels: Mapping[str, str]
    created_at: float
    updated_at: float
    status: str
    mode: str | None = None
    model: str | None = None
    usage: Usage = Usage()
    last_seq: int = 0
    title: str = attrs.field(default="", metadata=_doc("set by people, else the first message"))
    preview: str = attrs.field(default="", metadata=_doc("the start of the last answer"))
    tags: tuple[str, ...] = ()
    pinned: bool = False


@attrs.frozen
class SessionPage:
    """A page of sessions, newest first; pass ``next_cursor`` back for the next."""

    items: tuple[SessionSummary, ...]
    next_cursor: str | None = None


@attrs.frozen
class SessionView:
    """One loaded session: its settings, the run in progress and what waits for people."""

    id: str
    agent: str
    labels: Mapping[str, str]
    status: str
    mode: str
    model: str
    model_override: str | None
    usage: Usage
    last_seq: int
    current_run: RunSummary | None
    pending_approvals: tuple[ApprovalHandle, ...]
    pending_suspensions: tuple[SuspensionHandle, ...]
    queued_follow_ups: tuple[Message, ...]
    grants: tuple[str, ...]
    state: Any
    title: str = ""
    preview: str = ""
    tags: tuple[str, ...] = ()
    pinned: bool = False


@attrs.frozen
class EventData:
    """A durable event in its persisted form; ``data`` is the payload's fields."""

    seq: int
    type: str
    at: float
    run_id: str | None
    data: Mapping[str, Any]
    schema_version: int


@attrs.frozen
class EventList:
    items: tuple[EventData, ...]


@attrs.frozen
class RunList:
    """Every run of a session, oldest first."""

    items: tuple[RunSummary, ...]


@attrs.frozen
class HistoryPage:
    """Messages in order; pass ``next_before`` as ``before`` for the older ones."""

    items: tuple[Message, ...]
    next_before: str | None = None


@attrs.frozen
class ApprovalList:
    items: tuple[ApprovalHandle, ...]


@attrs.frozen
class SuspensionList:
    items: tuple[SuspensionHandle, ...]


@attrs.frozen
class Waiting:
    """The decision was recorded; the run still waits for other approvals or answers."""

    status: Literal["waiting"]
    pending_approvals: tuple[str, ...]
    pending_suspensions: tuple[str, ...]


@attrs.frozen
class Queued:
    """The message was queued (persisted) for the session."""

    queued: bool


@attrs.frozen
class Aborted:
    """Whether there was a run to abort."""

    aborted: bool


@attrs.frozen
class BtwAnswer:
    answer: str
