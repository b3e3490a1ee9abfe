"""Events for the storage tests, built through the public API only."""

from __future__ import annotations

from typing import Any

import attrs

from harness_kernel import Event, Message
from harness_kernel.testing import sample_events

_MESSAGE_ADDED = next(e.payload for e in sample_events() if e.payload.type == "message.added")


def user_message(text: str) -> Any:
    """A ``message.added`` payload holding a user message with ``text``."""
    return attrs.evolve(_MESSAGE_ADDED, message=Message.user(text))


def message_event(seq: int, text: str, at: float = 1000.0) -> Event:
    return Event(seq, user_message(text), at)


def message_text(event: Event) -> str:
    """The text of a ``message.added`` event."""
    return str(event.payload.message.text)  # type: ignore[union-attr]
