"""A tool-calling turn on SQLite is 4 transactions (K15)."""

from __future__ import annotations

from pathlib import Path

from harness_kernel_sqlite import SqliteStorage
from tests.storage_common.commits import check_four_commits, one_tool_turn, store_on


async def test_a_turn_with_one_tool_call_is_four_commits(tmp_path: Path) -> None:
    """Each step one transaction; the lease and the snapshot ride with the first and last."""
    storage = SqliteStorage(str(tmp_path / "sessions.db"))
    check_four_commits(await one_tool_turn(storage))


async def test_the_snapshot_saved_with_run_finished_hydrates_without_a_tail(tmp_path: Path) -> None:
    """A fresh store reads the record saved in the last commit and finds nothing after it."""
    path = str(tmp_path / "sessions.db")
    await one_tool_turn(SqliteStorage(path))
    storage = SqliteStorage(path)
    record = await storage.load("turns")
    assert record is not None
    assert record.last_seq == await storage.last_seq("turns")
    async with store_on(storage) as store:
        session = await store.get_or_create("turns")
        assert [m.text for m in await session.history() if m.role == "user"] == ["first", "second"]
        assert (await session.send("third")).status == "completed"
