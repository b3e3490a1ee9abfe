"""Scripted model APIs for the loopback server: the server decides, the wire is real.

``ScriptedAPI(wire, respond)`` is a ``LoopbackServer`` handler. ``respond`` gets the
parsed request body and returns what the API does: a ``Reply`` (text and/or tool
calls, rendered as the API streams them, byte for byte as documented), a ``Status``
(an HTTP error with the API's error body and headers), a ``Broken`` reply (a stream
that fails part way: reset, close, truncation, a malformed chunk, a stall) or a
``Hang`` (no answer at all). ``respond`` may also be a list, answered in order.

Three wire formats: ``"openai"`` (Chat Completions chunks, ``data: [DONE]``),
``"anthropic"`` (Messages API named events ending in ``message_stop``) and
``"responses"`` (OpenAI Responses API named events ending in ``response.completed``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

import attrs
import trio

from harness_kernel import Message, ModelRequest, TextPart, ToolCallPart, ToolResultPart
from harness_kernel.testing import Reply as KernelReply

from .loopback import Exchange

__all__ = [
    "Broken",
    "model_request_from_wire",
    "reply_from_kernel",
    "Call",
    "Hang",
    "Raw",
    "Reply",
    "ScriptedAPI",
    "Status",
    "anthropic_error",
    "anthropic_events",
    "openai_error",
    "openai_events",
    "responses_events",
]

Wire = Literal["openai", "anthropic", "responses"]


@attrs.frozen
class Call:
    """A tool call the scripted model makes; its JSON arguments are streamed in fragments."""

    name: str
    arguments: Any = attrs.field(factory=dict)
    call_id: str | None = None
    fragments: int = 3


@attrs.frozen
class Reply:
    """A scripted response. ``text`` is streamed in ``text_chunks`` pieces (default: by word)."""

    text: str = ""
    calls: Sequence[Call] = ()
    usage: tuple[int, int] = (12, 7)
    finish: str | None = None
    text_chunks: int | None = None
    model: str | None = None


@attrs.frozen
class Status:
    """An HTTP error response: status, body (bytes or JSON object) and headers."""

    status: int
    body: Any
    headers: Sequence[tuple[str, str]] = ()


@attrs.frozen
class Broken:
    """A stream of ``reply`` that fails right after its ``texts``-th text delta.

    ``how``: ``"reset"`` (TCP RST), ``"close"`` (FIN inside the body), ``"truncate"``
    (the body ends cleanly without the final event), ``"malformed"`` (a chunk of
    invalid JSON, then the rest), ``"hang"`` (stop sending, keep the connection).
    ``wait``: an event to await before failing (to sequence the test deterministically).
    """

    reply: Reply
    how: Literal["reset", "close", "truncate", "malformed", "hang"]
    texts: int = 2
    wait: trio.Event | None = None


@attrs.frozen
class Hang:
    """Read the request and never answer."""


@attrs.frozen
class Raw:
    """Send these exact bytes as the body, in ``piece``-byte HTTP chunks (0: one chunk)."""

    body: bytes
    status: int = 200
    headers: Sequence[tuple[str, str]] = (("content-type", "text/event-stream; charset=utf-8"),)
    piece: int = 0


Answer = Reply | Status | Broken | Hang | Raw


def _json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _text_pieces(reply: Reply) -> list[str]:
    if not reply.text:
        return []
    if reply.text_chunks:
        size = max(1, -(-len(reply.text) // reply.text_chunks))
        return [reply.text[i : i + size] for i in range(0, len(reply.text), size)]
    return re.findall(r"\S+\s*|\s+", reply.text)


def _fragments(call: Call) -> list[str]:
    raw = call.arguments if isinstance(call.arguments, str) else _json(call.arguments)
    if not raw:
        return []
    size = max(1, -(-len(raw) // max(1, call.fragments)))
    return [raw[i : i + size] for i in range(0, len(raw), size)]


# -- OpenAI Chat Completions --------------------------------------------------------


def openai_events(reply: Reply, *, model: str = "gpt-4o-2024-08-06", serial: int = 1) -> list[bytes]:
    """The SSE events of a streamed chat completion with ``stream_options.include_usage``."""
    model = reply.model or model
    base = {
        "id": f"chatcmpl-Test{serial:020d}",
        "object": "chat.completion.chunk",
        "created": 1_750_000_000,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_07871e2ad8",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], "usage": None}
        return f"data: {_json(body)}\n\n".encode()

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": piece}) for piece in _text_pieces(reply)]
    for index, call in enumerate(reply.calls):
        call_id = call.call_id or f"call_{serial:04d}{index:02d}abcdefghijklmnop"
        first = {"index": index, "id": call_id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        events.append(chunk({"tool_calls": [first]}))
        events += [chunk({"tool_calls": [{"index": index, "function": {"arguments": f}}]}) for f in _fragments(call)]
    finish = reply.finish or ("tool_calls" if reply.calls else "stop")
    events.append(chunk({}, finish))
    prompt, completion = reply.usage
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0,
        },
    }
    events.append(f"data: {_json({**base, 'choices': [], 'usage': usage})}\n\n".encode())
    events.append(b"data: [DONE]\n\n")
    return events


def openai_error(status: int, message: str, type: str, code: str | None = None, headers: Sequence[tuple[str, str]] = ()) -> Status:
    body = {"error": {"message": message, "type": type, "param": None, "code": code}}
    return Status(status, json.dumps(body, indent=2).encode() + b"\n", (("content-type", "application/json"), *headers))


OPENAI_HEADERS = (
    ("content-type", "text/event-stream; charset=utf-8"),
    ("access-control-expose-headers", "X-Request-ID"),
    ("openai-processing-ms", "112"),
    ("openai-version", "2020-10-01"),
    ("x-ratelimit-limit-requests", "500"),
    ("x-ratelimit-remaining-requests", "499"),
    ("x-ratelimit-reset-requests", "120ms"),
    ("x-request-id", "req_0123456789abcdef0123456789abcdef"),
)


# -- Anthropic Messages ------------------------------------------------------------------


def _named(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {_json(event)}\n\n".encode()


def anthropic_events(reply: Reply, *, model: str = "claude-sonnet-4-20250514", serial: int = 1) -> list[bytes]:
    """The SSE events of a streamed Messages API response."""
    prompt, completion = reply.usage
    usage = {"input_tokens": prompt, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}
    message = {
        "id": f"msg_01Test{serial:018d}", "type": "message", "role": "assistant", "model": reply.model or model,
        "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage,
    }
    events = [_named({"type": "message_start", "message": message})]
    index = 0
    pieces = _text_pieces(reply)
    if pieces:
        events.append(_named({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}))
        events.append(b'event: ping\ndata: {"type": "ping"}\n\n')
        events += [
            _named({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})
            for p in pieces
        ]
        events.append(_named({"type": "content_block_stop", "index": 0}))
        index = 1
    for offset, call in enumerate(reply.calls):
        i = index + offset
        call_id = call.call_id or f"toolu_01Test{serial:06d}{i:02d}abcdefghij"
        block = {"type": "tool_use", "id": call_id, "name": call.name, "input": {}}
        events.append(_named({"type": "content_block_start", "index": i, "content_block": block}))
        events.append(_named({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": ""}}))
        events += [
            _named({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": f}})
            for f in _fragments(call)
        ]
        events.append(_named({"type": "content_block_stop", "index": i}))
    stop = reply.finish or ("tool_use" if reply.calls else "end_turn")
    events.append(_named({
        "type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": completion},
    }))
    events.append(_named({"type": "message_stop"}))
    return events


def anthropic_error(status: int, message: str, type: str, headers: Sequence[tuple[str, str]] = ()) -> Status:
    body = {"type": "error", "error": {"type": type, "message": message}, "request_id": "req_011CTest0123456789"}
    return Status(status, _json(body).encode(), (("content-type", "application/json"), *headers))


ANTHROPIC_HEADERS = (
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
    ("anthropic-organization-id", "00000000-0000-0000-0000-000000000000"),
    ("request-id", "req_011CTest0123456789abcdef"),
    ("via", "1.1 google"),
)

# -- OpenAI Responses ------------------------------------------------------------------


def responses_events(reply: Reply, *, model: str = "gpt-4o-2024-08-06", serial: int = 1) -> list[bytes]:
    """The SSE events of a streamed Responses API response (as OpenAI frames them)."""
    response_id = f"resp_Test{serial:020d}"
    sequence = iter(range(100_000))

    def event(body: dict[str, Any]) -> bytes:
        return _named({**body, "sequence_number": next(sequence)})

    def response(status: str, output: list[Any], usage: Any = None) -> dict[str, Any]:
        return {"id": response_id, "object": "response", "status": status, "model": reply.model or model,
                "output": output, "usage": usage, "error": None, "incomplete_details": None}

    events = [event({"type": "response.created", "response": response("in_progress", [])}),
              event({"type": "response.in_progress", "response": response("in_progress", [])})]
    output: list[Any] = []
    pieces = _text_pieces(reply)
    if pieces:
        item_id = f"msg_Test{serial:020d}"
        item = {"id": item_id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}
        events.append(event({"type": "response.output_item.added", "output_index": 0, "item": item}))
        events += [
            event({"type": "response.output_text.delta", "item_id": item_id, "output_index": 0, "content_index": 0, "delta": p})
            for p in pieces
        ]
        done = {**item, "status": "completed", "content": [{"type": "output_text", "text": reply.text, "annotations": []}]}
        events.append(event({"type": "response.output_item.done", "output_index": 0, "item": done}))
        output.append(done)
    for call in reply.calls:
        index = len(output)
        item_id = f"fc_Test{serial:06d}{index:02d}"
        call_id = call.call_id or f"call_{serial:04d}{index:02d}abcdefghijklmnop"
        item = {"id": item_id, "type": "function_call", "status": "in_progress", "arguments": "",
                "call_id": call_id, "name": call.name}
        events.append(event({"type": "response.output_item.added", "output_index": index, "item": item}))
        fragments = _fragments(call)
        events += [
            event({"type": "response.function_call_arguments.delta", "item_id": item_id, "output_index": index, "delta": f})
            for f in fragments
        ]
        done = {**item, "status": "completed", "arguments": "".join(fragments)}
        events.append(event({"type": "response.output_item.done", "output_index": index, "item": done}))
        output.append(done)
    prompt, completion = reply.usage
    usage = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": completion,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": prompt + completion}
    if reply.finish == "length":
        final = response("incomplete", output, usage) | {"incomplete_details": {"reason": "max_output_tokens"}}
        events.append(event({"type": "response.incomplete", "response": final}))
    else:
        events.append(event({"type": "response.completed", "response": response("completed", output, usage)}))
    return events


_MALFORMED = {
    "openai": b'data: {"id":"chatcmpl-x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"oo\n\n',
    "anthropic": b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_del\n\n',
    "responses": b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"oo\n\n',
}


class ScriptedAPI:
    """A loopback handler answering with ``respond(request_json)`` in the ``wire`` format.

    ``chunk_delay`` pauses between SSE events (``trio.sleep``: mock time under MockClock).
    ``answers`` lists what was answered, in order.
    """

    def __init__(
        self,
        wire: Wire,
        respond: Callable[[Any], Answer] | Sequence[Answer],
        *,
        chunk_delay: float = 0.0,
    ) -> None:
        self.wire = wire
        self._respond = respond
        self._queue = list(respond) if isinstance(respond, Sequence) else None
        self.chunk_delay = chunk_delay
        self.answers: list[Answer] = []

    def _next(self, body: Any) -> Answer:
        if self._queue is not None:
            if not self._queue:
                raise AssertionError("the scripted API got more requests than it has answers")
            return self._queue.pop(0)
        assert callable(self._respond)
        return self._respond(body)

    def events(self, reply: Reply, serial: int) -> list[bytes]:
        render = {"openai": openai_events, "anthropic": anthropic_events, "responses": responses_events}[self.wire]
        return render(reply, serial=serial)

    @property
    def headers(self) -> Sequence[tuple[str, str]]:
        return ANTHROPIC_HEADERS if self.wire == "anthropic" else OPENAI_HEADERS

    async def __call__(self, exchange: Exchange) -> None:
        answer = self._next(exchange.request.json)
        self.answers.append(answer)
        serial = len(self.answers)
        if isinstance(answer, Hang):
            await exchange.hang()
        elif isinstance(answer, Status):
            body = answer.body if isinstance(answer.body, bytes) else _json(answer.body).encode()
            await exchange.respond(answer.status, body, answer.headers)
        elif isinstance(answer, Raw):
            await exchange.start(answer.status, answer.headers)
            step = answer.piece or len(answer.body) or 1
            for i in range(0, len(answer.body), step):
                await exchange.write(answer.body[i : i + step])
            await exchange.end()
        elif isinstance(answer, Reply):
            await exchange.start(200, self.headers)
            for event in self.events(answer, serial):
                await exchange.write(event)
                if self.chunk_delay:
                    await trio.sleep(self.chunk_delay)
            await exchange.end()
        else:
            await self._broken(exchange, answer, serial)

    def _cut(self, events: list[bytes], texts: int) -> int:
        marker = {"openai": b'"delta":{"content":', "anthropic": b'"text_delta"',
                  "responses": b'"type":"response.output_text.delta"'}[self.wire]
        seen = 0
        for index, event in enumerate(events):
            seen += marker in event
            if seen == texts:
                return index + 1
        raise AssertionError(f"the reply has fewer than {texts} text deltas")

    async def _broken(self, exchange: Exchange, answer: Broken, serial: int) -> None:
        events = self.events(answer.reply, serial)
        cut = self._cut(events, answer.texts)
        await exchange.start(200, self.headers)
        for event in events[:cut]:
            await exchange.write(event)
            if self.chunk_delay:
                await trio.sleep(self.chunk_delay)
        if answer.wait is not None:
            await answer.wait.wait()
        if answer.how == "reset":
            await exchange.reset()
        elif answer.how == "close":
            await exchange.close()
        elif answer.how == "truncate":
            await exchange.end()
        elif answer.how == "hang":
            await exchange.hang()
        else:
            await exchange.write(_MALFORMED[self.wire])
            for event in events[cut:]:
                await exchange.write(event)
            await exchange.end()


# -- the other way round: a wire request as the kernel's ModelRequest ---------------------


def model_request_from_wire(wire: Wire, body: Any) -> ModelRequest:
    """Read a request body back into a ``ModelRequest``, so a server can run a scripted
    model written against the kernel's types (the quickstart's, for one)."""
    messages: list[Message] = []
    system = ""
    if wire == "openai":
        for m in body["messages"]:
            if m["role"] == "system":
                system = m["content"]
            elif m["role"] == "tool":
                messages.append(Message("tool", (ToolResultPart(m["tool_call_id"], m["content"]),)))
            elif m["role"] == "assistant":
                parts: list[Any] = [TextPart(m["content"])] if m.get("content") else []
                parts += [
                    ToolCallPart(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
                    for c in m.get("tool_calls") or ()
                ]
                messages.append(Message("assistant", tuple(parts)))
            else:
                messages.append(Message.user(m["content"]))
    elif wire == "responses":
        system = body.get("instructions", "")
        for item in body["input"]:
            if item.get("type") == "function_call_output":
                messages.append(Message("tool", (ToolResultPart(item["call_id"], item["output"]),)))
            elif item.get("type") == "function_call":
                call = ToolCallPart(item["call_id"], item["name"], json.loads(item["arguments"]))
                last = messages[-1] if messages else None
                if last is not None and last.role == "assistant":
                    messages[-1] = Message("assistant", (*last.parts, call))
                else:
                    messages.append(Message("assistant", (call,)))
            elif item.get("role") == "assistant":
                messages.append(Message("assistant", (TextPart(item["content"]),)))
            elif item.get("role") == "user":
                messages.append(Message.user(item["content"]))
    else:
        system = body.get("system", "")
        for turn in body["messages"]:
            texts: list[Any] = []
            for block in turn["content"]:
                if block["type"] == "tool_result":
                    result = ToolResultPart(block["tool_use_id"], block["content"], block.get("is_error", False))
                    messages.append(Message("tool", (result,)))
                elif block["type"] == "tool_use":
                    texts.append(ToolCallPart(block["id"], block["name"], block["input"]))
                else:
                    texts.append(TextPart(block["text"]))
            if texts:
                messages.append(Message(turn["role"], tuple(texts)))
    return ModelRequest(body["model"], tuple(messages), system=system)


def reply_from_kernel(reply: KernelReply) -> Reply:
    """A ``harness_kernel.testing.Reply`` as this module's ``Reply``."""
    calls = [Call(c.name, c.arguments, c.call_id) for c in reply.tool_calls]
    return Reply(reply.text, calls=calls)
