"""Builtin in-process components: memory storage and the memory log sink."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs

from ._records import Event, SessionRecord
from .contracts import (
    ListOrder,
    LogSink,
    Page,
    SessionFilter,
    SessionStorage,
    StorageCapabilities,
)
from .errors import Conflict, SessionExists, SessionNotFound
from .storage import check_append_record, check_batch, check_incarnation, page_in_order

__all__ = ["MemoryLogSink", "MemoryStorage"]


@attrs.define
class _Entry:
    record: SessionRecord
    events: list[Event] = attrs.Factory(list)


class MemoryStorage(SessionStorage):
    """Sessions in a dict: fast, honours compare-and-swap, gone with the process."""

    capabilities: ClassVar[StorageCapabilities] = StorageCapabilities(
        cross_process_fencing=False, durable=False, append_record=True
    )

    def __init__(self) -> None:
        import trio  # here: the builtins module (imported to list plugins) needs no trio

        self._checkpoint = trio.lowlevel.checkpoint
        self._entries: dict[str, _Entry] = {}

    def _entry(self, session_id: str) -> _Entry:
        try:
            return self._entries[session_id]
        except KeyError:
            raise SessionNotFound(f"session '{session_id}' not found") from None

    async def create(self, record: SessionRecord) -> None:
        await self._checkpoint()
        if record.id in self._entries:
            raise SessionExists(f"session '{record.id}' already exists")
        self._entries[record.id] = _Entry(record)

    async def load(self, session_id: str) -> SessionRecord | None:
        await self._checkpoint()
        entry = self._entries.get(session_id)
        return entry.record if entry else None

    async def save(self, record: SessionRecord, expected_revision: int) -> None:
        await self._checkpoint()
        if record.revision != expected_revision + 1:
            raise ValueError("record.revision must be expected_revision + 1")
        entry = self._entry(record.id)
        check_incarnation(record.id, entry.record.incarnation, record.incarnation)
        if entry.record.revision != expected_revision:
            raise Conflict(
                f"session '{record.id}' is at revision {entry.record.revision}, not {expected_revision}"
            )
        entry.record = record

    async def append(
        self,
        session_id: str,
        events: Sequence[Event],
        expected_seq: int,
        *,
        incarnation: str | None = None,
        record: SessionRecord | None = None,
    ) -> None:
        await self._checkpoint()
        check_batch(events, expected_seq)
        expected_revision = check_append_record(session_id, record) if record else 0
        entry = self._entry(session_id)
        check_incarnation(session_id, entry.record.incarnation, incarnation)
        last = entry.events[-1].seq if entry.events else 0
        if last != expected_seq:
            raise Conflict(f"session '{session_id}' is at seq {last}, not {expected_seq}")
        if record is not None:
            check_incarnation(session_id, entry.record.incarnation, record.incarnation)
            if entry.record.revision != expected_revision:
                raise Conflict(
                    f"session '{session_id}' is at revision {entry.record.revision}, not {expected_revision}"
                )
            entry.record = record
        entry.events.extend(events)

    async def read(
        self, session_id: str, after_seq: int = 0, limit: int | None = None
    ) -> list[Event]:
        await self._checkpoint()
        events = self._entry(session_id).events
        start = max(after_seq, 0)  # seq n lives at index n - 1
        stop = len(events) if limit is None else min(len(events), start + max(limit, 0))
        return events[start:stop]

    async def last_seq(self, session_id: str) -> int:
        await self._checkpoint()
        events = self._entry(session_id).events
        return events[-1].seq if events else 0

    async def list(
        self,
        filter: SessionFilter,
        limit: int = 50,
        cursor: str | None = None,
        *,
        order: ListOrder = "created",
    ) -> Page:
        await self._checkpoint()
        return page_in_order(
            (e.record for e in self._entries.values()), filter, limit, cursor, order
        )

    async def delete(self, session_id: str) -> bool:
        await self._checkpoint()
        return self._entries.pop(session_id, None) is not None


@attrs.define
class MemoryLogSinkOptions:
    """Options of the ``memory`` log sink."""

    max_records: int = 100_000


class MemoryLogSink(LogSink):
    """Keeps records in ``records`` (newest last, at most ``max_records``); for tests."""

    def __init__(self, level: int | str = logging.DEBUG, max_records: int = 100_000) -> None:
        from ._logging import parse_level

        self.level = parse_level(level)
        self.max_records = max_records
        self.records: list[dict[str, Any]] = []

    def write(self, record: Mapping[str, Any]) -> None:
        self.records.append(dict(record))
        if len(self.records) > self.max_records:
            del self.records[: len(self.records) - self.max_records]

    def text(self) -> str:
        """Every record rendered as one JSON line each (what a file sink would hold)."""
        return "\n".join(json.dumps(r, default=str, sort_keys=True) for r in self.records)
