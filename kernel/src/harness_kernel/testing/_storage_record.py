"""``check_storage``'s cases for ``append(..., record=)`` (``capabilities.append_record``)."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from .._records import Event, Message, MessageAdded, SessionRecord
from ..contracts import SessionStorage
from ..errors import Conflict, IncarnationMismatch
from ._report import Checks

__all__ = ["check_append_record"]


async def check_append_record(
    storage: SessionStorage,
    checks: Checks,
    sid: Callable[[str], str],
    tag: str,
    _record: Callable[..., SessionRecord],
    sample_events: Callable[[], list[Event]],
) -> None:
    """``append(..., record=)``: the events and the record are one commit, or neither."""
    async with checks.case("append_with_a_record_writes_both"):
        record = _record(sid("ar"), tag, incarnation="inc-1")
        await storage.create(record)
        events = sample_events()[:3]
        saved = attrs.evolve(record, revision=1, last_seq=3, snapshot={"version": 1, "n": 3})
        await storage.append(record.id, events, expected_seq=0, incarnation="inc-1", record=saved)
        checks.equal(await storage.read(record.id), events, "log after append(record=)")
        checks.equal(await storage.load(record.id), saved, "record after append(record=)")

    async with checks.case("append_with_a_stale_revision_writes_neither"):
        record = _record(sid("ar-rev"), tag, incarnation="inc-1")
        await storage.create(record)
        moved = attrs.evolve(record, revision=1, mode="moved")
        await storage.save(moved, expected_revision=0)
        stale = attrs.evolve(record, revision=1, mode="stale")
        await checks.raises(
            Conflict,
            storage.append(record.id, sample_events()[:2], expected_seq=0, record=stale),
        )
        checks.equal(await storage.read(record.id), [], "log after a refused append(record=)")
        checks.equal(await storage.load(record.id), moved, "record after a refused append(record=)")

    async with checks.case("append_with_a_stale_seq_writes_neither"):
        record = _record(sid("ar-seq"), tag, incarnation="inc-1")
        await storage.create(record)
        first = sample_events()[:1]
        await storage.append(record.id, first, expected_seq=0)
        rival = [Event(1, MessageAdded(Message.user("rival")), 5.0)]
        newer = attrs.evolve(record, revision=1, mode="newer")
        await checks.raises(
            Conflict, storage.append(record.id, rival, expected_seq=0, record=newer)
        )
        checks.equal(await storage.read(record.id), first, "log after a refused append(record=)")
        checks.equal(
            await storage.load(record.id), record, "record after a refused append(record=)"
        )

    async with checks.case("append_with_another_sessions_record_raises_value_error"):
        record = _record(sid("ar-id"), tag)
        other = _record(sid("ar-other"), tag)
        await storage.create(record)
        await storage.create(other)
        await checks.raises(
            ValueError,
            storage.append(
                record.id,
                sample_events()[:1],
                expected_seq=0,
                record=attrs.evolve(other, revision=1),
            ),
        )
        checks.equal(await storage.read(record.id), [], "log after a refused append(record=)")
        checks.equal(await storage.load(other.id), other, "the other record")

    async with checks.case("append_with_an_old_incarnations_record_writes_neither"):
        old = _record(sid("ar-inc"), tag, incarnation="inc-old")
        await storage.create(old)
        await storage.delete(old.id)
        new = _record(sid("ar-inc"), tag, incarnation="inc-new")
        await storage.create(new)
        await checks.raises(
            IncarnationMismatch,
            storage.append(
                old.id,
                sample_events()[:1],
                expected_seq=0,
                record=attrs.evolve(old, revision=1, mode="stale"),
            ),
        )
        checks.equal(await storage.read(old.id), [], "log after a refused append(record=)")
        checks.equal(await storage.load(old.id), new, "record after a refused append(record=)")
