"""The conformance kit and the storage state machine pass on the S3 backend (moto server)."""

from __future__ import annotations

from collections.abc import Callable

from harness_kernel.testing import check_storage, run_storage_state_machine
from harness_kernel_s3 import S3Storage


async def test_s3_storage_passes_check_storage(make_s3: Callable[..., S3Storage]) -> None:
    """Every storage contract check passes on an S3 bucket."""
    passed = await check_storage(make_s3)
    assert "concurrent_appends_at_one_seq_have_exactly_one_winner" in passed


async def test_s3_storage_with_tiny_segments_passes_check_storage(make_s3: Callable[..., S3Storage]) -> None:
    """The contract holds when reads go through segment objects (2 events each) and batches."""
    await check_storage(lambda: make_s3(segment_events=2, prefix="tiny/"))


async def test_s3_storage_matches_the_model(make_s3: Callable[..., S3Storage]) -> None:
    """Random operation sequences leave the S3 store equal to the in-memory model."""
    await run_storage_state_machine(lambda: make_s3(segment_events=3), max_examples=5)
