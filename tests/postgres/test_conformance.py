"""The conformance kit (watch included) and the storage state machine pass on PostgreSQL."""

from __future__ import annotations

from typing import Any

from harness_kernel.testing import check_storage, run_storage_state_machine
from harness_kernel_postgres import PostgresOptions, build


async def test_postgres_storage_passes_check_storage(pg_options: dict[str, Any]) -> None:
    """Every storage contract check passes, the watch checks among them (the backend
    claims watch)."""
    passed = await check_storage(lambda: build(PostgresOptions(**pg_options)))
    assert "concurrent_appends_at_one_seq_have_exactly_one_winner" in passed
    assert "watch_announces_appends_in_order_and_only_the_watched_sessions" in passed


async def test_postgres_storage_matches_the_model(pg_options: dict[str, Any]) -> None:
    """Random operation sequences leave the PostgreSQL store equal to the in-memory model."""
    await run_storage_state_machine(lambda: build(PostgresOptions(**pg_options)), max_examples=20)
