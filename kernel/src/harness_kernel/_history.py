"""A loaded session's message history, by seq; the part before a snapshot is read late."""

from __future__ import annotations

import bisect
import math

from ._fold import RunInfo
from ._records import Event, Message
from .contracts import SessionStorage

__all__ = ["READ_PAGE", "History", "read_run"]

READ_PAGE = 500
"""Events read per storage call when a run's events are listed."""


async def read_run(storage: SessionStorage, session_id: str, info: RunInfo) -> list[Event]:
    """The durable events of the run ``info`` describes, read back from storage."""
    events: list[Event] = []
    after = info.first_seq - 1
    stop = info.last_seq or math.inf
    while after < stop:
        batch = await storage.read(session_id, after_seq=after, limit=READ_PAGE)
        if not batch:
            break
        events.extend(e for e in batch if e.run_id == info.run_id and e.seq <= stop)
        after = batch[-1].seq
    return events


class History:
    """The session's messages, with the seq of each; the part before ``base_seq`` is read
    from storage on first use (after a hydrate from a snapshot)."""

    def __init__(self, base_seq: int) -> None:
        self.base_seq = base_seq
        self.loaded = base_seq == 0
        self.messages: list[Message] = []
        self.seqs: list[int] = []
        self.older_runs: dict[str, RunInfo] = {}
        self._index: dict[str, int] | None = None

    def add(self, seq: int, message: Message) -> None:
        self.messages.append(message)
        self.seqs.append(seq)
        if self._index is not None:
            self._index[message.id] = len(self.messages) - 1

    def prepend(self, seqs: list[int], messages: list[Message], runs: dict[str, RunInfo]) -> None:
        self.messages[:0] = messages
        self.seqs[:0] = seqs
        self.older_runs = runs
        self._index = None
        self.loaded = True

    def index_of(self, message_id: str) -> int | None:
        if self._index is None:
            self._index = {m.id: i for i, m in enumerate(self.messages)}
        return self._index.get(message_id)

    def since(self, seq: int) -> tuple[Message, ...]:
        return tuple(self.messages[bisect.bisect_left(self.seqs, seq) :])
