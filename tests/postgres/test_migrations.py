"""The schema is created and migrated forward by the plugin, from every earlier version."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
import trio

from harness_kernel import Event, SessionRecord
from harness_kernel.codec import encode_event, encode_record
from harness_kernel.contracts import SessionFilter
from harness_kernel.errors import StorageError
from harness_kernel_postgres import SCHEMA_VERSION, PostgresOptions, build, migrate, schema_version
from tests.storage_common.events import message_text, user_message


def _at_version(dsn: str, schema: str, version: int) -> None:
    """A schema at ``version`` holding one session with two events, written the way
    that version's tables take them (version 0: nothing at all)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, schema, target=version)
        assert schema_version(conn, schema) == version
        if version == 0:
            return
        record = SessionRecord("old-1", "agent", {"tenant_id": "t"}, 5.0, 5.0, last_seq=0, incarnation="inc-old")
        conn.execute(
            f'INSERT INTO "{schema}".sessions (id, agent, created_at, labels, revision, head_seq, incarnation, record)'
            " VALUES (%s, %s, %s, %s, 0, 2, %s, %s)",
            ("old-1", "agent", 5.0, json.dumps({"tenant_id": "t"}), "inc-old", json.dumps(encode_record(record))),
        )
        conn.execute(
            f'INSERT INTO "{schema}".session_labels VALUES (%s, %s, %s, %s)', ("old-1", "tenant_id", "t", 5.0)
        )
        for seq in (1, 2):
            event = Event(seq, user_message(f"old {seq}"), 1.0)
            conn.execute(
                f'INSERT INTO "{schema}".events VALUES (%s, %s, %s)', ("old-1", seq, json.dumps(encode_event(event)))
            )


@pytest.mark.parametrize("version", range(SCHEMA_VERSION))
async def test_a_schema_at_an_earlier_version_is_migrated_and_its_data_kept(
    version: int, pg_options: dict[str, Any]
) -> None:
    """Opened by the storage, a schema at ``version`` is brought to SCHEMA_VERSION; its
    session loads, reads, lists, takes appends, and is announced by watch's catch-up."""
    dsn, schema = pg_options["dsn"], pg_options["schema"]
    await trio.to_thread.run_sync(_at_version, dsn, schema, version)
    storage = build(PostgresOptions(**pg_options))
    try:
        if version == 0:
            await storage.create(SessionRecord("old-1", "agent", {"tenant_id": "t"}, 5.0, 5.0))
            await storage.append("old-1", [Event(s, user_message(f"old {s}"), 1.0) for s in (1, 2)], 0)
        loaded = await storage.load("old-1")
        assert loaded is not None
        assert loaded.labels == {"tenant_id": "t"}
        assert [message_text(e) for e in await storage.read("old-1")] == ["old 1", "old 2"]
        assert [r.id for r in (await storage.list(SessionFilter(labels={"tenant_id": "t"}))).items] == ["old-1"]
        async with storage.watch(["old-1"], after_seq={"old-1": 1}) as notices:
            with trio.fail_after(60):
                assert tuple(await notices.receive()) == ("old-1", 2)
            await storage.append("old-1", [Event(3, user_message("new"), 1.0)], 2)
            with trio.fail_after(60):
                assert tuple(await notices.receive()) == ("old-1", 3)
    finally:
        await storage.aclose()
    with psycopg.connect(dsn) as conn:
        assert schema_version(conn, schema) == SCHEMA_VERSION


async def test_hosts_starting_together_migrate_once(pg_options: dict[str, Any]) -> None:
    """Four storages opening a fresh schema at once: one migrates (the advisory lock),
    the others find it done, and all of them work."""
    storages = [build(PostgresOptions(**pg_options)) for _ in range(4)]
    try:
        async with trio.open_nursery() as nursery:
            for i, storage in enumerate(storages):
                nursery.start_soon(storage.create, SessionRecord(f"s-{i}", "a", {}, 1.0, 1.0))
        assert [await s.last_seq(f"s-{i}") for i, s in enumerate(storages)] == [0, 0, 0, 0]
    finally:
        for storage in storages:
            await storage.aclose()


async def test_a_schema_newer_than_the_code_is_refused(pg_options: dict[str, Any]) -> None:
    """A schema written by a newer harness-kernel-postgres is not misread: StorageError."""
    dsn, schema = pg_options["dsn"], pg_options["schema"]
    await trio.to_thread.run_sync(_at_version, dsn, schema, SCHEMA_VERSION)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'UPDATE "{schema}".schema_version SET version = %s', (SCHEMA_VERSION + 1,))
    storage = build(PostgresOptions(**pg_options))
    try:
        with pytest.raises(StorageError, match="upgrade"):
            await storage.load("anything")
    finally:
        await storage.aclose()
