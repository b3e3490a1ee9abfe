"""One owner per session across two OS processes on one PostgreSQL storage (the K8 scenarios)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.storage_common import owners


async def test_a_send_from_another_process_is_run_by_the_owner(spec: dict[str, Any], tmp_path: Path) -> None:
    await owners.send_through_the_owner(spec, tmp_path)


async def test_steer_and_abort_from_another_process_act_through_the_owner(spec: dict[str, Any], tmp_path: Path) -> None:
    await owners.steer_and_abort_through_the_owner(spec, tmp_path)


async def test_an_approval_from_another_process_is_applied_by_the_owner(spec: dict[str, Any], tmp_path: Path) -> None:
    await owners.approve_through_the_owner(spec, tmp_path)


async def test_kill_9_of_the_owner_lets_another_process_take_over_after_the_lease(
    spec: dict[str, Any], tmp_path: Path
) -> None:
    await owners.take_over_after_kill(spec, tmp_path)
