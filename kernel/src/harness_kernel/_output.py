"""Structured output: the typed answer a run asks for, and how the answer is checked.

A run with an ``output_type`` (an attrs class, from ``define_agent`` or ``send``) asks
the model for an answer matching the type's JSON schema: in the API's own JSON-schema
mode when the provider has one (``ModelProvider.native_output``; the answer is the
response's text), otherwise as a call of the ``final_answer`` tool the kernel adds to
the request. The answer is structured on the same strict cattrs path as tool arguments
(``structure_strictly``: exact types, no extra keys, every problem by path). An answer
that does not fit goes back to the model with what was wrong, up to the agent's
``output_retries`` times; then the run fails with ``OutputInvalid``.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Mapping
from typing import Any, Final

import attrs

from ._tools import _type_schema
from ._validation import ValidationFailed, structure_strictly
from .contracts import ModelRequest, OutputSchema, ToolSpec
from .errors import ConfigError

__all__ = [
    "FINAL_ANSWER",
    "check_output_type",
    "find_output_type",
    "native_output",
    "output_type_name",
    "parse_answer",
    "problems",
    "structure_answer",
    "with_output",
]

FINAL_ANSWER: Final = "final_answer"
"""The tool a model gives its typed answer to when the provider has no JSON-schema mode."""

_SCHEMA_NAME = re.compile(r"[^A-Za-z0-9_-]")
_FENCE = re.compile(r"^```(?:json)?\s*\n(.*)\n```$", re.S)


def check_output_type(cls: Any, where: str) -> type:
    """``cls`` if it can be an output type (an attrs class whose fields have types tools
    accept); ``ConfigError`` otherwise."""
    if not (isinstance(cls, type) and attrs.has(cls)):
        raise ConfigError(f"{where}: output_type must be an attrs class, got {cls!r}")
    _schema(cls)
    return cls


def output_type_name(cls: type) -> str:
    """The name a run records for its output type: ``module.qualname``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def find_output_type(name: str) -> type | None:
    """The class ``output_type_name`` gave ``name``, among modules already imported
    (nothing is imported on behalf of stored data); ``None`` if it is not there."""
    module_name, _, qualname = name.rpartition(".")
    while module_name:
        module = sys.modules.get(module_name)
        if module is not None:
            value: Any = module
            for part in qualname.split("."):
                value = getattr(value, part, None)
            if isinstance(value, type) and attrs.has(value) and output_type_name(value) == name:
                return value
        module_name, _, rest = module_name.rpartition(".")
        qualname = f"{rest}.{qualname}"
    return None


@functools.cache
def _schema(cls: type) -> dict[str, Any]:
    return _type_schema(cls, f"output_type {cls.__qualname__}")


def _strict(schema: Any) -> tuple[Any, bool]:
    """``schema`` in OpenAI's strict form (every property required, no other keys), and
    whether it fits that mode at all (free-form values and maps do not)."""
    if not isinstance(schema, Mapping):
        return schema, True
    if not schema:
        return schema, False  # Any
    out: dict[str, Any] = {}
    ok = True
    for key, value in schema.items():
        if key == "properties":
            props = {}
            for name, sub in value.items():
                props[name], fits = _strict(sub)
                ok = ok and fits
            out[key] = props
        elif key == "items":
            out[key], fits = _strict(value)
            ok = ok and fits
        elif key == "anyOf":
            options = [_strict(option) for option in value]
            out[key] = [option for option, _ in options]
            ok = ok and all(fits for _, fits in options)
        elif key == "additionalProperties" and value is not False:
            out[key] = value
            ok = False
        else:
            out[key] = value
    if "properties" in out:
        out["required"] = list(out["properties"])
    return out, ok


@functools.cache
def _request_schema(cls: type, native: bool) -> OutputSchema:
    name = _SCHEMA_NAME.sub("_", cls.__name__)[:64]
    if native:
        schema, strict = _strict(_schema(cls))
        return OutputSchema(name, schema if strict else _schema(cls), strict)
    return OutputSchema(name, _schema(cls), False, FINAL_ANSWER)


def native_output(provider: object) -> bool:
    """Whether ``provider`` asks for typed answers in the API's JSON-schema mode."""
    return getattr(provider, "native_output", False) is True


def with_output(request: ModelRequest, cls: type, provider: object) -> ModelRequest:
    """``request`` asking for an answer of type ``cls``: natively (if ``provider`` can),
    or through the ``final_answer`` tool added to its tools."""
    native = native_output(provider)
    output = _request_schema(cls, native)
    if native:
        return attrs.evolve(request, output=output)
    spec = ToolSpec(
        FINAL_ANSWER,
        "Give your final answer. Call this once, when you are done; the arguments are the answer.",
        output.schema,
    )
    return attrs.evolve(request, output=output, tools=(*request.tools, spec))


def structure_answer(cls: type, data: Any) -> Any:
    """The answer as ``cls``; ``ValidationFailed`` listing every problem by path."""
    if not isinstance(data, Mapping):
        raise ValidationFailed([f"expected a JSON object, got {type(data).__name__}"])
    return structure_strictly(dict(data), cls)


def parse_answer(text: str) -> Any:
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        return json.loads(text)
    except ValueError:
        raise ValidationFailed(["the answer is not valid JSON"]) from None


def problems(exc: ValidationFailed) -> str:
    return "; ".join(line.removeprefix(": ") for line in exc.errors)
