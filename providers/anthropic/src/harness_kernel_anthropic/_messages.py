"""The Messages API on the wire: the request body, and the event stream turned into model events."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

import attrs

from harness_kernel import (
    FilePart,
    Finish,
    ImagePart,
    ModelRequest,
    ReasoningDelta,
    ReasoningEnd,
    ReasoningPart,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
)
from harness_kernel.contracts import ModelEvent
from harness_kernel.errors import BadRequest
from harness_kernel.http import ServerSentEvent, SSETransport, detail_from_object

__all__ = ["MAX_IMAGE_BYTES", "SOURCE", "MessagesStream", "messages_body", "messages_of"]

SOURCE = "anthropic"
"""``ReasoningPart.source`` of the thinking this API signs; only those parts go back."""
MAX_IMAGE_BYTES = 5 * 1024 * 1024
"""The API's limit for one inline image (larger ones are refused before sending)."""
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

RESERVED = frozenset({"model", "messages", "stream", "system", "tools"})

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def messages_of(request: ModelRequest) -> tuple[str, list[dict[str, Any]]]:
    """The system prompt and the Messages API conversation for ``request``.

    ``system`` messages join the system prompt. Tool results become ``tool_result``
    blocks of a user turn; consecutive turns of one role are merged (so several tool
    results answer in one user message, as the API requires), with ``tool_result``
    blocks first. Empty text is dropped: the API refuses empty text blocks.
    """
    system = [request.system] if request.system else []
    turns: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role == "system":
            if message.text:
                system.append(message.text)
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks: list[dict[str, Any]] = []
        for part in message.parts:
            if isinstance(part, ReasoningPart):
                block = _thinking_block(part) if role == "assistant" else None
                if block is not None:
                    blocks.append(block)
            elif isinstance(part, ImagePart | FilePart):
                blocks.append(_media_block(part))
            elif isinstance(part, TextPart):
                if part.text.strip():
                    blocks.append({"type": "text", "text": part.text})
            elif isinstance(part, ToolCallPart):
                blocks.append({"type": "tool_use", "id": part.call_id, "name": part.name, "input": dict(part.arguments)})
            elif isinstance(part, ToolResultPart):
                result: dict[str, Any] = {"type": "tool_result", "tool_use_id": part.call_id, "content": part.content}
                if part.is_error:
                    result["is_error"] = True
                blocks.append(result)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    return "\n\n".join(system), turns


def _thinking_block(part: ReasoningPart) -> dict[str, Any] | None:
    """The block to send back for ``part``: Anthropic's own thinking, unchanged, with its
    signature (or a redacted block's data); ``None`` for reasoning the API cannot verify
    (another API's, or a block cut off before its signature)."""
    if part.source != SOURCE:
        return None
    if part.redacted:
        return {"type": "redacted_thinking", "data": part.encrypted} if part.encrypted else None
    if part.signature is None:
        return None
    return {"type": "thinking", "thinking": part.text, "signature": part.signature}


def _data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a ``data:...;base64,`` URL, else ``None``."""
    head, comma, data = url.partition(",")
    if not comma or not head.startswith("data:") or not head.endswith(";base64"):
        return None
    return head[5:-7], data


def _media_block(part: ImagePart | FilePart) -> dict[str, Any]:
    """An ``image`` or ``document`` block. Raises ``BadRequest`` (nothing is sent) for an
    unresolved ``ref``, an image over ``MAX_IMAGE_BYTES`` or a type the API does not read."""
    kind = "image" if isinstance(part, ImagePart) else "document"
    if part.ref is not None:
        raise BadRequest(
            f"anthropic: a {type(part).__name__} reference ({part.ref!r}) was not resolved; "
            "resolve references to data or a URL before the model call (a before_model_call hook)"
        )
    media_type, data = part.media_type, None
    if part.data is not None:
        data = base64.b64encode(part.data).decode("ascii")
        size = len(part.data)
    elif part.url is not None and (inline := _data_url(part.url)) is not None:
        media_type, data = inline[0] or media_type, inline[1]
        size = len(data) * 3 // 4
    source: dict[str, Any]
    if data is None:
        source = {"type": "url", "url": part.url}
    elif kind == "image":
        if media_type not in IMAGE_TYPES:
            raise BadRequest(f"anthropic: images must be one of {sorted(IMAGE_TYPES)}, not {media_type!r}")
        if size > MAX_IMAGE_BYTES:
            raise BadRequest(
                f"anthropic: an image of {size} bytes is over the API's limit of {MAX_IMAGE_BYTES} bytes per image"
            )
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif media_type == "application/pdf":
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif media_type.startswith("text/"):
        try:
            text = base64.b64decode(data).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest("anthropic: a text document must be UTF-8") from None
        source = {"type": "text", "media_type": "text/plain", "data": text}
    else:
        raise BadRequest(f"anthropic: documents must be PDF or text, not {media_type!r}")
    block: dict[str, Any] = {"type": kind, "source": source}
    if isinstance(part, FilePart) and part.name:
        block["title"] = part.name
    return block


def messages_body(request: ModelRequest) -> dict[str, Any]:
    """The JSON body of a streaming ``POST /v1/messages``, before settings.

    ``HttpProvider.request_body`` lays the model settings over it (``max_tokens``,
    ``temperature``, ``top_p``, ``top_k``, ``stop_sequences``, ``metadata``,
    ``tool_choice``, ``thinking``, ...) under their API names.
    """
    system, turns = messages_of(request)
    body: dict[str, Any] = {"model": request.model, "messages": turns, "stream": True}
    if system:
        body["system"] = system
    if request.tools:
        body["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)} for t in request.tools
        ]
    return body


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def usage_of(raw: Mapping[str, Any]) -> Usage:
    """``Usage`` from the API's counts. ``input_tokens`` is every prompt token, cached or
    not (the API reports cache reads and writes apart from ``input_tokens``)."""
    read = _count(raw.get("cache_read_input_tokens"))
    write = _count(raw.get("cache_creation_input_tokens"))
    return Usage(
        input_tokens=_count(raw.get("input_tokens")) + read + write,
        output_tokens=_count(raw.get("output_tokens")),
        cache_read_tokens=read,
        cache_write_tokens=write,
    )


@attrs.define
class _ToolBlock:
    call_id: str
    initial: Any
    streamed: bool = False
    open: bool = True


class MessagesStream:
    """Turns the events of one streamed message into ``ModelEvent`` values.

    ``feed`` takes each server-sent event; ``end`` is called at the end of the body and
    returns the closing events or raises ``MalformedResponse`` when ``message_stop``
    never came. ``thinking`` blocks stream as ``ReasoningDelta`` and end with a
    ``ReasoningEnd`` carrying their signature; a ``redacted_thinking`` block is one
    ``ReasoningEnd`` carrying its data. Unknown event or block types are skipped (the
    API may add new ones); ``ping`` is ignored; an ``error`` event raises the mapped error.
    """

    def __init__(self, transport: SSETransport) -> None:
        self._transport = transport
        self._tools: dict[int, _ToolBlock] = {}
        self._signatures: dict[int, list[str]] = {}  # open thinking blocks
        self._usage: dict[str, Any] = {}
        self._stop: str | None = None
        self.done = False

    def feed(self, sse: ServerSentEvent) -> list[ModelEvent]:
        if self.done:
            return []
        try:
            payload = json.loads(sse.data)
        except ValueError:
            raise self._transport.malformed("a stream event is not valid JSON") from None
        if not isinstance(payload, dict):
            raise self._transport.malformed("a stream event is not a JSON object")
        kind = payload.get("type") or sse.event
        if kind == "error" or sse.event == "error":
            raise self._transport.error(detail_from_object(payload))
        if kind == "message_start":
            message = payload.get("message")
            usage = message.get("usage") if isinstance(message, Mapping) else None
            if isinstance(usage, Mapping):
                self._usage.update(usage)
        elif kind == "content_block_start":
            return self._block_start(payload)
        elif kind == "content_block_delta":
            return self._block_delta(payload)
        elif kind == "content_block_stop":
            signature = self._signatures.pop(payload.get("index", -1), None)
            if signature is not None:
                return [ReasoningEnd(signature="".join(signature) or None, source=SOURCE)]
            block = self._tools.get(payload.get("index", -1))
            if block is not None and block.open:
                return self._close(block)
        elif kind == "message_delta":
            delta = payload.get("delta")
            if isinstance(delta, Mapping) and isinstance(delta.get("stop_reason"), str):
                self._stop = delta["stop_reason"]
            usage = payload.get("usage")
            if isinstance(usage, Mapping):
                self._usage.update({k: v for k, v in usage.items() if v is not None})
        elif kind == "message_stop":
            self.done = True
        return []

    def _block_start(self, payload: Mapping[str, Any]) -> list[ModelEvent]:
        block = payload.get("content_block")
        index = payload.get("index")
        if not isinstance(block, Mapping) or not isinstance(index, int):
            raise self._transport.malformed("content_block_start without a block or an index")
        if block.get("type") == "text":
            text = block.get("text")
            return [TextDelta(text)] if isinstance(text, str) and text else []
        if block.get("type") == "thinking":
            self._signatures[index] = [block["signature"]] if isinstance(block.get("signature"), str) else []
            thinking = block.get("thinking")
            return [ReasoningDelta(thinking)] if isinstance(thinking, str) and thinking else []
        if block.get("type") == "redacted_thinking":
            data = block.get("data")
            if not isinstance(data, str) or not data:
                raise self._transport.malformed("a redacted_thinking block without data")
            return [ReasoningEnd(encrypted=data, redacted=True, source=SOURCE)]
        if block.get("type") == "tool_use":
            call_id, name = block.get("id"), block.get("name")
            if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
                raise self._transport.malformed("a tool_use block without an id or a name")
            self._tools[index] = _ToolBlock(call_id, block.get("input"))
            return [ToolCallStart(call_id, name)]
        return []

    def _block_delta(self, payload: Mapping[str, Any]) -> list[ModelEvent]:
        delta = payload.get("delta")
        if not isinstance(delta, Mapping):
            raise self._transport.malformed("content_block_delta without a delta")
        if delta.get("type") == "text_delta":
            text = delta.get("text")
            return [TextDelta(text)] if isinstance(text, str) and text else []
        if delta.get("type") == "thinking_delta":
            thinking = delta.get("thinking")
            return [ReasoningDelta(thinking)] if isinstance(thinking, str) and thinking else []
        if delta.get("type") == "signature_delta":
            signature = self._signatures.get(payload.get("index", -1))
            if signature is None:
                raise self._transport.malformed("signature_delta outside an open thinking block")
            if isinstance(delta.get("signature"), str):
                signature.append(delta["signature"])
            return []
        if delta.get("type") == "input_json_delta":
            block = self._tools.get(payload.get("index", -1))
            if block is None or not block.open:
                raise self._transport.malformed("input_json_delta outside an open tool_use block")
            fragment = delta.get("partial_json")
            if isinstance(fragment, str) and fragment:
                block.streamed = True
                return [ToolCallDelta(block.call_id, fragment)]
        return []

    def _close(self, block: _ToolBlock) -> list[ModelEvent]:
        block.open = False
        out: list[ModelEvent] = []
        if not block.streamed and isinstance(block.initial, Mapping) and block.initial:
            out.append(ToolCallDelta(block.call_id, json.dumps(block.initial)))  # input sent whole
        out.append(ToolCallEnd(block.call_id))
        return out

    def end(self) -> list[ModelEvent]:
        if not self.done:
            raise self._transport.malformed("the stream ended before message_stop")
        out: list[ModelEvent] = []
        for block in self._tools.values():
            if block.open:  # cut off by max_tokens: the kernel reports the partial arguments
                out.extend(self._close(block))
        if self._usage:
            out.append(usage_of(self._usage))
        reason = self._stop or ("tool_use" if self._tools else "end_turn")
        out.append(Finish(STOP_REASONS.get(reason, reason)))
        return out
