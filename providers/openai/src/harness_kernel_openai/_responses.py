"""The Responses API on the wire: the request body, and the event stream turned into model events.

Reasoning is carried across turns without server-side storage: requests say
``store: false`` and ask for ``reasoning.encrypted_content``; each reasoning item of a
response becomes a ``ReasoningPart`` holding its summary and encrypted content, and is
sent back as a ``reasoning`` input item before the calls it led to.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from harness_kernel import (
    FilePart,
    Finish,
    ImagePart,
    Message,
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

from ._chat import data_url

__all__ = ["RESPONSES_RESERVED", "SOURCE", "ResponsesStream", "responses_body", "responses_input"]

SOURCE = "openai-responses"
"""``ReasoningPart.source`` of this API's reasoning items; only those go back."""
RESPONSES_RESERVED = frozenset({"model", "input", "stream", "tools", "instructions"})
INCOMPLETE_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}


def _unresolved(part: ImagePart | FilePart) -> BadRequest:
    return BadRequest(
        f"openai-responses: a {type(part).__name__} reference ({part.ref!r}) was not resolved; "
        "resolve references to data or a URL before the model call (a before_model_call hook)"
    )


def _input_content(message: Message) -> str | list[dict[str, Any]]:
    if not any(isinstance(p, ImagePart | FilePart) for p in message.parts):
        return message.text
    content: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            content.append({"type": "input_text", "text": part.text})
        elif isinstance(part, ImagePart | FilePart):
            if part.ref is not None:
                raise _unresolved(part)
            inline = data_url(part.media_type, part.data) if part.data is not None else None
            if isinstance(part, ImagePart):
                content.append({"type": "input_image", "image_url": inline or part.url, "detail": "auto"})
            else:
                item: dict[str, Any] = {"type": "input_file"}
                if inline is None:
                    item["file_url"] = part.url
                else:
                    item["file_data"] = inline
                if part.name or inline is not None:
                    item["filename"] = part.name or "file"
                content.append(item)
    return content


def _reasoning_item(part: ReasoningPart, *, store: bool) -> dict[str, Any] | None:
    """The input item that hands ``part`` back, or ``None`` when the API could not read it:
    another API's reasoning, or (without server-side storage) one with no encrypted content."""
    if part.source != SOURCE or (part.encrypted is None and not (store and part.id)):
        return None
    item: dict[str, Any] = {"type": "reasoning"}
    if part.id:
        item["id"] = part.id
    item["summary"] = [{"type": "summary_text", "text": part.text}] if part.summary and part.text else []
    if part.encrypted is not None:
        item["encrypted_content"] = part.encrypted
    return item


def responses_input(request: ModelRequest, *, store: bool = False) -> list[dict[str, Any]]:
    """The kernel's conversation as Responses API input items.

    Assistant messages become their reasoning items, an assistant message with the text
    and one ``function_call`` item per call; tool results become
    ``function_call_output`` items. Raises ``BadRequest`` for an unresolved ``ref``.
    """
    items: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role == "tool":
            for part in message.parts:
                if isinstance(part, ToolResultPart):
                    items.append({"type": "function_call_output", "call_id": part.call_id, "output": part.content})
            continue
        if message.role != "assistant":
            items.append({"role": message.role, "content": _input_content(message)})
            continue
        for part in message.parts:
            if isinstance(part, ReasoningPart):
                reasoning = _reasoning_item(part, store=store)
                if reasoning is not None:
                    items.append(reasoning)
        if message.text:
            items.append({"role": "assistant", "content": message.text})
        for call in message.parts:
            if isinstance(call, ToolCallPart):
                items.append({
                    "type": "function_call", "call_id": call.call_id, "name": call.name,
                    "arguments": json.dumps(dict(call.arguments)),
                })
    return items


def responses_body(request: ModelRequest, *, store: bool = False) -> dict[str, Any]:
    """The JSON body of a streaming ``POST /responses``, before settings.

    Without ``store``, the response is not kept by the server and its reasoning comes
    back encrypted (``include: ["reasoning.encrypted_content"]``), to be sent back.
    """
    body: dict[str, Any] = {"model": request.model, "input": responses_input(request, store=store), "stream": True}
    body["store"] = store
    if not store:
        body["include"] = ["reasoning.encrypted_content"]
    if request.system:
        body["instructions"] = request.system
    if request.tools:
        body["tools"] = [
            {"type": "function", "name": t.name, "description": t.description,
             "parameters": dict(t.parameters), "strict": False}
            for t in request.tools
        ]
    output = request.output
    if output is not None and output.tool is None:
        body["text"] = {"format": {
            "type": "json_schema", "name": output.name, "schema": dict(output.schema), "strict": output.strict,
        }}
    return body


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def usage_of(raw: Mapping[str, Any]) -> Usage:
    """``Usage`` from a Responses usage object (cached and reasoning tokens included)."""
    inputs = raw.get("input_tokens_details")
    outputs = raw.get("output_tokens_details")
    return Usage(
        input_tokens=_count(raw.get("input_tokens")),
        output_tokens=_count(raw.get("output_tokens")),
        cache_read_tokens=_count(inputs.get("cached_tokens")) if isinstance(inputs, Mapping) else 0,
        reasoning_tokens=_count(outputs.get("reasoning_tokens")) if isinstance(outputs, Mapping) else 0,
    )


class ResponsesStream:
    """Turns the events of one streamed response into ``ModelEvent`` values.

    The event kind is the data's ``type`` (OpenAI also names it on the SSE ``event``
    line; OpenRouter sends data-only frames). Text deltas, function calls (several,
    arguments in fragments), reasoning summaries (``summary`` deltas, parts separated by
    a blank line) and raw reasoning text stream as they come; each reasoning item ends
    with a ``ReasoningEnd`` carrying its id and encrypted content. ``response.completed``
    ends the response; ``response.incomplete`` too, with the finish reason ``length``
    (``max_output_tokens``) or ``content_filter``; ``response.failed`` and ``error``
    events raise the mapped ``ProviderError``. Unknown event types are skipped.
    """

    def __init__(self, transport: SSETransport) -> None:
        self._transport = transport
        self._calls: dict[str, str] = {}  # item id -> call id
        self._streamed: set[str] = set()
        self._open: dict[str, None] = {}  # function_call items not ended, in order
        self._summaries: dict[str, int] = {}  # reasoning item id -> summary parts begun
        self._usage: Usage | None = None
        self._finish: str | None = None
        self.done = False

    def feed(self, sse: ServerSentEvent) -> list[ModelEvent]:
        if self.done:
            return []
        data = sse.data.strip()
        if data == "[DONE]":
            return []
        try:
            payload = json.loads(data)
        except ValueError:
            raise self._transport.malformed("a stream event is not valid JSON") from None
        if not isinstance(payload, dict):
            raise self._transport.malformed("a stream event is not a JSON object")
        kind = payload.get("type") or sse.event
        if kind == "error" or sse.event == "error":
            raise self._transport.error(detail_from_object(payload))
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            delta = payload.get("delta")
            return [TextDelta(delta)] if isinstance(delta, str) and delta else []
        if kind == "response.reasoning_summary_text.delta":
            return self._summary_delta(payload)
        if kind == "response.reasoning_text.delta":
            delta = payload.get("delta")
            return [ReasoningDelta(delta)] if isinstance(delta, str) and delta else []
        if kind == "response.function_call_arguments.delta":
            return self._arguments(payload)
        if kind == "response.output_item.added":
            return self._item_added(payload.get("item"))
        if kind == "response.output_item.done":
            return self._item_done(payload.get("item"))
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            self._terminal(kind, payload.get("response"))
        return []

    def _summary_delta(self, payload: Mapping[str, Any]) -> list[ModelEvent]:
        delta = payload.get("delta")
        if not isinstance(delta, str) or not delta:
            return []
        item, index = str(payload.get("item_id")), payload.get("summary_index", 0)
        out: list[ModelEvent] = []
        begun = self._summaries.get(item, 0)
        if isinstance(index, int) and index >= begun:
            if begun:  # a new part of the summary: keep the parts apart
                out.append(ReasoningDelta("\n\n", summary=True))
            self._summaries[item] = index + 1
        out.append(ReasoningDelta(delta, summary=True))
        return out

    def _item_added(self, item: Any) -> list[ModelEvent]:
        if not isinstance(item, Mapping) or item.get("type") != "function_call":
            return []
        name, item_id = item.get("name"), item.get("id")
        if not isinstance(name, str) or not name:
            raise self._transport.malformed("a function_call item without a name")
        call_id = item.get("call_id")
        if not isinstance(call_id, str) or not call_id or call_id in self._calls.values():
            call_id = f"call_{uuid.uuid4().hex[:24]}"
        key = item_id if isinstance(item_id, str) and item_id else call_id
        self._calls[key] = call_id
        self._open[key] = None
        return [ToolCallStart(call_id, name)]

    def _arguments(self, payload: Mapping[str, Any]) -> list[ModelEvent]:
        key = payload.get("item_id")
        if not isinstance(key, str) or key not in self._open:
            raise self._transport.malformed("function call arguments outside an open function_call item")
        delta = payload.get("delta")
        if not isinstance(delta, str) or not delta:
            return []
        self._streamed.add(key)
        return [ToolCallDelta(self._calls[key], delta)]

    def _item_done(self, item: Any) -> list[ModelEvent]:
        if not isinstance(item, Mapping):
            return []
        if item.get("type") == "reasoning":
            encrypted = item.get("encrypted_content")
            item_id = item.get("id")
            return [ReasoningEnd(
                encrypted=encrypted if isinstance(encrypted, str) and encrypted else None,
                id=item_id if isinstance(item_id, str) else None,
                source=SOURCE,
            )]
        if item.get("type") == "function_call":
            key = item.get("id") if item.get("id") in self._open else item.get("call_id")
            if isinstance(key, str) and key in self._open:
                return self._close(key, item.get("arguments"))
        return []

    def _close(self, key: str, arguments: Any) -> list[ModelEvent]:
        self._open.pop(key, None)
        out: list[ModelEvent] = []
        if key not in self._streamed and isinstance(arguments, str) and arguments:
            out.append(ToolCallDelta(self._calls[key], arguments))  # sent whole, not streamed
        out.append(ToolCallEnd(self._calls[key]))
        return out

    def _terminal(self, kind: str, response: Any) -> None:
        response = response if isinstance(response, Mapping) else {}
        if kind == "response.failed":
            error = response.get("error")
            raise self._transport.error(
                detail_from_object(error if isinstance(error, Mapping) else {"message": "the response failed"})
            )
        usage = response.get("usage")
        if isinstance(usage, Mapping):
            self._usage = usage_of(usage)
        if kind == "response.incomplete":
            details = response.get("incomplete_details")
            reason = details.get("reason") if isinstance(details, Mapping) else None
            self._finish = INCOMPLETE_REASONS.get(str(reason), str(reason or "length"))
        else:
            self._finish = "tool_calls" if self._calls else "stop"
        self.done = True

    def end(self) -> list[ModelEvent]:
        if not self.done:
            raise self._transport.malformed(
                "the stream ended before the response was complete (no response.completed)"
            )
        out: list[ModelEvent] = []
        for key in list(self._open):  # cut off: the kernel reports the partial arguments
            out.extend(self._close(key, None))
        if self._usage is not None:
            out.append(self._usage)
        out.append(Finish(self._finish or "stop"))
        return out
