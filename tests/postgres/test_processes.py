"""Two processes, a process killed mid-append, two stores: the PostgreSQL log stays whole and fenced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.storage_common.approval import approval_survives_a_restart
from tests.storage_common.conflict import two_stores_one_session
from tests.storage_common.crash import kill_loop
from tests.storage_common.fencing import assert_fenced, race_two_processes


async def test_two_processes_appending_to_one_session_never_fork_it(spec: dict[str, Any]) -> None:
    """500 appends from each of two processes, retried on Conflict, give 1,000 events 1..1000."""
    outcome = await race_two_processes(json.dumps(spec), "shared-1")
    assert_fenced(outcome)
    assert sum(outcome["conflicts"]) > 0, "the writers never raced: the test proved nothing"


@pytest.mark.slow
async def test_a_writer_killed_at_random_moments_leaves_a_whole_log(spec: dict[str, Any], tmp_path: Path) -> None:
    """100 SIGKILLs of an appending child: the log stays contiguous, last_seq agrees with
    it, and every acknowledged append is there."""
    # The children's connections carry one application_name, so each check first waits
    # for the killed child's backend to finish the statement it was running.
    dsn = spec["options"]["dsn"] + "?application_name=hk-crash-child"
    settled = {"plugin": "postgres", "options": {**spec["options"], "dsn": dsn}, "settle": "hk-crash-child"}
    result = await kill_loop(json.dumps(settled), "crash-1", tmp_path)
    assert result["acked"] > 0, "the child never got an append through"


async def test_a_stale_store_catches_up_before_it_runs(pg_options: dict[str, Any]) -> None:
    """Two stores on one schema: the stale one catches up with the other's events before it runs."""
    await two_stores_one_session("postgres", pg_options)


async def test_a_run_waiting_for_approval_survives_a_restart(pg_options: dict[str, Any]) -> None:
    """Parked on an approval, the store closed and reopened: approving continues the run."""
    await approval_survives_a_restart("postgres", pg_options)
