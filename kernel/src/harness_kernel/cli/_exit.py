"""Exit codes and the one error a command raises for the user; imported by the
console script before anything heavy, so that ``--help`` starts fast."""

from __future__ import annotations

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "CommandFailed"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class CommandFailed(Exception):
    """An operation could not be done; the message is for the user (exit code 1)."""
