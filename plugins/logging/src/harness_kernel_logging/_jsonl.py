"""The ``jsonl`` sink: one JSON object per line in a file, rotated by size.

Records are buffered in memory and written in batches: ``write`` runs on the event loop,
so it must not make a system call per record. A batch is written when the buffer holds
``buffer_bytes``, when a record at ``flush_level`` or above arrives, on ``flush()`` and
when the store closes. What is still buffered when the process is killed is lost; that
is the price of not blocking the loop on every record (``buffer_bytes = 0`` writes each
record at once, ``fsync = true`` also waits for the disk).

Rotation happens between records, never inside one: before a line that would take the
file past ``max_bytes`` the file is renamed to ``<path>.<n>`` (``n`` counts up, so
``.1`` is the oldest) and a new one is started. A single record larger than
``max_bytes`` gets a file of its own. Rotated files are kept unless ``keep`` says how
many to keep. One process should own a log file: rotation is not coordinated between
processes.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from harness_kernel import LogSink

from ._render import LEVELS, json_line, level_number

__all__ = ["JsonlOptions", "JsonlSink"]


def _non_negative(_instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be 0 or more, got {value}")


def _keep(_instance: Any, _attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"keep must be at least 1 (omit it to keep every file), got {value}")


def _level_name(_instance: Any, _attribute: attrs.Attribute[Any], value: str) -> None:
    if value.lower() not in LEVELS:
        raise ValueError(
            f"flush_level must be one of debug, info, warning, error, critical, got {value!r}"
        )


@attrs.frozen
class JsonlOptions:
    """Options of the ``jsonl`` sink."""

    path: str
    """The log file; parent directories are created. Rotated files sit next to it."""
    max_bytes: int = attrs.field(default=10 * 1024 * 1024, validator=_non_negative)
    """Rotate before the file would grow past this size; 0 never rotates."""
    keep: int | None = attrs.field(default=None, validator=_keep)
    """How many rotated files to keep (the oldest are deleted); unset keeps them all."""
    buffer_bytes: int = attrs.field(default=64 * 1024, validator=_non_negative)
    """Write to the file once this many bytes are buffered; 0 writes every record."""
    flush_level: str = attrs.field(default="warning", validator=_level_name)
    """A record at this level or above is written at once, with everything before it."""
    fsync: bool = False
    """``fsync`` the file after each batch (durable across power loss; slower)."""


class JsonlSink(LogSink):
    """Appends records to ``path`` as JSON lines, with rotation by size."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 10 * 1024 * 1024,
        keep: int | None = None,
        buffer_bytes: int = 64 * 1024,
        flush_level: str = "warning",
        fsync: bool = False,
        level: int = logging.INFO,
    ) -> None:
        # Validate through the options class, so direct construction checks the same.
        JsonlOptions(os.fspath(path), max_bytes, keep, buffer_bytes, flush_level, fsync)
        self.path = Path(path).absolute()
        self.max_bytes = max_bytes
        self.keep = keep
        self.buffer_bytes = buffer_bytes
        self.flush_level = LEVELS[flush_level.lower()]
        self.fsync = fsync
        self.level = level
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._file: Any = None
        self._size = 0
        self._next_index = 0
        self._lock = threading.Lock()

    @classmethod
    def from_options(cls, options: JsonlOptions) -> JsonlSink:
        return cls(
            options.path,
            max_bytes=options.max_bytes,
            keep=options.keep,
            buffer_bytes=options.buffer_bytes,
            flush_level=options.flush_level,
            fsync=options.fsync,
        )

    # -- the LogSink contract -------------------------------------------------------

    def write(self, record: Mapping[str, Any]) -> None:
        line = (json_line(record) + "\n").encode("utf-8", "backslashreplace")
        with self._lock:
            self._buffer.append(line)
            self._buffered += len(line)
            due = self._buffered >= self.buffer_bytes or level_number(record) >= self.flush_level
            if due:
                self._drain()

    def flush(self) -> None:
        with self._lock:
            self._drain()

    async def aclose(self) -> None:
        """Write what is buffered and close the file (in a worker thread: it may fsync)."""
        import trio  # here: listing the plugin needs no trio

        await trio.to_thread.run_sync(self.close)

    def close(self) -> None:
        """Write what is buffered and close the file. A later record reopens it."""
        with self._lock:
            self._drain()
            if self._file is not None:
                self._file.close()
                self._file = None

    # -- files ------------------------------------------------------------------------

    def rotated_files(self) -> list[Path]:
        """The rotated files, oldest first."""
        pattern = re.compile(re.escape(self.path.name) + r"\.(\d+)$")
        found = []
        if self.path.parent.is_dir():
            for entry in self.path.parent.iterdir():
                match = pattern.match(entry.name)
                if match:
                    found.append((int(match.group(1)), entry))
        return [entry for _, entry in sorted(found)]

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open across calls
        self._size = self._file.seek(0, os.SEEK_END)
        rotated = self.rotated_files()
        last = int(rotated[-1].name.rpartition(".")[2]) if rotated else 0
        self._next_index = max(self._next_index, last + 1)

    def _rotate(self) -> None:
        self._file.close()
        self._file = None
        os.replace(self.path, self.path.with_name(f"{self.path.name}.{self._next_index}"))
        self._next_index += 1
        if self.keep is not None:
            for old in self.rotated_files()[: -self.keep]:
                old.unlink(missing_ok=True)
        self._open()

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[written:]
        self._size += len(data)

    def _drain(self) -> None:
        """Write the buffer, rotating between lines. Called with the lock held."""
        if not self._buffer:
            return
        if self._file is None:
            self._open()
        lines, self._buffer, self._buffered = self._buffer, [], 0
        chunk: list[bytes] = []
        chunk_size = 0
        for line in lines:
            if (
                self.max_bytes
                and self._size + chunk_size + len(line) > self.max_bytes
                and self._size + chunk_size > 0
            ):
                if chunk:
                    self._write_all(b"".join(chunk))
                    chunk, chunk_size = [], 0
                self._sync()
                self._rotate()
            chunk.append(line)
            chunk_size += len(line)
        if chunk:
            self._write_all(b"".join(chunk))
        self._sync()

    def _sync(self) -> None:
        if self.fsync and self._file is not None:
            os.fsync(self._file.fileno())
