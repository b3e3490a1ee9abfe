"""Two processes, and a process killed mid-write: the file log stays whole and fenced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness_kernel_file import encode_id
from tests.storage_common.approval import approval_survives_a_restart
from tests.storage_common.backends import dump_spec
from tests.storage_common.conflict import two_stores_one_session
from tests.storage_common.crash import kill_loop
from tests.storage_common.fencing import assert_fenced, race_two_processes


async def test_two_processes_appending_to_one_session_never_fork_it(tmp_path: Path) -> None:
    """500 appends from each of two processes, retried on Conflict, give 1,000 events 1..1000."""
    outcome = await race_two_processes(dump_spec("file", root=str(tmp_path)), "shared-1")
    assert_fenced(outcome)
    assert sum(outcome["conflicts"]) > 0, "the writers never raced: the test proved nothing"


@pytest.mark.slow
async def test_a_writer_killed_at_random_moments_leaves_a_whole_log(tmp_path: Path) -> None:
    """100 SIGKILLs of an appending child: the log stays contiguous, every acknowledged
    append is there, and after the session is opened every line of the log parses."""
    root = tmp_path / "root"
    log = root / "sessions" / encode_id("crash-1") / "events.jsonl"

    async def no_garbage_left() -> None:
        data = log.read_bytes()
        assert data == b"" or data.endswith(b"\n"), "a torn line was left behind after opening"
        for line in data.splitlines():
            json.loads(line)

    result = await kill_loop(
        dump_spec("file", root=str(root)), "crash-1", tmp_path, after_each=no_garbage_left
    )
    assert result["acked"] > 0, "the child never got an append through"


async def test_a_stale_store_catches_up_before_it_runs(tmp_path: Path) -> None:
    """Two stores on one root: the stale one catches up with the other's events before it runs."""
    await two_stores_one_session("file", {"root": str(tmp_path)})


async def test_a_run_waiting_for_approval_survives_a_restart(tmp_path: Path) -> None:
    """Parked on an approval, the store closed and reopened: approving continues the run."""
    await approval_survives_a_restart("file", {"root": str(tmp_path)})
