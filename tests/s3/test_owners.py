"""One owner per session across two OS processes on one S3 bucket (moto on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.storage_common import owners


async def test_a_send_from_another_process_is_run_by_the_owner(s3_options: dict[str, Any], tmp_path: Path) -> None:
    await owners.send_through_the_owner({"plugin": "s3", "options": s3_options}, tmp_path)


async def test_steer_and_abort_from_another_process_act_through_the_owner(
    s3_options: dict[str, Any], tmp_path: Path
) -> None:
    await owners.steer_and_abort_through_the_owner({"plugin": "s3", "options": s3_options}, tmp_path)


async def test_kill_9_of_the_owner_lets_another_process_take_over_after_the_lease(
    s3_options: dict[str, Any], tmp_path: Path
) -> None:
    await owners.take_over_after_kill({"plugin": "s3", "options": s3_options}, tmp_path)
