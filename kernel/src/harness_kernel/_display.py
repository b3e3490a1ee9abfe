"""``display_state``: one snapshot of a session for UIs.

It is derived from the session's one fold of its log (``_fold.SessionFold.display``)
plus what is streaming now, so the UI and the run loop never disagree. Folding the
persisted log alone gives the same state as the live session whenever no model call is
streaming (stream-only fields are then empty), which is how tests check it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import attrs

from ._records import (
    ErrorInfo,
    Message,
    Usage,
)

__all__ = ["DisplayState", "DisplayStateChanged"]


@attrs.frozen
class DisplayState:
    """What a UI shows. ``is_running`` is true while a run works (not while it is parked
    on an approval or a suspension); ``current_message`` is the assistant text streaming
    now; ``tool_input_buffers`` the tool arguments streaming now, by call id;
    ``active_tools`` the tools executing (call id to name); ``pending_approvals`` and
    ``pending_suspensions`` approval ids and call ids; ``queued_follow_ups`` the queued
    user messages (follow-ups and steering not yet taken); ``model`` the session's model
    override (``None``: the mode's or the store's default)."""

    mode: str
    model: str | None = None
    open_run: str | None = None
    current_message: str = ""
    active_tools: Mapping[str, str] = attrs.field(factory=dict)
    tool_input_buffers: Mapping[str, str] = attrs.field(factory=dict)
    pending_approvals: tuple[str, ...] = ()
    pending_suspensions: tuple[str, ...] = ()
    queued_follow_ups: tuple[Message, ...] = ()
    usage: Usage = Usage()
    last_error: ErrorInfo | None = None

    @property
    def is_running(self) -> bool:
        return (
            self.open_run is not None
            and not self.pending_approvals
            and not self.pending_suspensions
        )


@attrs.frozen
class DisplayStateChanged:
    """Stream-only event following every change of ``display_state``."""

    type: ClassVar[str] = "display_state_changed"
    state: DisplayState
