"""Two processes, and a process killed mid-transaction: the SQLite log stays whole and fenced."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.storage_common.approval import approval_survives_a_restart
from tests.storage_common.backends import dump_spec
from tests.storage_common.conflict import two_stores_one_session
from tests.storage_common.crash import kill_loop
from tests.storage_common.fencing import assert_fenced, race_two_processes


async def test_two_processes_appending_to_one_session_never_fork_it(tmp_path: Path) -> None:
    """500 appends from each of two processes, retried on Conflict, give 1,000 events 1..1000."""
    outcome = await race_two_processes(dump_spec("sqlite", path=str(tmp_path / "s.db")), "shared-1")
    assert_fenced(outcome)
    assert sum(outcome["conflicts"]) > 0, "the writers never raced: the test proved nothing"


@pytest.mark.slow
async def test_a_writer_killed_at_random_moments_leaves_a_whole_log(tmp_path: Path) -> None:
    """100 SIGKILLs of an appending child: the log stays contiguous, every acknowledged
    append is there, and the database passes SQLite's integrity check after each."""
    path = tmp_path / "s.db"

    async def database_is_sound() -> None:
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        conn.close()

    result = await kill_loop(dump_spec("sqlite", path=str(path)), "crash-1", tmp_path, after_each=database_is_sound)
    assert result["acked"] > 0, "the child never got an append through"


async def test_a_stale_store_catches_up_before_it_runs(tmp_path: Path) -> None:
    """Two stores on one database: the stale one catches up with the other's events before it runs."""
    await two_stores_one_session("sqlite", {"path": str(tmp_path / "s.db")})


async def test_a_run_waiting_for_approval_survives_a_restart(tmp_path: Path) -> None:
    """Parked on an approval, the store closed and reopened: approving continues the run."""
    await approval_survives_a_restart("sqlite", {"path": str(tmp_path / "s.db")})
