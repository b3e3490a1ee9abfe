"""Shape checks of raw tables (a config file's, or a host's keyword arguments), each
problem reported as one ``"key.path: message"`` line appended to an error list.

The checks collect instead of raising so that one pass reports every problem at once.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, TypeAlias

__all__ = [
    "Shape",
    "check_table",
    "expect",
    "key_path",
    "split_unknown",
    "type_name",
    "typo_targets",
]

Shape: TypeAlias = type | tuple[type, ...]
"""The type (or types) a key's value must have."""

_LABELS: dict[Shape, str] = {
    str: "str",
    bool: "bool",
    Mapping: "a table",
    (list, tuple): "an array",
    (int, float): "a number",
}

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_path(parent: str, key: str) -> str:
    """``parent.key``; a key that is not a bare TOML key is quoted."""
    shown = key if _BARE_KEY.fullmatch(key) else f'"{key}"'
    return f"{parent}.{shown}" if parent else shown


def type_name(value: Any) -> str:
    """The TOML name of a value's type (``table``, ``array``) or its Python name."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Mapping):
        return "table"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def expect(value: Any, kind: Shape, path: str, errors: list[str]) -> bool:
    """Whether ``value`` has type ``kind`` (a bool is never a number); an error if not."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        errors.append(
            f"{path}: expected {_LABELS.get(kind, getattr(kind, '__name__', str(kind)))}, got {type_name(value)}"
        )
    return ok


def check_table(
    value: Any,
    path: str,
    keys: Mapping[str, Shape],
    errors: list[str],
    *,
    required: Sequence[str] = (),
) -> dict[str, Any] | None:
    """The keys of ``value`` whose types fit; an error for each unknown (with the closest
    known key as a hint), missing or mistyped key. ``None`` if ``value`` is not a table."""
    if not isinstance(value, Mapping):
        errors.append(f"{path or '$'}: expected a table, got {type_name(value)}")
        return None
    clean: dict[str, Any] = {}
    for key, item in value.items():
        kind = keys.get(key)
        if kind is None:
            close = difflib.get_close_matches(str(key), list(keys), n=1)
            hint = (
                f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(keys)})"
            )
            errors.append(f"{key_path(path, str(key))}: unknown key{hint}")
        elif expect(item, kind, key_path(path, key), errors):
            clean[key] = item
    # A required key that is only misspelt is reported once, as the typo.
    meant = typo_targets(value, keys)
    for key in required:
        if key not in value and key not in meant:
            errors.append(f"{key_path(path, key)}: required key missing")
    return clean


def typo_targets(value: Mapping[Any, Any], keys: Collection[str]) -> dict[str, str]:
    """The known keys absent from ``value`` that an unknown key of it probably meant
    (the "did you mean" of ``check_table``): ``{meant: written}``."""
    known = list(keys)
    meant: dict[str, str] = {}
    for key in value:
        if key in keys:
            continue
        close = difflib.get_close_matches(str(key), known, n=1)
        if close and close[0] not in value:
            meant.setdefault(close[0], str(key))
    return meant


_UNKNOWN_KEYS = re.compile(r"^(.*): unknown key\(s\): (.*)$")
_HINTED = re.compile(r"^(.*?)( \(did you mean '[^']*'\?\))?$")


def split_unknown(lines: Sequence[str]) -> list[str]:
    """Options validation reports ``"path: unknown key(s): a, b (did you mean 'c'?)"``;
    a file reports each key at its own path, with its hint (``path.a: unknown key``,
    ``path.b: unknown key (did you mean 'c'?)``)."""
    out = []
    for line in lines:
        match = _UNKNOWN_KEYS.match(line)
        if match is None:
            out.append(line)
            continue
        for item in match.group(2).split(", "):
            key, hint = _HINTED.fullmatch(item).groups()  # type: ignore[union-attr]
            out.append(f"{key_path(match.group(1), key)}: unknown key{hint or ''}")
    return out
