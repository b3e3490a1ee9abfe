"""Strict structuring for untrusted input: plugin options and model-supplied tool arguments.

cattrs' default converter coerces (``"5"`` becomes ``5``); here a value must already have
the declared type, extra keys are refused, and every error is reported with its path:

- a float must be finite: ``nan`` and ``inf`` are refused wherever a float is declared
  (``providers[0].options.timeout: must be a finite number, got nan``), unless the
  field's own validator has a more precise word for it (``must be a positive number``);
- an attrs validator that refuses a value is reported at its field, not at the table
  that holds it (``providers[0].options.timeout: must be a positive number, got -1``),
  with the field's name taken off the front of the validator's message.
"""

from __future__ import annotations

import collections.abc
import difflib
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.errors import AttributeValidationNote, IterableValidationNote
from cattrs.gen import make_dict_structure_fn

__all__ = ["ValidationFailed", "strict_converter", "structure_strictly"]

T = TypeVar("T")


class ValidationFailed(Exception):
    """Structuring failed; ``errors`` holds one ``"path: message"`` line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class NotFinite(ValueError):
    """A float option was ``nan`` or infinite."""


def _exact(kind: type, name: str) -> Any:
    def structure(value: Any, _: Any) -> Any:
        ok = (
            isinstance(value, kind) and not isinstance(value, bool)
            if kind is not bool
            else isinstance(value, bool)
        )
        if not ok:
            raise TypeError(f"expected {name}, got {type(value).__name__}")
        return value

    return structure


def _finite_float(value: Any, _: Any) -> float:
    """An int or a float, as a float; ``nan`` and the infinities are refused (TOML and
    JSON readers accept them, and no timeout, delay or ratio means anything with them)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected float, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise NotFinite(f"must be a finite number, got {value!r}")
    return number


_SEQUENCES = {list: list, tuple: tuple, set: set, frozenset: frozenset}


def _is_sequence(tp: Any) -> bool:
    origin = typing.get_origin(tp) or tp
    return (
        origin in _SEQUENCES or origin is collections.abc.Sequence or origin is collections.abc.Set
    )


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
                exc.__notes__ = [
                    *getattr(exc, "__notes__", []),
                    IterableValidationNote(f"@ index {index}", index, item),
                ]
                errors.append(exc)
        if errors:
            raise cattrs.IterableValidationError(f"While structuring {tp!r}", errors, tp)
        return build(items)

    return structure


# -- attrs classes: validator errors at their field ------------------------------------


def _message(exc: BaseException) -> str:
    # attrs' own validators raise ValueError(message, attribute, ...): the first is the text.
    first = exc.args[0] if exc.args else ""
    return first if isinstance(first, str) and first else str(exc)


def _without_name(message: str, name: str) -> str:
    """A validator's message without the field name it starts with: the path says it."""
    for lead in (f"{name} ", f"'{name}' ", f"{name}: "):
        if message.startswith(lead):
            return message[len(lead) :]
    return message


def _at_field(exc: Exception, cls: type, field: attrs.Attribute[Any]) -> Exception:
    exc.__notes__ = [
        AttributeValidationNote(
            f"Structuring class {cls.__qualname__} @ attribute {field.name}", field.name, field.type
        )
    ]
    return exc


def _field_values(conv: cattrs.Converter, cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The value each field gets (structured, or its default), for the fields that
    structure on their own."""
    values: dict[str, Any] = {}
    for field in attrs.fields(cls):
        try:
            if field.name in data:
                values[field.name] = conv.structure(data[field.name], field.type)
            elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
                if not field.default.takes_self:
                    values[field.name] = field.default.factory()
            elif field.default is not attrs.NOTHING:
                values[field.name] = field.default
        except Exception:
            continue
    return values


def _validator_errors(
    conv: cattrs.Converter, cls: type, data: Mapping[str, Any]
) -> list[Exception]:
    """Run each field's validator on its own, so a refusal names its field. Validators
    get a stand-in instance holding the other fields' values."""
    values = _field_values(conv, cls, data)
    stand_in = types.SimpleNamespace(**values)
    errors: list[Exception] = []
    for field in attrs.fields(cls):
        if field.validator is None or field.name not in values:
            continue
        try:
            field.validator(stand_in, field, values[field.name])
        except (ValueError, TypeError) as exc:
            errors.append(
                _at_field(ValueError(_without_name(_message(exc), field.name)), cls, field)
            )
        except Exception:
            continue
    return errors


def _preferred(cls: type, data: Mapping[str, Any], exc: Exception) -> Exception:
    """For a non-finite float, the field validator's own refusal when it has one."""
    name = _field_of(exc)
    if not isinstance(exc, NotFinite) or name is None:
        return exc
    field = attrs.fields_dict(cls).get(name)
    if field is None or field.validator is None or field.name not in data:
        return exc
    try:
        field.validator(types.SimpleNamespace(), field, float(data[field.name]))
    except (ValueError, TypeError) as refusal:
        return _at_field(NotFinite(_without_name(_message(refusal), field.name)), cls, field)
    except Exception:
        return exc
    return exc


_NAMED: Final = re.compile(
    r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\[(?P<index>\d+)\])?: (?P<message>.+)", re.DOTALL
)


def _named_field(cls: type, exc: Exception) -> Exception:
    """An ``__attrs_post_init__`` check that names its field (``"field: message"``,
    ``"field[2]: message"``) is reported at that field, like a validator."""
    match = _NAMED.fullmatch(_message(exc))
    fields = attrs.fields_dict(cls)
    if match is None or match["name"] not in fields:
        return exc
    field = fields[match["name"]]
    if match["index"] is None:
        return _at_field(ValueError(match["message"]), cls, field)
    index = int(match["index"])
    leaf = ValueError(match["message"])
    leaf.__notes__ = [IterableValidationNote(f"@ index {index}", index, Any)]
    return _at_field(
        cattrs.IterableValidationError(f"While checking {field.name}", [leaf], list), cls, field
    )


def _field_of(exc: BaseException) -> str | None:
    notes = [n for n in getattr(exc, "__notes__", []) if isinstance(n, AttributeValidationNote)]
    return notes[0].name if notes else None


def _located(
    conv: cattrs.Converter, cls: type, data: Mapping[str, Any], group: cattrs.ClassValidationError
) -> cattrs.ClassValidationError:
    """``group`` with every problem at its field: the fields that did not structure, and
    (so that one pass reports everything) the validators refusing the fields that did.
    An error the class raised that no single validator explains is kept as it was."""
    located = [_preferred(cls, data, exc) for exc in group.exceptions if _field_of(exc) is not None]
    # Unknown keys are the table's own problem; anything else unlocated came from __init__.
    table = [
        exc
        for exc in group.exceptions
        if _field_of(exc) is None and isinstance(exc, cattrs.ForbiddenExtraKeysError)
    ]
    raised = [
        exc
        for exc in group.exceptions
        if _field_of(exc) is None and exc not in table and isinstance(exc, Exception)
    ]
    failed = {_field_of(exc) for exc in located}
    validators = [exc for exc in _validator_errors(conv, cls, data) if _field_of(exc) not in failed]
    if not validators:
        raised = [_named_field(cls, exc) for exc in raised]
    errors = [*located, *table, *validators, *([] if validators else raised)]
    return cattrs.ClassValidationError(group.message, errors or list(group.exceptions), cls)


def _attrs_structure(conv: cattrs.Converter) -> Callable[[type], Any]:
    def factory(cls: type) -> Any:
        attrs.resolve_types(cls)  # string annotations (``from __future__ import annotations``)
        base: Callable[[Any, Any], Any] = make_dict_structure_fn(cls, conv)

        def structure(value: Any, _: Any) -> Any:
            try:
                return base(value, cls)
            except cattrs.ClassValidationError as group:
                if not isinstance(value, Mapping):
                    raise
                raise _located(conv, cls, value, group) from None

        return structure

    return factory


def strict_converter() -> cattrs.Converter:
    """A converter that refuses extra keys, never coerces between scalar types, refuses
    non-finite floats and reports attrs validator errors at their field."""
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook_func(_is_sequence, _strict_sequence(conv))
    conv.register_structure_hook(str, _exact(str, "str"))
    conv.register_structure_hook(int, _exact(int, "int"))
    conv.register_structure_hook(float, _finite_float)
    conv.register_structure_hook(bool, _exact(bool, "bool"))
    conv.register_structure_hook_factory(attrs.has, _attrs_structure(conv))
    return conv


_CONVERTER = strict_converter()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return (
            f"unknown key(s): {', '.join(_hinted(key, exc.cl) for key in sorted(exc.extra_fields))}"
        )
    message = str(exc)
    if message.startswith("expected "):
        return message
    if " not in literal " in message:
        choices = message.partition("Literal[")[2].removesuffix("]")
        return f"expected one of {choices}"
    return message.split("\n")[0] or exc.__class__.__name__


_MEANT: Final = re.compile(r"did you mean '([^']*)'")


def _hinted(key: str, cls: type) -> str:
    """``key``, with the closest field name of ``cls`` as a hint when one is close."""
    fields = [field.name for field in attrs.fields(cls)] if attrs.has(cls) else []
    close = difflib.get_close_matches(key, fields, n=1)
    return f"{key} (did you mean '{close[0]}'?)" if close else key


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
    # A required field that is only misspelt is reported once, as the typo.
    meant = {
        f"{line.partition(': unknown key(s): ')[0]}.{name}: required field missing"
        for line in lines
        if ": unknown key(s): " in line
        for name in _MEANT.findall(line)
    }
    lines = [line for line in lines if line not in meant]
    return lines or [f"{root}: invalid value"]


def structure_strictly(data: Any, cls: type[T], *, root: str = "") -> T:
    """Structure ``data`` into ``cls`` or raise ``ValidationFailed`` listing every problem."""
    if not isinstance(data, Mapping) and hasattr(cls, "__attrs_attrs__"):
        raise ValidationFailed([f"{root or '$'}: expected a table, got {type(data).__name__}"])
    try:
        return _CONVERTER.structure(data, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        raise ValidationFailed(format_errors(exc, root)) from None
