"""The conformance kit and the storage state machine pass on the file backend."""

from __future__ import annotations

from pathlib import Path

from harness_kernel.testing import check_storage, run_storage_state_machine
from harness_kernel_file import FileStorage


async def test_file_storage_passes_check_storage(tmp_path: Path) -> None:
    """Every storage contract check passes on a file store."""
    passed = await check_storage(lambda: FileStorage(tmp_path))
    assert "concurrent_appends_at_one_seq_have_exactly_one_winner" in passed


async def test_file_storage_matches_the_model(tmp_path: Path) -> None:
    """Random operation sequences leave the file store equal to the in-memory model."""
    await run_storage_state_machine(lambda: FileStorage(tmp_path), max_examples=20)
