"""What the PostgreSQL backend adds to the contract: registration, secrets, lost
connections, retries that never write twice, the statement timeout, odd label text."""

from __future__ import annotations

import attrs
import psycopg
import pytest
import trio

from harness_kernel import Event, PluginRegistry, SessionRecord
from harness_kernel.contracts import SessionFilter
from harness_kernel.errors import Conflict, StorageError
from harness_kernel_postgres import PostgresOptions, PostgresStorage, build
from tests.postgres.cluster import Cluster
from tests.storage_common.events import user_message


def _events(start: int, *texts: str) -> list[Event]:
    return [Event(start + i, user_message(t), 1.0 + i) for i, t in enumerate(texts)]


def test_postgres_appears_in_the_plugin_listing_with_a_secret_dsn() -> None:
    """The entry point loads, credited to harness-kernel-postgres; the DSN is a secret option."""
    rows = {(row.kind, row.name): row for row in PluginRegistry().listing()}
    row = rows[("storage", "postgres")]
    assert (row.status, row.distribution, row.version) == ("loaded", "harness-kernel-postgres", "0.1.0"), row.error
    assert attrs.fields(PostgresOptions).dsn.metadata.get("secret") is True
    assert PostgresStorage.capabilities.watch
    assert PostgresStorage.capabilities.cross_process_fencing


def test_a_bad_schema_name_is_refused() -> None:
    """The schema is quoted into statements, so only plain identifiers are accepted."""
    with pytest.raises(ValueError, match="schema"):
        PostgresOptions(dsn="postgresql://x", schema='bad"; drop')


def _terminate_others(cluster: Cluster) -> int:
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()
        assert row is not None
        return int(row[0])


async def test_calls_after_the_connections_were_killed_are_retried(
    pg_cluster: Cluster, pg_options: dict[str, object]
) -> None:
    """Every pooled connection terminated by the server between calls: the next read and
    append get new connections and succeed."""
    storage = build(PostgresOptions(**pg_options))  # type: ignore[arg-type]
    try:
        await storage.create(SessionRecord("lost-1", "a", {}, 1.0, 1.0))
        await storage.append("lost-1", _events(1, "one"), 0)
        assert await trio.to_thread.run_sync(_terminate_others, pg_cluster) >= 1
        assert [e.seq for e in await storage.read("lost-1")] == [1]
        assert await trio.to_thread.run_sync(_terminate_others, pg_cluster) >= 1
        await storage.append("lost-1", _events(2, "two"), 1)
        assert await storage.last_seq("lost-1") == 2
    finally:
        await storage.aclose()


async def test_a_retried_write_whose_first_attempt_landed_succeeds_and_never_writes_twice(
    pg_options: dict[str, object],
) -> None:
    """A retry (the first attempt's connection lost after it committed) finds its own
    events or record and reports success; another writer's data is still a Conflict."""
    storage = build(PostgresOptions(**pg_options))  # type: ignore[arg-type]
    try:
        record = SessionRecord("retry-1", "a", {"k": "v"}, 1.0, 1.0, incarnation="inc")
        await storage.create(record)
        mine = _events(1, "mine")
        await storage.append("retry-1", mine, 0)

        async def again(fn, *args):  # type: ignore[no-untyped-def]
            return await trio.to_thread.run_sync(lambda: storage._call(fn, True, args))

        await again(storage._append, "retry-1", mine, 0, "inc", storage.channel)
        with pytest.raises(Conflict):
            await again(storage._append, "retry-1", _events(1, "theirs"), 0, "inc", storage.channel)
        assert [e.seq for e in await storage.read("retry-1")] == [1]

        saved = attrs.evolve(record, revision=1, mode="plan")
        await storage.save(saved, 0)
        await again(storage._save, saved, 0)
        with pytest.raises(StorageError, match="may have landed"):
            await again(storage._save, attrs.evolve(record, revision=1, mode="other"), 0)
        await again(storage._create, saved)  # created and saved: the stored record is this one
        assert await storage.load("retry-1") == saved
    finally:
        await storage.aclose()


async def test_a_statement_past_the_timeout_raises_storage_error(pg_cluster: Cluster, pg_options: dict[str, object]) -> None:
    """An append blocked on a row lock held elsewhere ends at statement_timeout with
    StorageError naming it, and writes nothing."""
    storage = build(PostgresOptions(**{**pg_options, "statement_timeout_ms": 200}))  # type: ignore[arg-type]
    try:
        await storage.create(SessionRecord("slow-1", "a", {}, 1.0, 1.0))
        with psycopg.connect(pg_cluster.dsn) as holder:
            holder.execute(f'SELECT 1 FROM "{storage.schema}".sessions WHERE id = %s FOR UPDATE', ("slow-1",))
            with pytest.raises(StorageError, match="statement_timeout"):
                await storage.append("slow-1", _events(1, "x"), 0)
            holder.rollback()
        assert await storage.last_seq("slow-1") == 0
    finally:
        await storage.aclose()


async def test_labels_with_nul_and_backslashes_filter_exactly(pg_options: dict[str, object]) -> None:
    """Label text PostgreSQL cannot hold as is (NUL) is stored one-to-one: filters match
    exactly the sessions carrying it, and relabelling on save moves the index rows."""
    storage = build(PostgresOptions(**pg_options))  # type: ignore[arg-type]
    try:
        odd = {"k\x00": "v\\u0000", "plain": "a"}
        await storage.create(SessionRecord("odd-1", "a", odd, 2.0, 2.0))
        await storage.create(SessionRecord("odd-2", "a", {"k\\u0000": "v\x00", "plain": "a"}, 1.0, 1.0))
        page = await storage.list(SessionFilter(labels={"k\x00": "v\\u0000"}))
        assert [r.id for r in page.items] == ["odd-1"]
        assert [r.id for r in (await storage.list(SessionFilter(labels={"plain": "a"}))).items] == ["odd-1", "odd-2"]
        loaded = await storage.load("odd-1")
        assert loaded is not None
        await storage.save(attrs.evolve(loaded, labels={"plain": "b"}, revision=1), 0)
        assert [r.id for r in (await storage.list(SessionFilter(labels={"plain": "a"}))).items] == ["odd-2"]
        assert [r.id for r in (await storage.list(SessionFilter(labels={"plain": "b"}))).items] == ["odd-1"]
        assert (await storage.list(SessionFilter(labels={"k\x00": "v\\u0000"}))).items == ()
    finally:
        await storage.aclose()
