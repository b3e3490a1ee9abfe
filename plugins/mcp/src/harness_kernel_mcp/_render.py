"""An MCP tool result as the text the model sees."""

from __future__ import annotations

import json
from typing import Any

from harness_kernel.errors import ToolError

__all__ = ["render_call_result"]


def _block(block: Any) -> str:
    kind = getattr(block, "type", None)
    if kind == "text":
        return str(block.text)
    if kind in ("image", "audio"):
        return f"[{kind} {getattr(block, 'mime_type', '')}, {len(getattr(block, 'data', '') or '')} base64 characters]"
    if kind == "resource":
        resource = block.resource
        text = getattr(resource, "text", None)
        return str(text) if text is not None else f"[resource {resource.uri}]"
    if kind == "resource_link":
        return f"[resource link {getattr(block, 'uri', '')}]"
    return f"[{kind or type(block).__name__} content]"


def render_call_result(result: Any, what: str) -> str:
    """Text blocks joined; other blocks named; structured content as JSON when there is
    no text. A result flagged ``is_error`` raises ``ToolError`` with that text."""
    content = getattr(result, "content", None)
    if not isinstance(content, list):
        raise ToolError(f"{what} returned a malformed result")
    text = "\n".join(_block(b) for b in content)
    structured = getattr(result, "structured_content", None)
    if not text and structured is not None:
        text = json.dumps(structured, ensure_ascii=False, default=str)
    if getattr(result, "is_error", False):
        raise ToolError(text or f"{what} reported an error")
    return text
