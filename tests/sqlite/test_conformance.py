"""The conformance kit and the storage state machine pass on the SQLite backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness_kernel.testing import check_storage, run_storage_state_machine
from harness_kernel_sqlite import SqliteStorage


@pytest.fixture(params=["file", "memory"])
def make_storage(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    path = str(tmp_path / "sessions.db") if request.param == "file" else ":memory:"
    return lambda: SqliteStorage(path)


async def test_sqlite_storage_passes_check_storage(make_storage) -> None:  # type: ignore[no-untyped-def]
    """Every storage contract check passes on a database file and on ":memory:"."""
    passed = await check_storage(make_storage)
    assert "concurrent_appends_at_one_seq_have_exactly_one_winner" in passed


async def test_sqlite_storage_matches_the_model(make_storage) -> None:  # type: ignore[no-untyped-def]
    """Random operation sequences leave the SQLite store equal to the in-memory model."""
    await run_storage_state_machine(make_storage, max_examples=20)
