"""Message content as span attributes: rendered in the GenAI conventions' JSON shape, then
redacted. Only used when a ``Tracing`` is built with ``capture_content=True``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from harness_kernel import Message, TextPart, ToolCallPart, ToolResultPart

__all__ = ["MASK", "Redactor", "render_messages", "render_output"]

MASK = "[redacted]"

# Shapes of credentials that leak into prompts: bearer tokens, provider keys, and
# `name=value` / `"name": "value"` pairs whose name says secret.
_SHAPES = (
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\b(?:sk|pk|rk|ghp|gho|xox[abprs])[-_][A-Za-z0-9_-]{12,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
)
_NAMED = re.compile(
    r"""(?ix)
    (?P<name>["']?[\w-]*(?:api[_-]?key|password|passwd|secret|token|authorization|cookie)["']?)
    (?P<sep>\s*[:=]\s*)
    (?P<quote>["']?)(?P<value>[^\s"',;}]+)"""
)


class Redactor:
    """Masks configured values and credential shapes in text; a custom ``redact``
    callable (text -> text) runs after them."""

    def __init__(self, values: Iterable[str] = (), redact: Callable[[str], str] | None = None) -> None:
        self._values = sorted({v for v in values if v}, key=len, reverse=True)
        self._custom = redact

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, MASK)
        for shape in _SHAPES:
            text = shape.sub(MASK, text)
        text = _NAMED.sub(lambda m: f"{m['name']}{m['sep']}{m['quote']}{MASK}", text)
        return self._custom(text) if self._custom is not None else text


def _parts(message: Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "content": part.text})
        elif isinstance(part, ToolCallPart):
            parts.append(
                {"type": "tool_call", "id": part.call_id, "name": part.name, "arguments": dict(part.arguments)}
            )
        elif isinstance(part, ToolResultPart):
            parts.append({"type": "tool_call_response", "id": part.call_id, "response": part.content})
    return parts


def render_messages(messages: Sequence[Message], redact: Redactor, limit: int) -> str:
    """``gen_ai.input.messages``: every message as ``{"role", "parts"}``, as JSON."""
    data = [{"role": m.role, "parts": _parts(m)} for m in messages]
    return _cut(redact(json.dumps(data, ensure_ascii=False, default=str)), limit)


def render_output(text: str, tool_calls: Sequence[ToolCallPart], finish: str | None, redact: Redactor, limit: int) -> str:
    """``gen_ai.output.messages``: the assistant's answer, as JSON."""
    parts: list[dict[str, Any]] = [{"type": "text", "content": text}] if text else []
    parts += [
        {"type": "tool_call", "id": c.call_id, "name": c.name, "arguments": dict(c.arguments)} for c in tool_calls
    ]
    data = [{"role": "assistant", "parts": parts, "finish_reason": finish or ""}]
    return _cut(redact(json.dumps(data, ensure_ascii=False, default=str)), limit)


def render_value(value: Any, redact: Redactor, limit: int) -> str:
    return _cut(redact(json.dumps(value, ensure_ascii=False, default=str)), limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "...[truncated]"
