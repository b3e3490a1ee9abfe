"""The durable log of one loaded session: append, fold, snapshot, history, publish.

Every change of a session is an event appended to storage first (compare-and-swap on
the last seq) and folded into memory second, so memory is never ahead of storage.
``SessionLog.hydrate`` rebuilds a session from its record's snapshot plus the events
after it; history and finished runs are read from storage only when someone needs
them, and then kept. A snapshot that cannot be trusted is repaired by folding the log.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, final

import attrs
import trio

from ._display import DisplayState
from ._feed import DisplayFeed, Outlet
from ._fold import RunInfo, SessionFold, SnapshotInvalid
from ._history import History, read_run
from ._lease import KEEP, LeaseChange, LeaseHeld, StartMoved, _Keep
from ._metadata import preview_from, title_from
from ._records import (
    AbortRequested,
    ApprovalResolved,
    Event,
    EventPayload,
    GrantsChanged,
    InputQueued,
    Lease,
    Message,
    MessageAdded,
    ModeChanged,
    ModelChanged,
    RunFinished,
    RunSummary,
    SessionRecord,
    StateChanged,
    SuspensionResolved,
)
from ._runtime import Runtime, StoreEvent
from .codec import converter
from .contracts import TextDelta, ToolCallDelta, ToolCallStart
from .errors import (
    Conflict,
    HarnessError,
    IncarnationMismatch,
    SessionConflict,
    SessionNotFound,
    SessionReplaced,
    UnknownMessage,
    UnknownRun,
)

__all__ = ["KEEP", "LeaseChange", "LeaseHeld", "Outlet", "SessionLog", "StartMoved"]

APPEND_RETRIES = 8
SAVE_RETRIES = 5

# What any process may append while another one runs the session: appending after them
# keeps their meaning (the owner applies them at its next step boundary).
_FROM_ANYONE = (
    InputQueued,
    AbortRequested,
    ApprovalResolved,
    SuspensionResolved,
    GrantsChanged,
    ModeChanged,
    ModelChanged,
    StateChanged,
)


@final
class SessionLog:
    """One loaded session's log. Build with ``created`` or ``hydrate``."""

    def __init__(
        self, runtime: Runtime, record: SessionRecord, fold: SessionFold, history: History
    ) -> None:
        self._rt = runtime
        self._record = record
        self._history = history
        self.id = record.id
        self.incarnation = record.incarnation
        self.replaced = False
        """Storage holds another session under this id now (or none): never write again."""
        self.fold = fold
        self.disabled_hooks: set[str] = set()
        self._feed = DisplayFeed(runtime.hub, record.id, lambda: self.display_state)
        self.log = runtime.log.bind(
            session_id=record.id, **({"labels": dict(record.labels)} if record.labels else {})
        )
        self._write_lock = trio.Lock()
        self._read_lock = trio.Lock()
        self._streaming: list[str] = []  # stream-only: the answer being streamed
        self._tool_buffers: dict[str, str] = {}  # stream-only: tool arguments being streamed
        self._state_cache: tuple[dict[str, Any], Any] | None = None
        self._first_words: str | None = None  # a user message, while the title is empty
        self._last_answer: str | None = None  # the latest answer this log folded
        self._carry: tuple[str, list[EventPayload]] | None = None

    @classmethod
    def created(cls, runtime: Runtime, record: SessionRecord) -> SessionLog:
        """The log of a session just created (nothing to read)."""
        fold = SessionFold(
            record.id, record.mode or runtime.agent.default_mode, record.model, record.state
        )
        return cls(runtime, record, fold, History(0))

    @classmethod
    async def hydrate(cls, runtime: Runtime, record: SessionRecord) -> SessionLog:
        """The log of a stored session: its snapshot plus the events after it, or the
        whole log folded when the snapshot is missing, older or does not match."""
        storage = runtime.storage
        try:
            fold = SessionFold.from_snapshot(record.id, record.snapshot, record.last_seq)
            # The event the snapshot ends with must be there: a shorter log is not the
            # log this snapshot was taken of.
            tail = await storage.read(record.id, after_seq=max(0, record.last_seq - 1))
            if record.last_seq > 0:
                if not tail or tail[0].seq != record.last_seq:
                    raise SnapshotInvalid("the log does not hold the snapshot's last event")
                tail = tail[1:]
            log = cls(runtime, record, fold, History(record.last_seq))
            repaired = None
        except SnapshotInvalid as why:
            tail = await storage.read(record.id)
            fold = SessionFold(
                record.id, record.mode or runtime.agent.default_mode, record.model, record.state
            )
            log = cls(runtime, record, fold, History(0))
            repaired = str(why)
        for event in tail:
            log._apply(event)
        if repaired is not None and record.snapshot is not None:
            log.log.warning("snapshot_repaired", reason=repaired, last_seq=fold.last_seq)
        if repaired is not None and tail:
            try:
                await log.save_record()
            except HarnessError as exc:  # the log is right; the snapshot waits for the next save
                log.log.warning("snapshot_not_saved", error=str(exc))
        return log

    # -- what it knows ---------------------------------------------------------------

    @property
    def record(self) -> SessionRecord:
        """The record as last saved or loaded."""
        return self._record

    @property
    def outlet(self) -> Outlet | None:
        """The stream of the run working now, if someone streams it."""
        return self._feed.outlet

    @outlet.setter
    def outlet(self, outlet: Outlet | None) -> None:
        self._feed.outlet = outlet

    def flush_display(self) -> None:
        self._feed.flush_nowait()  # before a run's stream closes: its final state

    @property
    def last_seq(self) -> int:
        return self.fold.last_seq

    @property
    def display_state(self) -> DisplayState:
        return self.fold.display("".join(self._streaming), self._tool_buffers)

    async def messages(self) -> Sequence[Message]:
        """The whole history (read from storage once, then kept)."""
        await self._load_history()
        return self._history.messages

    async def messages_since(self, seq: int) -> tuple[Message, ...]:
        """Messages appended at or after ``seq`` (a run's messages, from its first seq)."""
        if seq <= self._history.base_seq:
            await self._load_history()
        return self._history.since(seq)

    async def numbered_since(self, seq: int) -> list[tuple[int, Message]]:
        """``messages_since(seq)``, each with the seq of the event that added it."""
        messages = await self.messages_since(seq)
        seqs = self._history.seqs
        return list(zip(seqs[len(seqs) - len(messages) :], messages, strict=True))

    async def messages_between(self, first: int, last: int | None) -> tuple[Message, ...]:
        """Messages appended from seq ``first`` through ``last`` (to the end if ``None``)."""
        messages = await self.messages_since(first)
        if last is None:
            return messages
        seqs = self._history.seqs
        stop = bisect.bisect_right(seqs, last)
        start = bisect.bisect_left(seqs, first)
        return tuple(self._history.messages[start:stop])

    def cached_since(self, seq: int) -> tuple[Message, ...]:
        """Like ``messages_since``, from memory only (what this process has read)."""
        return self._history.since(seq)

    async def history(self, limit: int | None, before: str | None) -> list[Message]:
        await self._load_history()
        messages = self._history.messages
        end = len(messages)
        if before is not None:
            index = self._history.index_of(before)
            if index is None:
                raise UnknownMessage(f"no message '{before}' in session '{self.id}'")
            end = index
        start = 0 if limit is None else max(0, end - limit)
        return messages[start:end]

    async def runs(self) -> list[RunSummary]:
        """Every run, oldest first (older runs read from storage once)."""
        await self._load_history()
        merged = {**self._history.older_runs, **self.fold.runs}
        return [info.summary() for info in sorted(merged.values(), key=lambda info: info.first_seq)]

    def run_info(self, run_id: str, *, carried: bool = False) -> RunInfo | None:
        """A run folded since this session was loaded (the open run is always one); with
        ``carried``, as it will be once what ``carry`` holds for it is appended."""
        if carried and self._carry is not None and self._carry[0] == run_id:
            last = self.fold.last_seq
            pending = [Event(last + i, p, 0.0, run_id) for i, p in enumerate(self._carry[1], 1)]
            return self.fold.preview(pending).runs.get(run_id)
        return self.fold.runs.get(run_id)

    async def run_events(self, run_id: str) -> list[Event]:
        """The durable events of one run, read back from storage."""
        info = self.fold.runs.get(run_id)
        if info is None:
            await self._load_history()
            info = self._history.older_runs.get(run_id)
        if info is None:
            raise UnknownRun(f"no run '{run_id}' in session '{self.id}'")
        return await read_run(self._rt.storage, self.id, info)

    async def _load_history(self) -> None:
        if self._history.loaded:
            return
        async with self._read_lock:
            if self._history_loaded():  # by a task that held the lock before us
                return
            base = self._history.base_seq
            events = await self._rt.storage.read(self.id, after_seq=0, limit=base)
            prefix = SessionFold(self.id, self.fold.mode)
            seqs: list[int] = []
            messages: list[Message] = []
            for event in events:
                if event.seq > base:
                    break
                added = prefix.apply(event)
                if added is not None:
                    seqs.append(event.seq)
                    messages.append(added)
            self._history.prepend(seqs, messages, prefix.runs)

    def _history_loaded(self) -> bool:
        return self._history.loaded

    # -- writing ---------------------------------------------------------------------

    def _apply(self, event: Event) -> None:
        added = self.fold.apply(event)
        if added is not None:
            self._history.add(event.seq, added)
        payload = event.payload
        if isinstance(payload, MessageAdded):
            message = payload.message
            if message.role == "assistant" and message.text:
                self._last_answer = message.text
            elif message.role == "user" and self._first_words is None and message.text:
                self._first_words = message.text
        if isinstance(payload, RunFinished) or (
            isinstance(payload, MessageAdded) and payload.message.role == "assistant"
        ):
            self._streaming, self._tool_buffers = [], {}

    def carry(self, run_id: str, *payloads: EventPayload) -> None:
        """Hold events of ``run_id``'s step for the run's next append, in its commit (a
        model answer goes with its first call's start, or with ``run.finished``)."""
        if self._carry is not None and self._carry[0] == run_id:
            self._carry[1].extend(payloads)
        else:
            self._carry = (run_id, list(payloads))

    def carrying(self, run_id: str) -> bool:
        return self._carry is not None and self._carry[0] == run_id

    async def flush(self, run_id: str) -> None:
        if self.carrying(run_id):  # what carry holds for the run, appended now
            await self.append(run_id)

    async def append(
        self,
        run_id: str | None,
        *payloads: EventPayload,
        still_valid: Callable[[], None] | None = None,
        save: bool = False,
        lease: LeaseChange = KEEP,
        snapshot: bool = True,
    ) -> list[Event]:
        """Append events durably (one commit), then fold and publish them.

        Events ``carry`` holds for ``run_id`` go first, in the same commit. With ``save``
        the record is written too (``lease`` and ``snapshot`` as in ``save_record``): in
        the same commit where the storage can (``capabilities.append_record``), else
        right after; taking a lease that way raises ``LeaseHeld`` (nothing written) when
        another store's is live.

        When another writer moved the log ahead, its events are read and folded first.
        The append is retried after them when either side is only what any process may
        add while another runs the session (queued inputs, resolutions, settings, abort
        requests), after ``still_valid()`` (which raises if the change no longer makes
        sense) approves; otherwise ``SessionConflict`` is raised and nothing is forked or
        overwritten. A session deleted or created again meanwhile raises
        ``SessionReplaced``.
        """
        carried = self._carry[1] if self._carry is not None and self._carry[0] == run_id else []
        items = [*carried, *payloads]
        commutes = all(isinstance(p, _FROM_ANYONE) for p in items)
        together = save and self._rt.storage_appends_records
        record: SessionRecord | None = None
        async with self._write_lock:
            for attempt in range(APPEND_RETRIES):
                now = time.time()
                last = self.fold.last_seq
                events = [
                    Event(last + i, payload, now, run_id)
                    for i, payload in enumerate(items, start=1)
                ]
                if together:
                    record = self._next_record(lease, snapshot, events)
                try:
                    await self._storage_append(events, last, record)
                    break
                except (IncarnationMismatch, SessionNotFound) as exc:
                    self._drop_carry(carried)
                    raise self._replaced_error() from exc
                except Conflict as exc:
                    caught = await self._catch_up()
                    theirs_commute = all(isinstance(e.payload, _FROM_ANYONE) for e in caught)
                    if attempt < APPEND_RETRIES - 1 and (commutes or theirs_commute):
                        if still_valid is not None:
                            still_valid()
                        continue
                    self._drop_carry(carried)
                    moved = StartMoved if together and isinstance(lease, Lease) else SessionConflict
                    raise moved(
                        f"session '{self.id}' was changed by another writer; this run stopped and "
                        "the session reloaded the newer history"
                    ) from exc
            self._drop_carry(carried)
            for event in events:
                self._apply(event)
            if record is not None:
                self._record = record
        for event in events:
            await self._publish(event)
        if save and not together:
            await self.save_record(lease=lease, snapshot=snapshot)
        return events

    def _drop_carry(self, carried: list[EventPayload]) -> None:
        if self._carry is not None and self._carry[1] is carried:
            self._carry = None

    async def _storage_append(
        self, events: list[Event], last: int, record: SessionRecord | None
    ) -> None:
        storage = self._rt.storage
        if record is not None:
            await storage.append(
                self.id,
                events,
                expected_seq=last,
                incarnation=self.incarnation or None,
                record=record,
            )
        elif self._rt.storage_checks_incarnation:
            await storage.append(
                self.id, events, expected_seq=last, incarnation=self.incarnation or None
            )
        else:
            await storage.append(self.id, events, expected_seq=last)

    def _replaced_error(self) -> SessionReplaced:
        self.replaced = True
        return SessionReplaced(
            f"session '{self.id}' was deleted (and maybe created again) by another store; "
            "get it again from the store to continue with what storage holds now"
        )

    async def sync(self) -> SessionRecord:
        """Catch up with storage: the record (lease, revision) and the events other
        processes appended. ``SessionReplaced`` if it is not this session any more."""
        async with self._write_lock:
            await self._catch_up()
        return self._record

    async def _catch_up(self) -> list[Event]:
        # The record first: a log read before the incarnation is checked could be the
        # log of the session that replaced this one.
        stored = await self._rt.storage.load(self.id)
        if stored is None or (self.incarnation and stored.incarnation != self.incarnation):
            raise self._replaced_error()
        if stored.revision > self._record.revision:
            self._record = stored
        events = await self._rt.storage.read(self.id, after_seq=self.fold.last_seq)
        for event in events:
            self._apply(event)
            await self._publish(event)
        return events

    async def save_record(self, *, lease: LeaseChange = KEEP, snapshot: bool = True) -> None:
        """Write the record with the fold's snapshot (compare-and-swap on ``revision``).

        ``lease``: ``KEEP`` the stored one, set this store's, or ``None`` to release this
        store's (another store's lease is never cleared). ``snapshot=False`` writes only
        the lease, leaving the stored snapshot (still true up to its ``last_seq``). When
        another writer saved first, the newer events are folded and the save retried on
        its revision; setting a lease while another store's is live raises ``LeaseHeld``.
        """
        owner = self._rt.owner
        for _ in range(SAVE_RETRIES):
            base = self._record
            record = self._record_of(base, lease, self.fold if snapshot else None)
            try:
                await self._rt.storage.save(record, expected_revision=base.revision)
            except (IncarnationMismatch, SessionNotFound) as exc:
                raise self._replaced_error() from exc
            except Conflict:
                stored = await self._rt.storage.load(self.id)
                if stored is None or (self.incarnation and stored.incarnation != self.incarnation):
                    raise self._replaced_error() from None
                held = stored.lease
                self._record = stored  # so callers see who holds the lease now
                if (
                    isinstance(lease, Lease)
                    and held is not None
                    and held.owner != owner
                    and held.live(self._rt.lease_clock())
                ):
                    raise LeaseHeld(held) from None
                if stored.last_seq > self.fold.last_seq:
                    await self.sync()
                continue
            self._record = record
            return
        self.log.warning("record_save_gave_up", attempts=SAVE_RETRIES)

    def _described(self, base: SessionRecord, events: Sequence[Event] = ()) -> dict[str, Any]:
        """The derived metadata a save brings up to date: the preview of the last
        answer, and a title from the first user message while there is none (counting
        ``events``, which the same commit appends)."""
        first, last = self._first_words, self._last_answer
        for event in events:
            if isinstance(event.payload, MessageAdded):
                message = event.payload.message
                if message.role == "assistant" and message.text:
                    last = message.text
                elif message.role == "user" and first is None and message.text:
                    first = message.text
        changes: dict[str, Any] = {}
        if not base.title and first is not None:
            changes["title"] = title_from(first)
        if last is not None:
            changes["preview"] = preview_from(last)
        return changes

    async def set_metadata(self, changes: Mapping[str, Any]) -> SessionRecord:
        """Write ``changes`` (title, tags, pinned) to the record: compare-and-swap on
        ``revision``, retried on what another writer saved first."""
        for _ in range(SAVE_RETRIES):
            base = self._record
            record = attrs.evolve(
                base, revision=base.revision + 1, updated_at=time.time(), **changes
            )
            try:
                await self._rt.storage.save(record, expected_revision=base.revision)
            except (IncarnationMismatch, SessionNotFound) as exc:
                raise self._replaced_error() from exc
            except Conflict:
                stored = await self._rt.storage.load(self.id)
                if stored is None or (self.incarnation and stored.incarnation != self.incarnation):
                    raise self._replaced_error() from None
                self._record = stored
                continue
            self._record = record
            return record
        raise SessionConflict(f"session '{self.id}': its record kept changing; try again")

    def _record_of(
        self,
        base: SessionRecord,
        lease: LeaseChange,
        fold: SessionFold | None,
        events: Sequence[Event] = (),
    ) -> SessionRecord:
        """The next revision of ``base``: with ``fold``'s snapshot (or only the lease);
        ``events`` are those the same commit appends (``fold`` has them folded)."""
        wanted = base.lease if isinstance(lease, _Keep) else lease
        if lease is None and base.lease is not None and base.lease.owner != self._rt.owner:
            wanted = base.lease  # another store's lease is never cleared
        if fold is None:
            return attrs.evolve(base, revision=base.revision + 1, lease=wanted)
        return attrs.evolve(
            base,
            mode=fold.mode,
            model=fold.model,
            state=dict(fold.state),
            usage=fold.usage,
            status=fold.status,
            last_seq=fold.last_seq,
            updated_at=time.time(),
            revision=base.revision + 1,
            snapshot=fold.snapshot(),
            lease=wanted,
            **self._described(base, events),
        )

    def _next_record(
        self, lease: LeaseChange, snapshot: bool, events: list[Event]
    ) -> SessionRecord:
        """The record ``append(save=True)`` writes with ``events``; ``LeaseHeld`` when it
        would take a lease another store holds."""
        base = self._record
        held = base.lease
        if (
            isinstance(lease, Lease)
            and held is not None
            and held.owner != self._rt.owner
            and held.live(self._rt.lease_clock())
        ):
            raise LeaseHeld(held)
        if not snapshot:
            return self._record_of(base, lease, None)
        return self._record_of(base, lease, self.fold.preview(events), events)

    # -- publishing ------------------------------------------------------------------

    async def _publish(self, event: Event) -> None:
        if self.outlet is not None:
            await self.outlet.send(event)
        hub = self._rt.hub
        hub.publish(StoreEvent("event", self.id, event))
        self._feed.changed()
        if self._rt.hooks.has("on_event"):
            await self._rt.hooks.notify(
                "on_event", self.disabled_hooks, session_id=self.id, event=event
            )

    async def delta(self, item: Any) -> None:
        """A stream-only event: to the run's stream, and into ``display_state``."""
        if self.outlet is not None:
            await self.outlet.send(item)
        if isinstance(item, TextDelta):
            self._streaming.append(item.text)
        elif isinstance(item, ToolCallStart):
            self._tool_buffers[item.call_id] = ""
        elif isinstance(item, ToolCallDelta):
            self._tool_buffers[item.call_id] = (
                self._tool_buffers.get(item.call_id, "") + item.arguments
            )
        else:
            return
        self._feed.changed()

    def state_value(self, cls: type | None) -> Any:
        """The session state as an instance of ``cls`` (a dict without one); stored state
        from an older state class keeps what still fits."""
        state = self.fold.state
        if cls is None:
            return dict(state)
        if self._state_cache is not None and self._state_cache[0] is state:
            return self._state_cache[1]
        value: Any
        try:
            value = converter.structure(state, cls)
        except Exception:
            fields = {f.name for f in attrs.fields(cls)}
            try:
                value = converter.structure({k: v for k, v in state.items() if k in fields}, cls)
            except Exception:
                value = cls()
        self._state_cache = (state, value)
        return value
