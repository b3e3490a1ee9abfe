"""Options of the ``files`` and ``shell`` kits (``tool_options={"files": {...}, "shell": {...}}``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeAlias

import attrs

__all__ = ["Approval", "FilesKitOptions", "ShellKitOptions", "approval_for"]

Approval: TypeAlias = Literal["auto", "ask", "deny"]

DEFAULT_APPROVALS: Mapping[str, Approval] = {"read": "auto", "edit": "ask", "execute": "ask"}
SKIP_DIRS = (".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache", ".tox")


@attrs.frozen
class FilesKitOptions:
    """The ``files`` kit: ``read_file``, ``list_dir``, ``glob``, ``grep`` (category ``read``),
    ``write_file`` and ``edit_file`` (category ``edit``)."""

    approvals: dict[str, Approval] = attrs.field(factory=dict)
    """Per category, overrides the defaults ``read = "auto"``, ``edit = "ask"``."""
    max_file_bytes: int = 4 << 20
    """Files larger than this are not read, edited or searched."""
    max_lines: int = 2000
    """Lines ``read_file`` returns when the model gives no ``limit``."""
    max_line_chars: int = 2000
    """Longer lines are cut in ``read_file`` (``grep`` shows at most 300 characters)."""
    max_output_chars: int = 100_000
    """Most characters one call returns to the model."""
    max_results: int = 200
    """Most matches ``grep`` and paths ``glob`` return."""
    max_walk_entries: int = 20_000
    """Most directory entries ``glob`` and ``grep`` visit in one call."""
    skip_dirs: tuple[str, ...] = SKIP_DIRS
    """Directory names ``glob`` and ``grep`` do not descend into (unless searched directly)."""
    regex_timeout: float = 2.0
    """Seconds ``grep``'s pattern may spend on one file (guards against runaway patterns)."""

    def __attrs_post_init__(self) -> None:
        # ValueError: the kernel reports it with the options' path when it validates a table.
        _check_approvals(self.approvals, ("read", "edit"))
        for name in ("max_file_bytes", "max_lines", "max_line_chars", "max_output_chars", "max_results", "max_walk_entries"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1")
        if not self.regex_timeout > 0:
            raise ValueError("regex_timeout: must be a positive number of seconds")


@attrs.frozen
class ShellKitOptions:
    """The ``shell`` kit: ``shell`` (category ``execute``)."""

    approvals: dict[str, Approval] = attrs.field(factory=dict)
    """Overrides the default ``execute = "ask"``."""
    default_timeout: float = 120.0
    """Seconds a command may run when the model gives no ``timeout``."""
    max_timeout: float = 600.0
    """The longest ``timeout`` the model may ask for (longer requests are lowered to it)."""
    max_output_chars: int = 30_000
    """Most characters of output one call returns (the start and the end are kept)."""
    env: dict[str, str] = attrs.field(factory=dict)
    """Variables added to every command's environment (on top of the sandbox's own)."""

    def __attrs_post_init__(self) -> None:
        _check_approvals(self.approvals, ("execute",))
        if not self.default_timeout > 0:
            raise ValueError("default_timeout: must be a positive number of seconds")
        if self.max_timeout < self.default_timeout:
            raise ValueError(f"max_timeout: must be at least default_timeout ({self.default_timeout})")
        if self.max_output_chars < 100:
            raise ValueError("max_output_chars: must be at least 100")


def _check_approvals(approvals: Mapping[str, str], known: tuple[str, ...]) -> None:
    for category in approvals:
        if category not in known:
            raise ValueError(f"approvals: unknown category '{category}' (this kit has: {', '.join(known)})")


def approval_for(approvals: Mapping[str, Approval], category: str) -> Approval:
    """The configured approval of ``category``, else its default."""
    return approvals.get(category, DEFAULT_APPROVALS[category])
