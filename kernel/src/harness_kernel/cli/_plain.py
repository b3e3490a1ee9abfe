"""Plain-text helpers with no kernel imports: what ``harness-kernel plugins`` and every
command's start need, so they do not load the store, trio or the codec."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["LogOnce", "print_json", "table"]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    cells = [
        [str(c) for c in headers],
        *[["-" if c is None else str(c) for c in row] for row in rows],
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        line = "  ".join(
            cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row)
        )
        out.write(line.rstrip() + "\n")


def print_json(value: Any, out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    stream.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")
    stream.flush()


class LogOnce(logging.Handler):
    """The kernel's warnings on stderr, each distinct one once per command.

    A plugin that fails to register is one problem to report, however often the
    command meets it (a host's own warning repeated is shown once too).
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if text not in self._seen:
            self._seen.add(text)
            sys.stderr.write(text + "\n")
