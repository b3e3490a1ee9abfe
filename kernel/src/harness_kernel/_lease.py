"""What a record write does with a run's lease, and the two ways taking one can fail."""

from __future__ import annotations

from typing import Final, TypeAlias

from ._records import Lease

__all__ = ["KEEP", "LeaseChange", "LeaseHeld", "StartMoved"]


class _Keep:
    """``save_record(lease=KEEP)``: leave the stored lease as it is."""


KEEP: Final = _Keep()

LeaseChange: TypeAlias = "Lease | _Keep | None"
"""What a record write does with the lease: ``KEEP`` it, set one, or release (``None``)."""


class StartMoved(Exception):
    """A run's first commit (taking the lease) found the log moved by another store's
    run: the session was caught up, and the run should start again on what it holds."""


class LeaseHeld(Exception):
    """Another store's live lease: it runs the session now."""

    def __init__(self, lease: Lease) -> None:
        super().__init__(f"session is run by {lease.owner}")
        self.lease = lease
