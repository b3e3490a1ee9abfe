"""A tool-calling turn on PostgreSQL is 4 transactions (K15)."""

from __future__ import annotations

from typing import Any

from harness_kernel_postgres import PostgresOptions, build
from tests.storage_common.commits import check_four_commits, one_tool_turn


async def test_a_turn_with_one_tool_call_is_four_commits(pg_options: dict[str, Any]) -> None:
    """Each step one transaction; the lease and the snapshot ride with the first and last."""
    check_four_commits(await one_tool_turn(build(PostgresOptions(**pg_options))))
