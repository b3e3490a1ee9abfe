"""``display_state``: one snapshot of a session for UIs, kept by a pure reducer.

The reducer folds durable events and stream-only events alike. Folding the persisted
log alone gives the same state as the live session whenever no model call is streaming
(stream-only fields are then empty), which is how tests check it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from ._records import (
    ApprovalRequested,
    ApprovalResolved,
    ErrorInfo,
    Event,
    InputQueued,
    Message,
    MessageAdded,
    ModeChanged,
    ModelChanged,
    RunFinished,
    RunStarted,
    SuspensionRequested,
    SuspensionResolved,
    ToolFinished,
    ToolStarted,
    Usage,
    UsageRecorded,
)
from .contracts import TextDelta, ToolCallDelta, ToolCallStart

__all__ = ["DisplayState", "DisplayStateChanged", "reduce"]


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
        return self.open_run is not None and not self.pending_approvals and not self.pending_suspensions


@attrs.frozen
class DisplayStateChanged:
    """Stream-only event following every change of ``display_state``."""

    type: ClassVar[str] = "display_state_changed"
    state: DisplayState


def _without(items: tuple[str, ...], item: str) -> tuple[str, ...]:
    return tuple(i for i in items if i != item)


def _dequeued(queue: tuple[Message, ...], message_id: str) -> tuple[Message, ...]:
    return tuple(m for m in queue if m.id != message_id)


def reduce(state: DisplayState, item: Any) -> DisplayState:
    """The state after ``item`` (an ``Event`` or a stream-only model event)."""
    if isinstance(item, TextDelta):
        return attrs.evolve(state, current_message=state.current_message + item.text)
    if isinstance(item, ToolCallStart):
        return attrs.evolve(state, tool_input_buffers={**state.tool_input_buffers, item.call_id: ""})
    if isinstance(item, ToolCallDelta):
        buffers = dict(state.tool_input_buffers)
        buffers[item.call_id] = buffers.get(item.call_id, "") + item.arguments
        return attrs.evolve(state, tool_input_buffers=buffers)
    if not isinstance(item, Event):
        return state
    p = item.payload
    if isinstance(p, RunStarted):
        return attrs.evolve(state, open_run=item.run_id, last_error=None, current_message="")
    if isinstance(p, RunFinished):
        return attrs.evolve(
            state, open_run=None, current_message="", tool_input_buffers={}, active_tools={},
            pending_approvals=(), pending_suspensions=(), last_error=p.error,
        )
    if isinstance(p, MessageAdded):
        queued = _dequeued(state.queued_follow_ups, p.message.id)
        if p.message.role == "assistant":
            return attrs.evolve(state, current_message="", tool_input_buffers={}, queued_follow_ups=queued)
        return attrs.evolve(state, queued_follow_ups=queued) if queued != state.queued_follow_ups else state
    if isinstance(p, ToolStarted):
        return attrs.evolve(state, active_tools={**state.active_tools, p.call_id: p.name})
    if isinstance(p, ToolFinished):
        tools = {k: v for k, v in state.active_tools.items() if k != p.call_id}
        return attrs.evolve(state, active_tools=tools, pending_suspensions=_without(state.pending_suspensions, p.call_id))
    if isinstance(p, SuspensionRequested):
        tools = {k: v for k, v in state.active_tools.items() if k != p.call_id}
        return attrs.evolve(state, active_tools=tools, pending_suspensions=(*state.pending_suspensions, p.call_id))
    if isinstance(p, SuspensionResolved):
        return attrs.evolve(state, pending_suspensions=_without(state.pending_suspensions, p.call_id))
    if isinstance(p, ApprovalRequested):
        return attrs.evolve(state, pending_approvals=(*state.pending_approvals, p.approval_id))
    if isinstance(p, ApprovalResolved):
        return attrs.evolve(state, pending_approvals=_without(state.pending_approvals, p.approval_id))
    if isinstance(p, InputQueued):
        return attrs.evolve(state, queued_follow_ups=(*state.queued_follow_ups, p.message))
    if isinstance(p, UsageRecorded):
        return attrs.evolve(state, usage=state.usage + p.usage)
    if isinstance(p, ModeChanged):
        return attrs.evolve(state, mode=p.mode)
    if isinstance(p, ModelChanged):
        return attrs.evolve(state, model=p.model)
    return state
