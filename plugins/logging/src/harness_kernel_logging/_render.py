"""Turning one structured record into a line: JSON for machines, key=value for people."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from harness_kernel.contracts import LOG_LEVELS

__all__ = ["LEVELS", "json_line", "level_number", "pretty_line"]

LEVELS = LOG_LEVELS
_FIRST = ("timestamp", "level", "event")
_BARE = re.compile(r"^[\w.:/@+-]{1,200}$")

_COLORS = {
    "debug": "\x1b[2m",
    "info": "\x1b[32m",
    "warning": "\x1b[33m",
    "error": "\x1b[31m",
    "critical": "\x1b[1;31m",
}
_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_BOLD = "\x1b[1m"


def level_number(record: Mapping[str, Any]) -> int:
    """The ``logging`` level number of a record's ``level`` (info when absent)."""
    level = record.get("level")
    return LEVELS.get(level.lower(), logging.INFO) if isinstance(level, str) else logging.INFO


def _ordered(record: Mapping[str, Any]) -> dict[str, Any]:
    out = {key: record[key] for key in _FIRST if key in record}
    out.update((key, value) for key, value in record.items() if key not in out)
    return out


def json_line(record: Mapping[str, Any]) -> str:
    """One compact JSON object, ``timestamp``, ``level``, ``event`` first, no newline.

    Values that are not JSON types are written as their ``str``; the text never contains
    a raw newline, so one record is always exactly one line.
    """
    return json.dumps(_ordered(record), default=str, ensure_ascii=False, separators=(",", ":"))


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value if _BARE.match(value) else json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))


def pretty_line(record: Mapping[str, Any], *, color: bool) -> str:
    """``12:00:01.123 info     store_opened   storage=sqlite providers=["openai"]``."""
    timestamp = str(record.get("timestamp", ""))
    clock = timestamp.partition("T")[2].rstrip("Z")[:12] or timestamp
    level = str(record.get("level", "info")).lower()
    event = str(record.get("event", ""))
    rest = " ".join(f"{key}={_value(value)}" for key, value in record.items() if key not in _FIRST)
    if not color:
        return f"{clock} {level:<8} {event:<24} {rest}".rstrip()
    paint = _COLORS.get(level, "")
    pairs = " ".join(
        f"{_DIM}{key}={_RESET}{_value(value)}" for key, value in record.items() if key not in _FIRST
    )
    return f"{_DIM}{clock}{_RESET} {paint}{level:<8}{_RESET} {_BOLD}{event:<24}{_RESET} {pairs}".rstrip()
