"""JSON Schemas from the attrs classes the service reads and writes, and the checks
request bodies go through.

The same schema serves twice: the OpenAPI document publishes it, and ``parse_body``
validates a request against it before building the body class. Nothing here is
written by hand per endpoint.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from typing import Any, Literal, TypeVar, Union

import attrs

from ._problems import Problem

__all__ = ["SchemaSet", "parse_body"]

T = TypeVar("T")
_PRIMITIVES: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    bytes: {"type": "string", "contentEncoding": "base64"},
    type(None): {"type": "null"},
    Any: {},
}
_SEQUENCES = (tuple, list, collections.abc.Sequence)
_MAPPINGS = (dict, collections.abc.Mapping)


class SchemaSet:
    """Schemas of attrs classes, each defined once under ``components/schemas``."""

    def __init__(self) -> None:
        self.definitions: dict[str, dict[str, Any]] = {}

    def ref(self, tp: Any) -> dict[str, Any]:
        """The schema of type ``tp``: a ``$ref`` for attrs classes."""
        if tp in _PRIMITIVES:
            return dict(_PRIMITIVES[tp])
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is Literal:
            return {"enum": list(args)}
        if origin in (Union, types.UnionType):
            return {"anyOf": [self.ref(arg) for arg in args]}
        if origin is typing.ClassVar:
            return self.ref(args[0])
        if origin in _SEQUENCES:
            return {"type": "array", "items": self.ref(args[0]) if args else {}}
        if origin in _MAPPINGS:
            values = self.ref(args[1]) if len(args) == 2 else {}
            return {"type": "object", "additionalProperties": values}
        if isinstance(tp, type) and attrs.has(tp):
            name = tp.__name__
            if name not in self.definitions:
                self.definitions[name] = {}  # recursion guard
                self.definitions[name] = self._object(tp)
            return {"$ref": f"#/components/schemas/{name}"}
        return {}  # a type JSON Schema cannot say more about: any value

    def _object(self, cls: type) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        properties: dict[str, Any] = {}
        required: list[str] = []
        tag = getattr(cls, "type", None)
        if isinstance(tag, str) and "type" in hints and "type" not in attrs.fields_dict(cls):
            properties["type"] = {"const": tag}
        for field in attrs.fields(cls):
            item = self.ref(hints[field.name])
            if field.metadata.get("description"):
                item["description"] = field.metadata["description"]
            properties[field.name] = item
            if field.default is attrs.NOTHING:
                required.append(field.name)
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        if cls.__doc__:
            schema["description"] = " ".join(cls.__doc__.split())
        return schema

    def body(self, cls: type) -> dict[str, Any]:
        """The schema of a request body class: no keys besides its fields."""
        self.ref(cls)
        return {**self.definitions[cls.__name__], "additionalProperties": False}


def _check(
    value: Any, schema: dict[str, Any], sets: SchemaSet, path: str, errors: list[str]
) -> None:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        _check(value, sets.definitions[name], sets, path, errors)
        return
    if "anyOf" in schema:
        for option in schema["anyOf"]:
            trial: list[str] = []
            _check(value, option, sets, path, trial)
            if not trial:
                return
        errors.append(f"{path}: does not match any allowed form")
        return
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(repr(v) for v in schema["enum"])
        errors.append(f"{path}: expected one of {allowed}")
        return
    kind = schema.get("type")
    checks: dict[str, Any] = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    if kind is not None and not checks[kind](value):
        errors.append(f"{path}: expected {kind}")
        return
    if kind == "array":
        for index, item in enumerate(value):
            _check(item, schema.get("items", {}), sets, f"{path}[{index}]", errors)
    elif kind == "object":
        properties = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                errors.append(f"{path}.{name}: required")
        for name, item in value.items():
            if name in properties:
                _check(item, properties[name], sets, f"{path}.{name}", errors)
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}.{name}: unknown key")
            elif isinstance(schema.get("additionalProperties"), dict):
                _check(item, schema["additionalProperties"], sets, f"{path}.{name}", errors)


def parse_body(data: Any, cls: type[T], sets: SchemaSet) -> T:
    """``data`` (parsed JSON) as an instance of ``cls``, or a 422 problem listing why not."""
    errors: list[str] = []
    _check(data, sets.body(cls), sets, "body", errors)
    if errors:
        raise Problem(422, "request.invalid", "; ".join(errors), extra={"errors": errors})
    return cls(**data)
