"""Strict structuring for untrusted input: plugin options and model-supplied tool arguments.

cattrs' default converter coerces (``"5"`` becomes ``5``); here a value must already have
the declared type, extra keys are refused, and every error is reported with its path.
"""

from __future__ import annotations

import collections.abc
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import cattrs
from cattrs.errors import IterableValidationNote

__all__ = ["ValidationFailed", "strict_converter", "structure_strictly"]

T = TypeVar("T")


class ValidationFailed(Exception):
    """Structuring failed; ``errors`` holds one ``"path: message"`` line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _exact(kind: type, name: str, *, allow_int: bool = False) -> Any:
    def structure(value: Any, _: Any) -> Any:
        ok = isinstance(value, kind) and not isinstance(value, bool) if kind is not bool else isinstance(value, bool)
        if not ok and allow_int and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            raise TypeError(f"expected {name}, got {type(value).__name__}")
        return value

    return structure


_SEQUENCES = {list: list, tuple: tuple, set: set, frozenset: frozenset}


def _is_sequence(tp: Any) -> bool:
    origin = typing.get_origin(tp) or tp
    return origin in _SEQUENCES or origin is collections.abc.Sequence or origin is collections.abc.Set


def _strict_sequence(conv: cattrs.Converter) -> Any:
    """Sequences must arrive as JSON arrays: a string is not a list of characters."""

    def structure(value: Any, tp: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        origin = typing.get_origin(tp) or tp
        build = _SEQUENCES.get(origin, tuple if origin is collections.abc.Sequence else frozenset)
        items, errors = [], []
        for index, element in enumerate(value):
            try:
                items.append(conv.structure(element, item) if item is not Any else element)
            except Exception as exc:
                exc.__notes__ = [*getattr(exc, "__notes__", []), IterableValidationNote(f"@ index {index}", index, item)]
                errors.append(exc)
        if errors:
            raise cattrs.IterableValidationError(f"While structuring {tp!r}", errors, tp)
        return build(items)

    return structure


def strict_converter() -> cattrs.Converter:
    """A converter that refuses extra keys and never coerces between scalar types."""
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook_func(_is_sequence, _strict_sequence(conv))
    conv.register_structure_hook(str, _exact(str, "str"))
    conv.register_structure_hook(int, _exact(int, "int"))
    conv.register_structure_hook(float, _exact(float, "float", allow_int=True))
    conv.register_structure_hook(bool, _exact(bool, "bool"))
    return conv


_CONVERTER = strict_converter()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"unknown key(s): {', '.join(sorted(exc.extra_fields))}"
    message = str(exc)
    if message.startswith("expected "):
        return message
    if " not in literal " in message:
        choices = message.partition("Literal[")[2].removesuffix("]")
        return f"expected one of {choices}"
    return message.split("\n")[0] or exc.__class__.__name__


def _join(root: str, path: str) -> str:
    if not path or path == "$":
        return root
    path = path.removeprefix("$")
    if path.startswith("."):
        path = path[1:]
    return f"{root}.{path}" if root else path


def format_errors(exc: BaseException, root: str) -> list[str]:
    """``"root.field: message"`` lines for a cattrs structuring failure."""
    lines: list[str] = []
    for text in cattrs.transform_error(exc, path="$", format_exception=lambda e, _t: _describe(e)):
        message, _, path = text.rpartition(" @ ")
        if not message:
            message, path = text, "$"
        lines.append(f"{_join(root, path)}: {message}")
    return lines or [f"{root}: invalid value"]


def structure_strictly(data: Any, cls: type[T], *, root: str = "") -> T:
    """Structure ``data`` into ``cls`` or raise ``ValidationFailed`` listing every problem."""
    if not isinstance(data, Mapping) and hasattr(cls, "__attrs_attrs__"):
        raise ValidationFailed([f"{root or '$'}: expected a table, got {type(data).__name__}"])
    try:
        return _CONVERTER.structure(data, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        raise ValidationFailed(format_errors(exc, root)) from None
