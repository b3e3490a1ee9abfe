"""The file backend has no record-with-append: a turn is 4 appends and 2 record saves."""

from __future__ import annotations

from pathlib import Path

from harness_kernel_file import FileStorage
from tests.storage_common.commits import one_tool_turn


async def test_a_turn_is_one_append_per_step_and_two_record_saves(tmp_path: Path) -> None:
    """The lease is saved before run.started, the snapshot after run.finished."""
    commits = await one_tool_turn(FileStorage(tmp_path))
    assert [c.kind for c in commits] == ["save", "append", "append", "append", "append", "save"]
