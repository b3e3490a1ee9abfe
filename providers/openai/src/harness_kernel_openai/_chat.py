"""Chat Completions on the wire: the request body, and the stream turned into model events."""

from __future__ import annotations

import base64
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
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResultPart,
    Usage,
)
from harness_kernel.contracts import ModelEvent
from harness_kernel.errors import BadRequest
from harness_kernel.http import ServerSentEvent, SSETransport, detail_from_object

__all__ = ["ChatStream", "chat_body", "chat_messages", "data_url"]

# Fields the provider writes itself; a setting may not replace them.
RESERVED = frozenset({"model", "messages", "stream", "tools"})


def chat_messages(request: ModelRequest) -> list[dict[str, Any]]:
    """The kernel's conversation as Chat Completions messages.

    ``request.system`` comes first as a ``system`` message; tool results become one
    ``tool`` message each, answering their ``tool_call_id``.
    """
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    for message in request.messages:
        if message.role == "tool":
            for part in message.parts:
                if isinstance(part, ToolResultPart):
                    messages.append({"role": "tool", "tool_call_id": part.call_id, "content": part.content})
            continue
        if message.role == "assistant":
            entry: dict[str, Any] = {"role": "assistant", "content": message.text or None}
            calls = [
                {
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(dict(call.arguments))},
                }
                for call in message.tool_calls
            ]
            if calls:
                entry["tool_calls"] = calls
            elif entry["content"] is None:
                entry["content"] = ""
            messages.append(entry)
            continue
        if any(isinstance(p, ImagePart | FilePart) for p in message.parts):
            messages.append({"role": message.role, "content": _content_parts(message)})
        else:
            messages.append({"role": message.role, "content": message.text})
    return messages


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def _unresolved(part: ImagePart | FilePart) -> BadRequest:
    return BadRequest(
        f"openai: a {type(part).__name__} reference ({part.ref!r}) was not resolved; resolve "
        "references to data or a URL before the model call (a before_model_call hook)"
    )


def _content_parts(message: Message) -> list[dict[str, Any]]:
    """A user message with images or files as a list of content parts, in order."""
    content: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            if part.ref is not None:
                raise _unresolved(part)
            url = part.url if part.data is None else data_url(part.media_type, part.data)
            content.append({"type": "image_url", "image_url": {"url": url}})
        elif isinstance(part, FilePart):
            if part.ref is not None:
                raise _unresolved(part)
            if part.data is None:
                raise BadRequest("openai: Chat Completions takes files as inline data, not URLs")
            file: dict[str, Any] = {"file_data": data_url(part.media_type, part.data)}
            if part.name:
                file["filename"] = part.name
            content.append({"type": "file", "file": file})
    return content


def chat_body(request: ModelRequest, *, include_usage: bool) -> dict[str, Any]:
    """The JSON body of a streaming ``POST /chat/completions``, before settings.

    ``HttpProvider.request_body`` lays the model settings over it under their API names.
    """
    body: dict[str, Any] = {"model": request.model, "messages": chat_messages(request), "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": dict(t.parameters)},
            }
            for t in request.tools
        ]
    output = request.output
    if output is not None and output.tool is None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": output.name, "schema": dict(output.schema), "strict": output.strict},
        }
    return body


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def usage_of(raw: Mapping[str, Any]) -> Usage:
    """``Usage`` from a Chat Completions usage object; ``input_tokens`` includes cached ones."""
    details = raw.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else 0
    output = raw.get("completion_tokens_details")
    reasoning = output.get("reasoning_tokens") if isinstance(output, Mapping) else 0
    return Usage(
        input_tokens=_count(raw.get("prompt_tokens")),
        output_tokens=_count(raw.get("completion_tokens")),
        cache_read_tokens=_count(cached),
        reasoning_tokens=_count(reasoning),
    )


class ChatStream:
    """Turns the chunks of one streamed completion into ``ModelEvent`` values.

    ``feed`` takes each server-sent event and returns the events it produced; ``end``
    is called at the end of the body and returns the closing events (tool-call ends,
    usage, finish) or raises ``MalformedResponse`` if the response stopped early. Only
    choice 0 is read. Reasoning deltas of compatible servers (``reasoning_content``:
    DeepSeek, llama.cpp, vLLM; ``reasoning``: Ollama, OpenRouter) become
    ``ReasoningDelta``; they carry nothing opaque, so no ``ReasoningEnd`` follows.
    """

    def __init__(self, transport: SSETransport) -> None:
        self._transport = transport
        self._calls: dict[int, str] = {}
        self._ids: set[str] = set()
        self._finish: str | None = None
        self._usage: Usage | None = None
        self.done = False

    def feed(self, sse: ServerSentEvent) -> list[ModelEvent]:
        if self.done:
            return []  # whatever follows [DONE] is read off the connection and ignored
        data = sse.data.strip()
        if data == "[DONE]":
            self.done = True
            return []
        try:
            chunk = json.loads(data)
        except ValueError:
            raise self._transport.malformed("a stream chunk is not valid JSON") from None
        if not isinstance(chunk, dict):
            raise self._transport.malformed("a stream chunk is not a JSON object")
        if sse.event == "error" or chunk.get("error") is not None:
            raise self._transport.error(detail_from_object(chunk))
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self._usage = usage_of(usage)  # servers that count on every chunk: the last wins
        out: list[ModelEvent] = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, Mapping):
                thinking = delta.get("reasoning_content")
                if not isinstance(thinking, str) or not thinking:
                    thinking = delta.get("reasoning")
                if isinstance(thinking, str) and thinking:
                    out.append(ReasoningDelta(thinking))
                content = delta.get("content")
                if isinstance(content, str) and content:
                    out.append(TextDelta(content))
                for call in delta.get("tool_calls") or ():
                    if isinstance(call, Mapping):
                        out.extend(self._tool_call(call))
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                self._finish = reason
        return out

    def _tool_call(self, call: Mapping[str, Any]) -> list[ModelEvent]:
        raw_function = call.get("function")
        function: Mapping[str, Any] = raw_function if isinstance(raw_function, Mapping) else {}
        index = call.get("index")
        if not isinstance(index, int):
            index = len(self._calls)  # servers that omit the index send each call whole
        out: list[ModelEvent] = []
        call_id = self._calls.get(index)
        if call_id is None:
            name = function.get("name")
            if not isinstance(name, str) or not name:
                raise self._transport.malformed("a tool call started without a function name")
            call_id = call.get("id")
            if not isinstance(call_id, str) or not call_id or call_id in self._ids:
                call_id = f"call_{uuid.uuid4().hex[:24]}"
            self._calls[index] = call_id
            self._ids.add(call_id)
            out.append(ToolCallStart(call_id, name))
        arguments = function.get("arguments")
        if isinstance(arguments, Mapping):  # some servers send the object, not its JSON text
            arguments = json.dumps(arguments)
        if isinstance(arguments, str) and arguments:
            out.append(ToolCallDelta(call_id, arguments))
        return out

    def end(self) -> list[ModelEvent]:
        if not self.done and self._finish is None:
            raise self._transport.malformed(
                "the stream ended before the response was complete (no finish reason, no [DONE])"
            )
        out: list[ModelEvent] = [ToolCallEnd(call_id) for call_id in self._calls.values()]
        if self._usage is not None:
            out.append(self._usage)
        reason = self._finish or ("tool_calls" if self._calls else "stop")
        out.append(Finish("tool_calls" if reason == "function_call" else reason))
        return out
