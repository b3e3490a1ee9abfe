"""The ``context.compacted`` event: a summary standing for the start of a session.

Kept apart from ``_records`` (which holds every other payload) so the compaction's record
has one home; ``_records`` lists it among the durable payloads.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

__all__ = ["Compacted", "ContextCompacted"]


@attrs.frozen
class ContextCompacted:
    """The model context was compacted: ``summary`` stands for the events up to
    ``last_seq``.

    ``first_seq``..``last_seq`` are the events this compaction summarized; the summary of
    the compaction before it (the event at ``previous_seq``, if any) was folded in, so
    model requests after this event send the summary plus the messages after
    ``last_seq``. ``tokens_before`` and ``tokens_after`` are the context's size in tokens
    (as counted for the policy) without and with the compaction; ``model`` made the
    summary (``None``: a host function).
    """

    type: ClassVar[str] = "context.compacted"
    summary: str
    first_seq: int
    last_seq: int
    previous_seq: int | None = None
    tokens_before: int = 0
    tokens_after: int = 0
    model: str | None = None


@attrs.frozen
class Compacted:
    """The latest compaction as the fold keeps it: the event's seq and time with it."""

    seq: int
    at: float
    event: ContextCompacted
