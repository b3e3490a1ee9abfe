"""Compaction: a long session's model context kept within a token budget.

The log is never rewritten. Compacting appends ``context.compacted``: a summary of the
messages from the previous compaction (its summary folded in) up to a cut, and the seq
range it summarized. Model requests after it send the summary, as a first user
message, plus the messages after the range; ``history()`` still returns everything,
and a hydrated session finds the latest compaction in its snapshot, so the context a
model gets stays bounded however long the session grows.

A cut never separates a tool call from its result: the kept part starts at a user or
assistant message, and everything before it is answered. The policy (``CompactionPolicy``
on the agent) compacts before a model call whose context would exceed ``trigger`` times
the model's budget, keeping about ``keep`` times the budget of the newest messages. The
context is counted as the provider's reported tokens for the last request plus an
estimate (``estimate_tokens``) of what was added since, and never less than the
estimate of the whole request.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Sequence
from typing import Any, Final

import attrs

from ._compaction import SUMMARY_INSTRUCTIONS, CompactionInput, Summarizer
from ._context import Compacted, ContextCompacted
from ._log import SessionLog
from ._output import with_output
from ._records import (
    FilePart,
    ImagePart,
    Message,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    Usage,
    UsageRecorded,
)
from ._runtime import Runtime
from .contracts import ModelRequest, TextDelta
from .errors import ProviderError

__all__ = [
    "IMAGE_TOKENS",
    "MESSAGE_TOKENS",
    "SUMMARY_HEADER",
    "Context",
    "estimate_tokens",
    "summary_message",
]

SUMMARY_HEADER: Final = "[Summary of the earlier conversation]"
"""How the summary message the model gets begins."""
IMAGE_TOKENS: Final = 1_000
"""What an image or a file without inline text counts for in the estimate."""
MESSAGE_TOKENS: Final = 4
"""What each message costs beyond its content (role and framing)."""


def _chars(text: str) -> int:
    return math.ceil(len(text) / 4)


def _part_tokens(part: Any) -> int:
    if isinstance(part, TextPart):
        return _chars(part.text)
    if isinstance(part, ToolCallPart):
        return _chars(part.name) + _chars(json.dumps(dict(part.arguments), ensure_ascii=False))
    if isinstance(part, ToolResultPart):
        return _chars(part.content)
    if isinstance(part, ReasoningPart):
        return _chars(part.text) + _chars(part.signature or "") + _chars(part.encrypted or "")
    if isinstance(part, ImagePart | FilePart):
        return IMAGE_TOKENS
    return 0


def estimate_tokens(item: Message | ModelRequest | str) -> int:
    """A rough token count (4 characters a token; images and files a fixed amount) of a
    text, a message or a whole request (system prompt, tool schemas and messages)."""
    if isinstance(item, str):
        return _chars(item)
    if isinstance(item, Message):
        return MESSAGE_TOKENS + sum(_part_tokens(p) for p in item.parts)
    tools = sum(
        _chars(t.name) + _chars(t.description) + _chars(json.dumps(dict(t.parameters)))
        for t in item.tools
    )
    return _chars(item.system) + tools + sum(estimate_tokens(m) for m in item.messages)


def summary_message(compacted: Compacted) -> Message:
    """The message that stands for the compacted part in model requests."""
    text = f"{SUMMARY_HEADER}\n\n{compacted.event.summary}"
    return Message(
        "user", (TextPart(text),), id=f"msg_summary_{compacted.seq}", created_at=compacted.at
    )


def _cut(numbered: Sequence[tuple[int, Message]], keep: int) -> int:
    """Where the kept part starts: the earliest user or assistant message from which the
    rest fits in ``keep`` tokens (else the newest such message), with every tool call
    before it answered before it; 0 if there is none."""
    starts: list[int] = []
    open_calls: set[str] = set()
    for index, (_, message) in enumerate(numbered):
        if index and message.role != "tool" and not open_calls:
            starts.append(index)
        for part in message.parts:
            if isinstance(part, ToolCallPart):
                open_calls.add(part.call_id)
            elif isinstance(part, ToolResultPart):
                open_calls.discard(part.call_id)
    if not starts:
        return 0
    tail = 0
    best = starts[-1]
    index = len(numbered)
    for start in reversed(starts):
        tail += sum(estimate_tokens(m) for _, m in numbered[start:index])
        index = start
        if tail > keep:
            break
        best = start
    return best


def _transcript(previous: str | None, messages: Sequence[Message]) -> str:
    lines = [f"Earlier summary:\n{previous}\n"] if previous else []
    for message in messages:
        for part in message.parts:
            if isinstance(part, TextPart) and part.text:
                lines.append(f"{message.role}: {part.text}")
            elif isinstance(part, ToolCallPart):
                lines.append(f"assistant called {part.name}({json.dumps(dict(part.arguments))})")
            elif isinstance(part, ToolResultPart):
                lines.append(f"tool result{' (error)' if part.is_error else ''}: {part.content}")
            elif isinstance(part, ImagePart | FilePart):
                lines.append(f"{message.role}: [{type(part).__name__} {part.media_type}]")
    return "\n".join(lines)


class Context:
    """The model context of one session: what requests send, and its compaction."""

    def __init__(self, runtime: Runtime, log: SessionLog) -> None:
        self._rt = runtime
        self._log = log
        self._measured: tuple[str, int] | None = None  # (last message id sent, tokens)

    async def messages(self) -> tuple[Message, ...]:
        """What a model request sends: the latest summary and the messages after it."""
        compacted = self._log.fold.compacted
        if compacted is None:
            return tuple(await self._log.messages())
        tail = await self._log.messages_since(compacted.event.last_seq + 1)
        return (summary_message(compacted), *tail)

    def measured(self, request: ModelRequest, usage: Usage) -> None:
        """The provider's count for ``request`` (and its answer)."""
        if request.messages:
            self._measured = (request.messages[-1].id, usage.input_tokens + usage.output_tokens)

    def count(self, request: ModelRequest) -> int:
        """The tokens of ``request``: the provider's count of the last request plus the
        estimate of what came after it, and never less than the estimate of it all."""
        estimate = estimate_tokens(request)
        if self._measured is None:
            return estimate
        last_id, tokens = self._measured
        for index in range(len(request.messages) - 1, -1, -1):
            if request.messages[index].id == last_id:
                after = sum(estimate_tokens(m) for m in request.messages[index + 1 :])
                return max(estimate, tokens + after)
        return estimate

    async def prepare(self, run: Any, request: ModelRequest) -> ModelRequest:
        """``run``'s ``request``, compacted first if the policy says so, asking for the
        run's output type if it has one."""
        policy = self._rt.agent.compaction
        budget = policy.budget_for(run.model) if policy is not None else None
        if policy is not None and budget and self.count(request) > policy.trigger * budget:
            try:
                compacted = await self.compact(run.id, run.model, keep=int(policy.keep * budget))
            except ProviderError as exc:
                # The trigger leaves room: this call goes out whole, the next one tries again.
                self._log.log.warning("compaction_failed", run_id=run.id, error=exc.code)
                compacted = None
            if compacted is not None:
                request = attrs.evolve(request, messages=await self.messages())
        if run.output_type is None:
            return request
        provider, _ = self._rt.resolve_model(run.model)
        return with_output(request, run.output_type, provider)

    async def compact(
        self,
        run_id: str | None,
        model: str,
        *,
        keep: int | None = None,
        summarizer: str | Summarizer | None = None,
    ) -> ContextCompacted | None:
        """Summarize the context up to a cut that keeps ``keep`` tokens of the newest
        messages (the policy's share of ``model``'s budget by default, else none but
        the newest message); append and return the ``context.compacted`` event, or
        ``None`` when there is nothing to compact."""
        log = self._log
        policy = self._rt.agent.compaction
        if keep is None:
            budget = policy.budget_for(model) if policy is not None else None
            keep = int(policy.keep * budget) if policy is not None and budget else 0
        previous = log.fold.compacted
        first = previous.event.last_seq + 1 if previous is not None else 1
        numbered = await log.numbered_since(first)
        cut = _cut(numbered, keep)
        if cut == 0:
            return None
        last = numbered[cut][0] - 1
        before = sum(estimate_tokens(m) for _, m in numbered)
        job = CompactionInput(
            log.id,
            previous.event.summary if previous is not None else None,
            tuple(m for _, m in numbered[:cut]),
            first,
            last,
        )
        summary, by, usage = await self._summarize(
            job, summarizer or (policy.summarizer if policy else None), model
        )
        after = MESSAGE_TOKENS + _chars(f"{SUMMARY_HEADER}\n\n{summary}")
        after += sum(estimate_tokens(m) for _, m in numbered[cut:])
        event = ContextCompacted(
            summary, first, last, previous.seq if previous else None, before, after, by
        )
        payloads: list[Any] = [event]
        if usage is not None and by is not None:
            payloads.insert(0, UsageRecorded(self._rt.costs.priced(by, usage), by))
        await log.append(run_id, *payloads)
        self._measured = None
        log.log.info(
            "context_compacted",
            first_seq=first,
            last_seq=last,
            tokens_before=before,
            tokens_after=after,
        )
        return event

    async def _summarize(
        self, job: CompactionInput, summarizer: str | Summarizer | None, model: str
    ) -> tuple[str, str | None, Usage | None]:
        if callable(summarizer):
            written = summarizer(job)
            if inspect.isawaitable(written):
                written = await written
            if not isinstance(written, str):
                raise TypeError(f"the summarizer returned {type(written).__name__}, not str")
            return written, None, None
        ref = summarizer or model
        provider, name = self._rt.resolve_model(ref)
        policy = self._rt.agent.compaction
        request = ModelRequest(
            model=name,
            messages=(Message.user(_transcript(job.previous_summary, job.messages)),),
            system=policy.instructions if policy is not None else SUMMARY_INSTRUCTIONS,
            session_id=job.session_id,
        )
        text: list[str] = []
        usage: Usage | None = None
        stream = provider.stream(request)
        try:
            async for item in stream:
                if isinstance(item, TextDelta):
                    text.append(item.text)
                elif isinstance(item, Usage):
                    usage = item
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
        return "".join(text).strip(), ref, usage
