"""The hypothesis state machine behind ``run_storage_state_machine``.

Runs in a worker thread; every storage call is sent back to the trio loop that started
it with ``trio.from_thread.run``. Each example uses fresh ids and a unique label, so one
storage serves every example.
"""

from __future__ import annotations

import secrets
from typing import Any

import attrs
import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from .._records import Event, Message, MessageAdded, SessionRecord, TextPart
from ..contracts import SessionFilter, SessionStorage
from ..errors import Conflict, SessionExists, SessionNotFound

__all__ = ["run_machine"]

_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)


def run_machine(storage: SessionStorage, *, max_examples: int, stateful_step_count: int) -> None:
    def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        async def go() -> Any:
            return await fn(*args, **kwargs)

        return trio.from_thread.run(go)

    class StorageMachine(RuleBasedStateMachine):
        names = Bundle("names")

        def __init__(self) -> None:
            super().__init__()
            self.tag = secrets.token_hex(6)
            self.records: dict[str, SessionRecord] = {}
            self.logs: dict[str, list[Event]] = {}
            self.clock = 1000.0

        def sid(self, name: str) -> str:
            return f"sm-{self.tag}-{name}"

        @rule(target=names, name=st.sampled_from(["a", "B", "b", "c.d", "e:f", "G-h", "i_j"]))
        def create(self, name: str) -> str:
            session_id = self.sid(name)
            self.clock += 1
            record = SessionRecord(session_id, "agent", {"sm": self.tag}, self.clock, self.clock)
            if session_id in self.records:
                try:
                    call(storage.create, record)
                except SessionExists:
                    return name
                raise AssertionError("create of an existing id did not raise SessionExists")
            call(storage.create, record)
            self.records[session_id] = record
            self.logs[session_id] = []
            return name

        @rule(name=names, texts=st.lists(_text, min_size=1, max_size=4), stale=st.booleans())
        def append(self, name: str, texts: list[str], stale: bool) -> None:
            session_id = self.sid(name)
            log = self.logs.get(session_id)
            last = len(log) if log is not None else 0
            expected = last - 1 if stale and last > 0 else last
            events = [
                Event(
                    expected + i,
                    MessageAdded(
                        Message("user", (TextPart(t),), id=f"m{expected + i}", created_at=1.0)
                    ),
                    2.0,
                )
                for i, t in enumerate(texts, start=1)
            ]
            if log is None:
                try:
                    call(storage.append, session_id, events, expected)
                except SessionNotFound:
                    return
                raise AssertionError("append to a deleted session did not raise SessionNotFound")
            if expected != last:
                try:
                    call(storage.append, session_id, events, expected)
                except Conflict:
                    return
                raise AssertionError("append with a stale expected_seq did not raise Conflict")
            call(storage.append, session_id, events, expected)
            log.extend(events)

        @rule(name=names, stale=st.booleans(), n=st.integers(0, 5))
        def save(self, name: str, stale: bool, n: int) -> None:
            session_id = self.sid(name)
            record = self.records.get(session_id)
            if record is None:
                return
            expected = record.revision - 1 if stale else record.revision
            newer = attrs.evolve(
                record, revision=expected + 1, state={"n": n}, last_seq=len(self.logs[session_id])
            )
            if stale:
                if expected < 0:
                    return
                try:
                    call(storage.save, newer, expected)
                except Conflict:
                    return
                raise AssertionError("save with a stale revision did not raise Conflict")
            call(storage.save, newer, expected)
            self.records[session_id] = newer

        @rule(name=names, after=st.integers(0, 12), limit=st.none() | st.integers(0, 6))
        def read(self, name: str, after: int, limit: int | None) -> None:
            session_id = self.sid(name)
            log = self.logs.get(session_id)
            if log is None:
                try:
                    call(storage.read, session_id, after, limit)
                except SessionNotFound:
                    return
                raise AssertionError("read of a deleted session did not raise SessionNotFound")
            got = call(storage.read, session_id, after, limit)
            want = log[after:] if limit is None else log[after : after + limit]
            assert got == want, f"read({after}, {limit}): {got!r:.200} != {want!r:.200}"

        @rule(name=names)
        def delete(self, name: str) -> None:
            session_id = self.sid(name)
            existed = call(storage.delete, session_id)
            assert existed == (session_id in self.records), "delete's return value"
            self.records.pop(session_id, None)
            self.logs.pop(session_id, None)

        @rule(limit=st.integers(1, 4))
        def list_pages(self, limit: int) -> None:
            seen: list[str] = []
            cursor = None
            for _ in range(50):
                page = call(storage.list, SessionFilter(labels={"sm": self.tag}), limit, cursor)
                assert len(page.items) <= limit
                seen.extend(r.id for r in page.items)
                cursor = page.next_cursor
                if cursor is None:
                    break
            want = [
                r.id
                for r in sorted(
                    self.records.values(), key=lambda r: (r.created_at, r.id), reverse=True
                )
            ]
            assert seen == want, f"listing {seen} != {want}"

        @invariant()
        def records_match(self) -> None:
            for session_id, record in self.records.items():
                assert call(storage.load, session_id) == record, f"record of {session_id}"
                assert call(storage.last_seq, session_id) == len(self.logs[session_id])

        def teardown(self) -> None:
            for session_id in list(self.records):
                call(storage.delete, session_id)

    run_state_machine_as_test(
        StorageMachine,
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=stateful_step_count,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )
