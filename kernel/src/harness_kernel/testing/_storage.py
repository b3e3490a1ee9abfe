"""``check_storage`` and the storage state machine: the ``SessionStorage`` contract, executable."""

from __future__ import annotations

import inspect
import itertools
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from .._records import (
    AbortRequested,
    ApprovalRequested,
    ApprovalResolved,
    ContextCompacted,
    ErrorInfo,
    Event,
    EventPayload,
    FilePart,
    GrantsChanged,
    ImagePart,
    InputQueued,
    Lease,
    Message,
    MessageAdded,
    ModeChanged,
    ModelChanged,
    ReasoningPart,
    RunFinished,
    RunStarted,
    SessionRecord,
    StateChanged,
    SuspensionRequested,
    SuspensionResolved,
    TextPart,
    ToolCallPart,
    ToolFinished,
    ToolResultPart,
    ToolStarted,
    UnknownPayload,
    Usage,
    UsageRecorded,
)
from ..contracts import SessionFilter, SessionStorage, WatchNotice
from ..errors import Conflict, IncarnationMismatch, SessionExists, SessionNotFound
from ._report import Checks
from ._storage_record import check_append_record

__all__ = ["StorageFactory", "check_storage", "run_storage_state_machine", "sample_events"]

StorageFactory = Callable[[], "SessionStorage | Awaitable[SessionStorage]"]


async def _make(factory: StorageFactory) -> SessionStorage:
    storage = factory()
    if inspect.isawaitable(storage):
        storage = await storage
    if not isinstance(storage, SessionStorage):
        raise TypeError(f"the factory returned {type(storage).__name__}, not a SessionStorage")
    return storage


def sample_events(start: int = 1) -> list[Event]:
    """One event of every kind, numbered from ``start``: exercises the codec end to end."""
    call = ToolCallPart("call_1", "lookup", {"q": "ünïcode ✓", "n": [1, 2.5, None, True]})
    payloads: list[EventPayload] = [
        RunStarted("scripted/echo", "default", output="app.models.Answer"),
        MessageAdded(
            Message(
                "user", (TextPart("héllo\nworld \u0000 \U0001f600"),), id="msg_a", created_at=1.5
            )
        ),
        MessageAdded(Message("assistant", (TextPart("ok"), call), id="msg_b", created_at=2.0)),
        UsageRecorded(Usage(10, 5, 1, 2, 3), "scripted/echo"),
        MessageAdded(
            Message(
                "user",
                (
                    TextPart("what is this?"),
                    ImagePart("image/png", bytes(range(256)) + b"\x00\xff"),
                    ImagePart(url="https://example.invalid/cat.jpg"),
                    FilePart("application/pdf", b"%PDF-1.7\n\x00\x01", name="report ü.pdf"),
                    FilePart("text/plain", ref="host:doc/42"),
                ),
                id="msg_m",
                created_at=2.5,
            )
        ),
        MessageAdded(
            Message(
                "assistant",
                (
                    ReasoningPart("thinking ✓\n", signature="EtYDCkYI+/==", source="anthropic"),
                    ReasoningPart(redacted=True, encrypted="EvgFCkYIBx==", source="anthropic"),
                    ReasoningPart(
                        "**Summary**",
                        summary=True,
                        encrypted="gAAAAAB",
                        id="rs_1",
                        source="openai-responses",
                    ),
                    TextPart("a cat"),
                ),
                id="msg_r",
                created_at=2.75,
            )
        ),
        ApprovalRequested("apr_1", "call_1", "lookup", {"q": "x"}, "read", 99.0),
        ApprovalResolved("apr_1", True, None, "tool"),
        ToolStarted("call_1", "lookup", {"q": "x"}),
        ToolFinished(
            "call_1", "lookup", "ok", ToolResultPart("call_1", "result", False), "msg_c", 1.25
        ),
        SuspensionRequested("call_2", "ask_user", {"question": "?", "choices": ["a", "b"]}),
        SuspensionResolved("call_2", {"answer": "a"}),
        InputQueued("follow_up", Message("user", (TextPart("later"),), id="msg_q", created_at=3.0)),
        GrantsChanged(("tool:lookup", "category:read")),
        ModeChanged("default", "plan"),
        ModelChanged(None, "scripted/other"),
        StateChanged({"count": 3, "tags": ["a"]}, ("count",)),
        RunFinished(
            "completed", Usage(10, 5), ErrorInfo("x.y", "message"), 12.5, 2, {"answer": [1, "ü"]}
        ),
        AbortRequested("run_1", "store-b"),
        ContextCompacted("the user asked ✓", 1, 12, None, 900, 120, "scripted/echo"),
        UnknownPayload("plugin.custom", {"any": {"nested": [1, 2]}}),
    ]
    return [
        Event(start + i, p, at=1000.0 + i, run_id="run_1" if i % 2 else None)
        for i, p in enumerate(payloads)
    ]


def _record(session_id: str, tag: str, created_at: float = 1000.0, **changes: Any) -> SessionRecord:
    base = SessionRecord(
        session_id,
        "conformance-agent",
        {"conformance_run": tag, "tenant_id": "t-1"},
        created_at,
        created_at,
        mode="default",
        model=None,
        state={"k": [1, "two", {"three": 3.0}]},
        usage=Usage(1, 2),
    )
    return attrs.evolve(base, **changes)


async def check_storage(make_storage: StorageFactory) -> list[str]:
    """Run the storage contract against a backend; returns the passed check names.

    ``make_storage`` returns a ``SessionStorage`` (or an awaitable of one). The checks
    use fresh random session ids and labels, so the backend may already hold data.
    Raises ``ConformanceFailure`` listing every failed check.
    """
    storage = await _make(make_storage)
    tag = secrets.token_hex(6)
    checks = Checks("storage")

    def sid(name: str) -> str:
        return f"cf-{tag}-{name}"

    async with checks.case("create_then_load_returns_the_same_record"):
        record = _record(sid("a"), tag)
        await storage.create(record)
        checks.equal(await storage.load(record.id), record, "loaded record")
        checks.equal(await storage.last_seq(record.id), 0, "last_seq of a new session")
        checks.equal(await storage.read(record.id), [], "log of a new session")

    async with checks.case("create_twice_raises_session_exists"):
        await storage.create(_record(sid("dup"), tag))
        await checks.raises(SessionExists, storage.create(_record(sid("dup"), tag)))

    async with checks.case("load_of_a_missing_session_is_none"):
        checks.equal(await storage.load(sid("missing")), None, "load(missing)")

    async with checks.case("every_event_kind_round_trips"):
        await storage.create(_record(sid("ev"), tag))
        events = sample_events()
        await storage.append(sid("ev"), events, expected_seq=0)
        checks.equal(await storage.read(sid("ev")), events, "read back")
        checks.equal(await storage.last_seq(sid("ev")), len(events), "last_seq")

    async with checks.case("read_windows_follow_after_seq_and_limit"):
        await storage.create(_record(sid("win"), tag))
        events = sample_events()
        await storage.append(sid("win"), events[:5], expected_seq=0)
        await storage.append(sid("win"), events[5:], expected_seq=5)
        checks.equal(await storage.read(sid("win"), after_seq=3), events[3:], "after_seq=3")
        checks.equal(
            await storage.read(sid("win"), after_seq=3, limit=4),
            events[3:7],
            "after_seq=3, limit=4",
        )
        checks.equal(await storage.read(sid("win"), after_seq=len(events)), [], "after the end")
        checks.equal(await storage.read(sid("win"), limit=0), [], "limit=0")

    async with checks.case("append_with_a_stale_expected_seq_raises_conflict_and_writes_nothing"):
        await storage.create(_record(sid("cas"), tag))
        first = sample_events()[:2]
        await storage.append(sid("cas"), first, expected_seq=0)
        rival = [Event(2, MessageAdded(Message.user("rival")), 5.0)]
        await checks.raises(Conflict, storage.append(sid("cas"), rival, expected_seq=1))
        rival = [Event(1, MessageAdded(Message.user("rival")), 5.0)]
        await checks.raises(Conflict, storage.append(sid("cas"), rival, expected_seq=0))
        checks.equal(await storage.read(sid("cas")), first, "log after refused appends")

    async with checks.case("append_with_misnumbered_events_raises_value_error"):
        await storage.create(_record(sid("num"), tag))
        await checks.raises(
            ValueError, storage.append(sid("num"), sample_events(start=2)[:1], expected_seq=0)
        )
        gap = [sample_events()[0], sample_events(start=3)[0]]
        await checks.raises(ValueError, storage.append(sid("num"), gap, expected_seq=0))
        checks.equal(await storage.last_seq(sid("num")), 0, "last_seq after refused batches")

    async with checks.case("operations_on_a_missing_session_raise_session_not_found"):
        await checks.raises(
            SessionNotFound, storage.append(sid("nope"), sample_events()[:1], expected_seq=0)
        )
        await checks.raises(SessionNotFound, storage.read(sid("nope")))
        await checks.raises(SessionNotFound, storage.last_seq(sid("nope")))
        await checks.raises(
            SessionNotFound,
            storage.save(_record(sid("nope"), tag, revision=1), expected_revision=0),
        )

    async with checks.case("concurrent_appends_at_one_seq_have_exactly_one_winner"):
        await storage.create(_record(sid("race"), tag))
        outcomes: list[str] = []

        async def contender(text: str) -> None:
            try:
                await storage.append(
                    sid("race"), [Event(1, MessageAdded(Message.user(text)), 1.0)], expected_seq=0
                )
                outcomes.append("won")
            except Conflict:
                outcomes.append("conflict")

        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(contender, f"writer {i}")
        checks.equal(sorted(outcomes), ["conflict"] * 4 + ["won"], "outcomes of 5 racing appends")
        checks.equal(len(await storage.read(sid("race"))), 1, "events after the race")

    async with checks.case("an_append_naming_an_old_incarnation_is_refused_and_writes_nothing"):
        old = _record(sid("inc"), tag, incarnation="inc-old")
        await storage.create(old)
        await storage.append(old.id, sample_events()[:2], expected_seq=0, incarnation="inc-old")
        await storage.delete(old.id)
        await storage.create(_record(sid("inc"), tag, incarnation="inc-new"))
        # The same expected_seq as the new log's: only the incarnation tells them apart.
        rival = [Event(1, MessageAdded(Message.user("from the old session")), 5.0)]
        await checks.raises(
            IncarnationMismatch,
            storage.append(old.id, rival, expected_seq=0, incarnation="inc-old"),
        )
        checks.equal(await storage.read(old.id), [], "new log after a refused append")
        await storage.append(old.id, rival, expected_seq=0, incarnation="inc-new")
        stale = attrs.evolve(old, revision=1, mode="stale")
        await checks.raises(IncarnationMismatch, storage.save(stale, expected_revision=0))
        loaded = await storage.load(old.id)
        checks.equal(
            loaded.incarnation if loaded else None, "inc-new", "incarnation after a refused save"
        )

    async with checks.case("the_lease_and_snapshot_round_trip"):
        record = _record(sid("lease"), tag, incarnation="inc-1")
        await storage.create(record)
        leased = attrs.evolve(
            record,
            revision=1,
            lease=Lease("store-a", "host-a", 4242, 12345.5),
            snapshot={"version": 1, "nested": {"list": [1, "two", None]}},
        )
        await storage.save(leased, expected_revision=0)
        checks.equal(await storage.load(record.id), leased, "record with a lease")

    async with checks.case("save_is_compare_and_swap_on_revision"):
        record = _record(sid("save"), tag)
        await storage.create(record)
        newer = attrs.evolve(
            record, revision=1, mode="plan", state={"n": 1}, last_seq=3, status="waiting_approval"
        )
        await storage.save(newer, expected_revision=0)
        checks.equal(await storage.load(record.id), newer, "record after save")
        stale = attrs.evolve(record, revision=1, mode="stale")
        await checks.raises(Conflict, storage.save(stale, expected_revision=0))
        checks.equal(await storage.load(record.id), newer, "record after a stale save")
        await checks.raises(
            ValueError, storage.save(attrs.evolve(newer, revision=5), expected_revision=1)
        )

    async with checks.case("list_pages_cover_every_match_once_in_contract_order"):
        ltag = f"{tag}-list"
        made = []
        for i in range(7):
            # Two share a created_at so the id tie-break is exercised.
            created = 2000.0 + (i // 2)
            rec = _record(
                sid(f"l{i}"), ltag, created_at=created, agent="lister" if i % 3 else "other"
            )
            await storage.create(rec)
            made.append(rec)
        expected = sorted(made, key=lambda r: (r.created_at, r.id), reverse=True)
        seen: list[SessionRecord] = []
        cursor = None
        for _ in range(10):
            page = await storage.list(
                SessionFilter(labels={"conformance_run": ltag}), limit=3, cursor=cursor
            )
            checks.check(len(page.items) <= 3, f"page has {len(page.items)} items, limit 3")
            seen.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        checks.equal([r.id for r in seen], [r.id for r in expected], "ids across pages")
        only = await storage.list(
            SessionFilter(agent="lister", labels={"conformance_run": ltag}), limit=50
        )
        checks.equal(
            [r.id for r in only.items],
            [r.id for r in expected if r.agent == "lister"],
            "agent filter",
        )
        checks.equal(only.next_cursor, None, "cursor of the last page")
        none = await storage.list(
            SessionFilter(labels={"conformance_run": ltag, "tenant_id": "other"})
        )
        checks.equal(none.items, (), "a label that matches nothing")

    async with checks.case("metadata_for_people_round_trips"):
        record = _record(sid("meta"), tag)
        await storage.create(record)
        described = attrs.evolve(
            record,
            revision=1,
            title="Trip to Lyon — «plans»",
            preview="Here is the plan: day 1…",
            tags=("travel", "work"),
            pinned=True,
        )
        await storage.save(described, expected_revision=0)
        checks.equal(await storage.load(record.id), described, "record with metadata")

    async with checks.case("list_filters_on_tags_and_pinned"):
        mtag = f"{tag}-meta"
        shapes = [
            ((), False),
            (("a",), False),
            (("a", "b"), True),
            (("b",), True),
            (("a", "b"), False),
        ]
        made = []
        for i, (tags, pinned) in enumerate(shapes):
            rec = _record(
                sid(f"m{i}"), mtag, created_at=3000.0 + i, revision=1, tags=tags, pinned=pinned
            )
            await storage.create(attrs.evolve(rec, revision=0, tags=(), pinned=False))
            await storage.save(rec, expected_revision=0)  # metadata set after creation
            made.append(rec)
        newest_first = list(reversed(made))
        labels = {"conformance_run": mtag}
        wants: list[tuple[set[str], bool | None]] = [
            ({"a"}, None),
            ({"a", "b"}, None),
            (set(), True),
            ({"a"}, False),
        ]
        for wanted, flag in wants:
            page = await storage.list(SessionFilter(labels=labels, tags=wanted, pinned=flag))
            checks.equal(
                [r.id for r in page.items],
                [
                    r.id
                    for r in newest_first
                    if wanted.issubset(r.tags) and flag in (None, r.pinned)
                ],
                f"tags {sorted(wanted)}, pinned {flag}",
            )

    if "order" in inspect.signature(storage.list).parameters:
        async with checks.case("list_by_update_pages_cover_every_match_once"):
            utag = f"{tag}-upd"
            made = []
            for i in range(7):
                # Updated in another order than created; two share an updated_at.
                rec = _record(sid(f"u{i}"), utag, created_at=4000.0 + i)
                await storage.create(rec)
                rec = attrs.evolve(rec, revision=1, updated_at=5000.0 + (i * 3 % 7) // 2)
                await storage.save(rec, expected_revision=0)
                made.append(rec)
            expected = sorted(made, key=lambda r: (r.updated_at, r.id), reverse=True)
            seen = []
            cursor = None
            for _ in range(10):
                page = await storage.list(
                    SessionFilter(labels={"conformance_run": utag}),
                    limit=3,
                    cursor=cursor,
                    order="updated",
                )
                seen.extend(page.items)
                cursor = page.next_cursor
                if cursor is None:
                    break
            checks.equal([r.id for r in seen], [r.id for r in expected], "ids across pages")
            opening = await storage.list(
                SessionFilter(labels={"conformance_run": utag}), limit=2, order="updated"
            )
            if opening.next_cursor is not None:
                await checks.raises(
                    ValueError,
                    storage.list(
                        SessionFilter(labels={"conformance_run": utag}),
                        limit=2,
                        cursor=opening.next_cursor,
                    ),
                )

    async with checks.case("list_refuses_a_foreign_cursor"):
        await checks.raises(
            ValueError, storage.list(SessionFilter(), limit=2, cursor="not-a-cursor!")
        )

    async with checks.case("delete_removes_record_and_log"):
        await storage.create(_record(sid("del"), tag))
        await storage.append(sid("del"), sample_events()[:3], expected_seq=0)
        checks.equal(await storage.delete(sid("del")), True, "delete of an existing session")
        checks.equal(await storage.load(sid("del")), None, "load after delete")
        await checks.raises(SessionNotFound, storage.read(sid("del")))
        checks.equal(await storage.delete(sid("del")), False, "second delete")
        await storage.create(_record(sid("del"), tag))
        checks.equal(await storage.read(sid("del")), [], "log of a re-created session")

    async with checks.case("ids_differing_in_case_or_punctuation_are_distinct"):
        ids = [sid("Ab"), sid("aB"), sid("a.b"), sid("a:b"), sid("a@b"), sid("a-b"), sid("a_b")]
        for i, session_id in enumerate(ids):
            await storage.create(_record(session_id, tag))
            await storage.append(
                session_id, [Event(1, MessageAdded(Message.user(f"n{i}")), 1.0)], expected_seq=0
            )
        for i, session_id in enumerate(ids):
            events = await storage.read(session_id)
            checks.equal(
                [e.payload.message.text for e in events if isinstance(e.payload, MessageAdded)],
                [f"n{i}"],
                f"log of {session_id}",
            )

    async with checks.case("long_ids_are_stored"):
        long_id = sid("x" * 100)[:128]
        await storage.create(_record(long_id, tag))
        checks.equal((await storage.load(long_id)) is not None, True, "load of a 128-character id")

    if storage.capabilities.append_record:
        await check_append_record(storage, checks, sid, tag, _record, sample_events)

    if storage.capabilities.watch:
        await _check_watch(storage, checks, sid, tag)

    await storage.aclose()
    return checks.finish()


WATCH_PATIENCE = 30.0
"""Seconds a watch check waits for a notice before it fails (a hang guard, not a timing)."""


async def _notices_until(
    notices: trio.MemoryReceiveChannel[WatchNotice], session_id: str, last_seq: int
) -> list[int]:
    """The ``last_seq`` of ``session_id``'s notices up to one of ``last_seq``."""
    seen: list[int] = []
    with trio.fail_after(WATCH_PATIENCE):
        async for notice in notices:
            if notice.session_id == session_id:
                seen.append(notice.last_seq)
                if notice.last_seq == last_seq:
                    return seen
    return seen


async def _check_watch(
    storage: SessionStorage, checks: Checks, sid: Callable[[str], str], tag: str
) -> None:
    """Backends claiming ``capabilities.watch``: the notices ``watch`` promises."""
    async with checks.case("watch_announces_appends_in_order_and_only_the_watched_sessions"):
        watched, other = sid("w"), sid("w-other")
        await storage.create(_record(watched, tag, incarnation="inc-1"))
        await storage.create(_record(other, tag))
        events = sample_events()[:4]
        async with storage.watch([watched]) as notices:
            await storage.append(watched, events[:1], expected_seq=0)
            await storage.append(other, events[:1], expected_seq=0)
            await storage.append(watched, events[1:3], expected_seq=1)
            await storage.append(watched, events[3:], expected_seq=3)
            seen = await _notices_until(notices, watched, 4)
            checks.equal(seen[-1:], [4], "the last notice names the last seq")
            checks.check(
                all(a < b for a, b in itertools.pairwise(seen)), f"notices go forward: {seen}"
            )
            checks.check(set(seen) <= {1, 3, 4}, f"notices name seqs where a batch ended: {seen}")
            # Deleted, created again: the new log is announced from its start.
            await storage.delete(watched)
            await storage.create(_record(watched, tag, incarnation="inc-2"))
            await storage.append(watched, events[:1], expected_seq=0, incarnation="inc-2")
            again = await _notices_until(notices, watched, 1)
            checks.equal(again[-1:], [1], "notice of the re-created session")
            checks.check(set(again) <= {0, 1}, f"notices after a delete: {again}")
        async with storage.watch([other]) as notices:
            await storage.append(watched, sample_events(start=2)[:1], expected_seq=1)
            await storage.append(other, sample_events(start=2)[:1], expected_seq=1)
            first = await _notices_until(notices, other, 2)
            checks.equal(first, [2], "a watch of one session announces that session only")

    async with checks.case("watch_after_seq_announces_what_is_already_there"):
        session_id = sid("w-after")
        await storage.create(_record(session_id, tag))
        await storage.append(session_id, sample_events()[:2], expected_seq=0)
        async with storage.watch([session_id], after_seq={session_id: 0}) as notices:
            checks.equal(await _notices_until(notices, session_id, 2), [2], "catch-up notice")
        async with storage.watch([session_id], after_seq={session_id: 2}) as notices:
            await storage.append(session_id, sample_events(start=3)[:1], expected_seq=2)
            checks.equal(
                await _notices_until(notices, session_id, 3), [3], "nothing before the seq given"
            )

    async with checks.case("watch_of_every_session_announces_a_new_one"):
        session_id = sid("w-all")
        async with storage.watch() as notices:
            await storage.create(_record(session_id, tag))
            await storage.append(session_id, sample_events()[:1], expected_seq=0)
            checks.equal(
                await _notices_until(notices, session_id, 1), [1], "notices of a new session"
            )


async def run_storage_state_machine(
    make_storage: StorageFactory, *, max_examples: int = 30, stateful_step_count: int = 30
) -> None:
    """Check a storage against an in-memory model with a hypothesis state machine.

    Must be awaited inside a trio run: hypothesis drives the machine from a worker
    thread and every storage call runs back on this trio loop. Needs ``hypothesis``.
    """
    from ._storage_machine import run_machine

    storage = await _make(make_storage)
    try:
        await trio.to_thread.run_sync(
            lambda: run_machine(
                storage, max_examples=max_examples, stateful_step_count=stateful_step_count
            )
        )
    finally:
        await storage.aclose()
