"""The text side of a config file: ``${VAR}`` interpolation and rendering data as TOML.

Both are pure string work, shared by ``load_config`` (interpolation), ``HarnessConfig``
(``to_toml``) and the CLI's options reference. ``DEFAULT_CONFIG`` lives here too: the
console script needs the file's name before it imports anything heavy.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any, Final

from ._tables import key_path
from .errors import HarnessError

__all__ = ["DEFAULT_CONFIG", "interpolate", "interpolate_tree", "render_toml", "toml_value"]

DEFAULT_CONFIG: Final = "harness.toml"
"""The file ``load_config`` and the CLI read when given none."""

_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Replace ``${NAME}`` and ``${NAME:-default}`` in ``text`` from ``environ``.

    ``${NAME}`` of an unset variable is an error; ``${NAME:-default}`` uses ``default``
    (itself interpolated, so defaults nest) when the variable is unset or empty. ``$${``
    writes a literal ``${``; any other ``$`` is left alone. Raises ``ValueError`` with a
    message naming the variable.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("$${", i):
            out.append("${")
            i += 3
            continue
        if not text.startswith("${", i):
            out.append(text[i])
            i += 1
            continue
        match = _VAR_NAME.match(text, i + 2)
        if match is None:
            raise ValueError(
                f"malformed reference at character {i + 1}: write ${{NAME}} or ${{NAME:-default}}"
            )
        name, j = match.group(), match.end()
        if text.startswith("}", j):
            value = environ.get(name)
            if value is None:
                raise ValueError(
                    f"environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
                )
            out.append(value)
            i = j + 1
        elif text.startswith(":-", j):
            depth, k = 1, j + 2
            while k < n:
                if text.startswith("${", k):
                    depth, k = depth + 1, k + 2
                    continue
                if text[k] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                k += 1
            if k >= n:
                raise ValueError(f"unterminated reference ${{{name}:-... (missing '}}')")
            value = environ.get(name)
            out.append(value if value else interpolate(text[j + 2 : k], environ))
            i = k + 1
        else:
            raise ValueError(
                f"malformed reference ${{{name}...: write ${{{name}}} or ${{{name}:-default}}"
            )
    return "".join(out)


def interpolate_tree(value: Any, path: str, environ: Mapping[str, str], errors: list[str]) -> Any:
    """``value`` with every string interpolated; each failure is an error line at its path."""
    if isinstance(value, str):
        try:
            return interpolate(value, environ)
        except ValueError as exc:
            errors.append(f"{path}: {exc}")
            return value
    if isinstance(value, dict):
        return {
            k: interpolate_tree(v, key_path(path, k), environ, errors) for k, v in value.items()
        }
    if isinstance(value, list):
        return [interpolate_tree(v, f"{path}[{i}]", environ, errors) for i, v in enumerate(value)]
    return value


# -- rendering ------------------------------------------------------------------------


def render_toml(data: Mapping[str, Any]) -> str:
    """Render plain data (str, int, float, bool, lists, tables; ``None`` omitted) as TOML."""
    lines: list[str] = []
    _emit_table(data, [], lines)
    return "\n".join(lines).strip("\n") + "\n"


def _is_table_array(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
    )


def _emit_table(data: Mapping[str, Any], prefix: list[str], lines: list[str]) -> None:
    plain = {k: v for k, v in data.items() if v is not None}
    nested = {
        k: v for k, v in plain.items() if (isinstance(v, Mapping) and v) or _is_table_array(v)
    }
    for key, value in plain.items():
        if key not in nested:
            lines.append(f"{_toml_key(key)} = {toml_value(value)}")
    for key, value in nested.items():
        header = ".".join(_toml_key(k) for k in [*prefix, key])
        for item in value if _is_table_array(value) else [value]:
            lines.append("")
            lines.append(f"[[{header}]]" if _is_table_array(value) else f"[{header}]")
            _emit_table(item, [*prefix, key], lines)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_string(text: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")  # a lone surrogate cannot be written in TOML
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def toml_value(value: Any) -> str:
    """One value written as TOML (tables inline); ``HarnessError`` for other types."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, Mapping):
        items = [f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, os.PathLike):
        return _toml_string(os.fspath(value))
    raise HarnessError(f"cannot write a {type(value).__name__} value as TOML")
