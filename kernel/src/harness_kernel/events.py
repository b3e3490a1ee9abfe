"""The durable event payloads, for matching on ``event.payload`` with ``isinstance``.

Every ``Event`` in a session's log has one of these as ``payload``; ``event.type`` is the
payload's ``type`` string (``"message.added"``, ...). ``UnknownPayload`` holds an event
type this kernel version does not know (written by a newer one, or by a plugin).
"""

from __future__ import annotations

from ._records import (
    ApprovalRequested,
    ApprovalResolved,
    Event,
    EventPayload,
    GrantsChanged,
    InputQueued,
    MessageAdded,
    ModeChanged,
    ModelChanged,
    RunFinished,
    RunStarted,
    StateChanged,
    SuspensionRequested,
    SuspensionResolved,
    ToolFinished,
    ToolStarted,
    UnknownPayload,
    UsageRecorded,
)

__all__ = [
    "ApprovalRequested",
    "ApprovalResolved",
    "Event",
    "EventPayload",
    "GrantsChanged",
    "InputQueued",
    "MessageAdded",
    "ModeChanged",
    "ModelChanged",
    "RunFinished",
    "RunStarted",
    "StateChanged",
    "SuspensionRequested",
    "SuspensionResolved",
    "ToolFinished",
    "ToolStarted",
    "UnknownPayload",
    "UsageRecorded",
]
