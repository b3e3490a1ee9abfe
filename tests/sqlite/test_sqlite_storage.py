"""The SQLite backend's own promises: schema, migrations, hostile ids, plugin entry."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from harness_kernel import SessionRecord, create_session_store, define_agent
from harness_kernel.contracts import SessionFilter
from harness_kernel.errors import ConfigError, InvalidSessionId, StorageError
from harness_kernel_sqlite import SCHEMA_VERSION, SqliteStorage
from tests.storage_common.events import message_event, message_text


def _record(session_id: str, created_at: float = 1000.0, **labels: str) -> SessionRecord:
    return SessionRecord(session_id, "agent", labels, created_at, created_at)


async def test_the_database_is_in_wal_mode_with_a_schema_version(tmp_path: Path) -> None:
    """A new file gets WAL journaling, the current schema version and the events primary key."""
    storage = SqliteStorage(str(tmp_path / "s.db"))
    await storage.create(_record("a"))
    await storage.append("a", [message_event(1, "x")], 0)
    await storage.aclose()
    conn = sqlite3.connect(tmp_path / "s.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("SELECT session_id, seq FROM events").fetchall() == [("a", 1)]
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO events VALUES ('a', 1, '{}')")
    finally:
        conn.close()


async def test_listing_and_label_filters_are_served_by_indexes(tmp_path: Path) -> None:
    """The queries behind list() search an index instead of scanning every session."""
    storage = SqliteStorage(str(tmp_path / "s.db"))
    for i in range(30):
        await storage.create(_record(f"s{i}", 1000.0 + i, team="x" if i % 3 else "y"))
    page = await storage.list(SessionFilter(agent="agent", labels={"team": "x"}), limit=5)
    assert [r.id for r in page.items] == ["s29", "s28", "s26", "s25", "s23"]
    await storage.aclose()
    conn = sqlite3.connect(tmp_path / "s.db")
    try:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT s.record FROM session_labels l JOIN sessions s ON s.id = l.session_id"
            " WHERE l.key = ? AND l.value = ? AND (l.created_at, l.session_id) < (?, ?)"
            " ORDER BY l.created_at DESC, l.session_id DESC LIMIT 6",
            ("team", "x", 2000.0, "z"),
        ).fetchall()
    finally:
        conn.close()
    assert "labels_by_value" in " ".join(row[3] for row in plan)


async def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    """A schema version above what this code knows is an error, not a misread."""
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="upgrade"):
        await SqliteStorage(str(tmp_path / "s.db")).load("x")


async def test_an_old_database_is_migrated_forward_once(tmp_path: Path) -> None:
    """Opening a version-0 file (no tables) creates the schema; reopening changes nothing."""
    path = str(tmp_path / "s.db")
    for _ in range(2):
        storage = SqliteStorage(path)
        await storage.load("x")
        await storage.aclose()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        conn.close()


async def test_memory_databases_are_private_and_shared_by_every_call(tmp_path: Path) -> None:
    """Two ':memory:' storages do not see each other; one sees its own writes from any call."""
    first, second = SqliteStorage(":memory:"), SqliteStorage(":memory:")
    await first.create(_record("only-in-first"))
    await first.append("only-in-first", [message_event(1, "hi")], 0)
    assert await second.load("only-in-first") is None
    assert [message_text(e) for e in await first.read("only-in-first")] == ["hi"]
    await first.aclose()
    await second.aclose()


@pytest.mark.parametrize("hostile", ["../x", "a/b", "/etc/passwd", "a\0b", "x" * 10_000, "", "a'; DROP TABLE sessions;--"])
async def test_hostile_ids_are_refused(hostile: str) -> None:
    """Ids the kernel would refuse are refused by every method; nothing is stored."""
    storage = SqliteStorage(":memory:")
    for call in (
        storage.create(_record(hostile)),
        storage.load(hostile),
        storage.read(hostile),
        storage.last_seq(hostile),
        storage.append(hostile, [message_event(1, "x")], 0),
        storage.delete(hostile),
    ):
        with pytest.raises(InvalidSessionId):
            await call
    assert (await storage.list(SessionFilter())).items == ()
    await storage.aclose()


async def test_ids_differing_only_in_case_are_distinct() -> None:
    """``Ab`` and ``aB`` are two sessions."""
    storage = SqliteStorage(":memory:")
    for session_id in ("Ab", "aB"):
        await storage.create(_record(session_id))
        await storage.append(session_id, [message_event(1, session_id)], 0)
    assert [message_text(e) for e in await storage.read("Ab")] == ["Ab"]
    assert [message_text(e) for e in await storage.read("aB")] == ["aB"]
    await storage.aclose()


async def test_calls_after_aclose_fail_fast() -> None:
    """A closed storage raises StorageError instead of touching a closed connection."""
    storage = SqliteStorage(":memory:")
    await storage.create(_record("a"))
    await storage.aclose()
    with pytest.raises(StorageError):
        await storage.load("a")


async def test_the_plugin_is_found_by_name_and_persists_across_stores(tmp_path: Path) -> None:
    """``storage="sqlite"`` resolves through the entry point; a second store hydrates the session."""
    agent = define_agent(name="notes", instructions="Be brief.")
    options = {"path": str(tmp_path / "deep" / "s.db")}
    async with create_session_store(agent=agent, storage="sqlite", storage_options=options) as store:
        assert (await store.send("s-1", "hello")).status == "completed"
    async with create_session_store(agent=agent, storage="sqlite", storage_options=options) as store:
        session = await store.get_or_create("s-1")
        assert next(m.text for m in await session.history()) == "hello"


async def test_bad_options_are_refused_with_their_path() -> None:
    """A wrong type or an unknown ``synchronous`` level names the bad field."""
    agent = define_agent(name="notes", instructions="Be brief.")
    for options in ({"path": 1}, {"path": "x.db", "synchronous": "sometimes"}):
        with pytest.raises(ConfigError, match=r"storage\.options"):
            async with create_session_store(agent=agent, storage="sqlite", storage_options=options):
                pass


async def test_text_with_a_lone_surrogate_round_trips(tmp_path: Path) -> None:
    """A str that is not valid UTF-8 (a lone surrogate) is stored and read back unchanged."""
    storage = SqliteStorage(str(tmp_path / "s.db"))
    await storage.create(_record("odd", note="v\ud800"))
    await storage.append("odd", [message_event(1, "bad \ud800 text")], 0)
    assert [message_text(e) for e in await storage.read("odd")] == ["bad \ud800 text"]
    loaded = await storage.load("odd")
    assert loaded is not None
    assert loaded.labels == {"note": "v\ud800"}
    assert [r.id for r in (await storage.list(SessionFilter(labels={"note": "v\ud800"}))).items] == ["odd"]
    await storage.aclose()


async def test_a_large_read_leaves_the_garbage_collector_as_it_was() -> None:
    """The collector paused for a big decode is on again afterwards, and stays off if the host turned it off."""
    import gc

    storage = SqliteStorage(":memory:")
    await storage.create(_record("big"))
    await storage.append("big", [message_event(s, "x") for s in range(1, 1501)], 0)
    assert gc.isenabled()
    assert len(await storage.read("big")) == 1500
    assert gc.isenabled()
    gc.disable()
    try:
        assert len(await storage.read("big")) == 1500
        assert not gc.isenabled()
    finally:
        gc.enable()
    await storage.aclose()


async def test_a_version_1_database_is_migrated_and_keeps_its_sessions(tmp_path: Path) -> None:
    """A file written before incarnations (schema 1) opens: its sessions read as before,
    appends without an incarnation still work, and new sessions check theirs."""
    from harness_kernel.codec import encode_record
    from harness_kernel.errors import IncarnationMismatch
    from harness_kernel_sqlite._schema import MIGRATIONS

    path = str(tmp_path / "s.db")
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    old = SessionRecord("old", "agent", {}, 1.0, 1.0)
    conn.execute(
        "INSERT INTO sessions (id, agent, created_at, labels, revision, head_seq, record) VALUES (?, ?, ?, ?, ?, 0, ?)",
        ("old", "agent", 1.0, "{}", 0, json.dumps(encode_record(old))),
    )
    conn.commit()
    conn.close()
    storage = SqliteStorage(path)
    assert await storage.load("old") == old
    await storage.append("old", [message_event(1, "hi")], 0, incarnation="anything")
    await storage.create(SessionRecord("new", "agent", {}, 2.0, 2.0, incarnation="i1"))
    with pytest.raises(IncarnationMismatch):
        await storage.append("new", [message_event(1, "x")], 0, incarnation="i0")
    await storage.aclose()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()
