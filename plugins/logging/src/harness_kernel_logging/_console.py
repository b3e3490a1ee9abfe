"""The ``console`` sink: pretty lines on a terminal, JSON lines when piped."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import attrs

from harness_kernel import LogSink

from ._render import json_line, pretty_line

__all__ = ["ConsoleOptions", "ConsoleSink"]


@attrs.frozen
class ConsoleOptions:
    """Options of the ``console`` sink."""

    stream: Literal["stderr", "stdout"] = "stderr"
    """Where records go."""
    format: Literal["auto", "pretty", "json"] = "auto"
    """``auto``: pretty when the stream is a terminal, JSON lines otherwise."""
    color: bool | None = None
    """Colour pretty lines; unset: only on a terminal and when ``NO_COLOR`` is not set."""


class ConsoleSink(LogSink):
    """Writes each record to stderr (or stdout) as it arrives, flushing every line.

    The stream is looked up on ``sys`` at each write, so a host (or a test) that
    replaces ``sys.stderr`` gets the records. Writes are synchronous: a terminal or a
    pipe that stops reading slows the event loop down, so send high volumes to the
    ``jsonl`` sink instead.
    """

    def __init__(
        self,
        stream: Literal["stderr", "stdout"] = "stderr",
        format: Literal["auto", "pretty", "json"] = "auto",
        color: bool | None = None,
        *,
        level: int = logging.INFO,
    ) -> None:
        self.stream_name = stream
        self.format = format
        self.color = color
        self.level = level
        self._tty: tuple[int, bool] | None = None

    @classmethod
    def from_options(cls, options: ConsoleOptions) -> ConsoleSink:
        return cls(options.stream, options.format, options.color)

    def _stream(self) -> TextIO:
        stream: TextIO = getattr(sys, self.stream_name)
        return stream

    def _is_tty(self, stream: TextIO) -> bool:
        # Cached per stream object: isatty is a system call.
        if self._tty is None or self._tty[0] != id(stream):
            try:
                tty = stream.isatty()
            except (AttributeError, ValueError, OSError):
                tty = False
            self._tty = (id(stream), tty)
        return self._tty[1]

    def render(self, record: Mapping[str, Any], stream: TextIO) -> str:
        pretty = self.format == "pretty" or (self.format == "auto" and self._is_tty(stream))
        if not pretty:
            return json_line(record)
        color = self.color
        if color is None:
            color = self._is_tty(stream) and "NO_COLOR" not in os.environ
        return pretty_line(record, color=color)

    def write(self, record: Mapping[str, Any]) -> None:
        stream = self._stream()
        if stream is None:  # pythonw, or a closed-down interpreter
            return
        stream.write(self.render(record, stream) + "\n")
        stream.flush()

    def flush(self) -> None:
        stream = self._stream()
        if stream is not None:
            stream.flush()
