"""Terminal output: tables, times, and the rendering of a run's events as they happen."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any, TextIO

from .._records import (
    ApprovalRequested,
    ApprovalResolved,
    Event,
    FilePart,
    ImagePart,
    Message,
    MessageAdded,
    ReasoningPart,
    RunFinished,
    RunResult,
    TextPart,
    ToolCallPart,
    ToolFinished,
    ToolResultPart,
    ToolStarted,
    Usage,
)
from ..codec import encode_run_result
from ._plain import LogOnce, print_json, table

__all__ = [
    "DIM",
    "NORMAL",
    "EventPrinter",
    "LogOnce",
    "clock",
    "colored",
    "cost_text",
    "describe_usage",
    "media_placeholder",
    "message_lines",
    "print_json",
    "short",
    "table",
]

DIM = "\x1b[2m"
NORMAL = "\x1b[22m"


def colored(out: TextIO) -> bool:
    """Whether ``out`` shows terminal styles: a terminal, and ``NO_COLOR`` unset."""
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR")


def _size(data: bytes | None) -> str:
    if data is None:
        return ""
    n = len(data)
    return f", {n} bytes" if n < 1024 else f", {n / 1024:.0f} KB"


def media_placeholder(part: ImagePart | FilePart) -> str:
    """The line an image or a file stands as in the terminal: ``[image image/png, 12 KB]``."""
    kind = "image" if isinstance(part, ImagePart) else "file"
    name = f" {part.name}" if isinstance(part, FilePart) and part.name else ""
    where = f" {part.url}" if part.url else f" ref {part.ref}" if part.ref else ""
    media = f" {part.media_type}" if part.media_type else ""
    return f"[{kind}{name}{media}{_size(part.data)}{where}]"


def _thinking(part: ReasoningPart) -> str:
    if part.redacted or not part.text:
        return "[thinking, not shown]"
    return f"[{'thinking summary' if part.summary else 'thinking'}] {part.text}"


def message_lines(message: Message, *, color: bool) -> list[str]:
    """A stored message as terminal lines, one per part: reasoning dimmed (or marked
    ``[thinking]`` without styles), images and files as placeholder lines."""
    who = message.role
    lines: list[str] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            lines.append(f"{who}> {part.text}")
        elif isinstance(part, ReasoningPart):
            text = f"{who}> {_thinking(part)}"
            lines.append(f"{DIM}{text}{NORMAL}" if color else text)
        elif isinstance(part, ImagePart | FilePart):
            lines.append(f"{who}> {media_placeholder(part)}")
        elif isinstance(part, ToolCallPart):
            lines.append(f"{who}> [tool call] {part.name} {short(dict(part.arguments), 160)}")
        elif isinstance(part, ToolResultPart):
            flag = " (error)" if part.is_error else ""
            lines.append(f"{who}> [tool result{flag}] {short(part.content, 160)}")
    return lines


def clock(ts: float | None) -> str:
    """A UTC timestamp to the second: ``2025-01-31T12:00:05Z``."""
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def short(value: Any, limit: int = 80) -> str:
    """One line of at most ``limit`` characters (JSON for non-strings)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def result_json(result: RunResult) -> dict[str, Any]:
    return encode_run_result(result)


class EventPrinter:
    """Shows a run as it happens: the answer streamed to ``out``, tool activity to
    ``notes`` (the same stream in the chat, stderr for ``send``).

    Feed it every item of a ``RunStream`` (or the durable events of a store
    subscription, for a run continued after an approval). With ``outcome=False`` a
    failed or aborted run is not noted: the caller reports the result itself.
    """

    def __init__(
        self,
        agent: str,
        out: TextIO,
        notes: TextIO,
        *,
        prefix: bool = True,
        outcome: bool = True,
        color: bool | None = None,
    ) -> None:
        self.agent = agent
        self.out = out
        self.notes = notes
        self.prefix = prefix
        self.outcome = outcome
        self.color = colored(out) if color is None else color
        self._in_text = False
        self._in_thinking = False
        self._streamed = False
        self._shown = ""

    def thinking(self, fragment: str) -> None:
        """Reasoning as it streams: its own block, dimmed (``[thinking]`` without styles)."""
        if not fragment:
            return
        if not self._in_thinking:
            self._end_text()
            lead = f"{self.agent}> " if self.prefix else ""
            self.out.write(f"{DIM}{lead}" if self.color else f"{lead}[thinking] ")
            self._in_thinking = True
        self.out.write(fragment)
        self.out.flush()

    def _end_thinking(self) -> None:
        if self._in_thinking:
            self.out.write(f"{NORMAL}\n" if self.color else "\n")
            self.out.flush()
            self._in_thinking = False

    def _end_text(self) -> None:
        self._end_thinking()
        if self._in_text:
            self.out.write("\n")
            self.out.flush()
            self._in_text = False

    def note(self, text: str) -> None:
        self._end_text()
        self.notes.write(f"  {text}\n")
        self.notes.flush()

    def text(self, fragment: str) -> None:
        self._end_thinking()
        if not self._in_text:
            if self.prefix:
                self.out.write(f"{self.agent}> ")
            self._in_text = True
        self.out.write(fragment)
        self.out.flush()

    def finish(self) -> None:
        """End the current line (call when the run's stream ended)."""
        self._end_text()

    def feed(self, item: Any) -> None:
        kind = getattr(item, "type", None)
        if kind == "text.delta":
            self._streamed = True
            self.text(item.text)
        elif kind == "reasoning.delta":
            self._streamed = True
            self.thinking(item.text)
        elif kind == "tool_call.start":
            self._end_text()
        elif isinstance(item, Event):
            self._event(item)

    def display(self, state: Any) -> None:
        """Follow a session's ``display_state``: print the part of the streaming
        assistant message not shown yet (how a run continued after an approval, which
        has no stream of its own, still shows its answer as it arrives)."""
        text = getattr(state, "current_message", "")
        if not isinstance(text, str):
            return
        new = text[len(self._shown) :] if text.startswith(self._shown) else text
        if new:
            self._streamed = True
            self.text(new)
        self._shown = text

    def _event(self, event: Event) -> None:
        payload = event.payload
        if isinstance(payload, MessageAdded):
            message = payload.message
            if message.role == "assistant":
                # Text already streamed as deltas is not shown twice.
                if not self._streamed:
                    for thought in message.reasoning:
                        self.thinking(_thinking(thought).partition("] ")[2] or "…")
                    if message.text:
                        self.text(message.text)
                self._end_text()
                for media in message.parts:
                    if isinstance(media, ImagePart | FilePart):
                        self.out.write(f"{media_placeholder(media)}\n")
                self._streamed = False
                self._shown = ""
        elif isinstance(payload, ToolStarted):
            self.note(f"[tool] {payload.name} {short(dict(payload.arguments), 160)}")
        elif isinstance(payload, ToolFinished):
            label = "done" if payload.outcome == "ok" else payload.outcome
            self.note(f"[{label}] {payload.name}: {short(payload.result.content, 160)}")
        elif isinstance(payload, ApprovalRequested):
            self.note(f"[approval needed] {payload.tool} {short(dict(payload.arguments), 160)}")
        elif isinstance(payload, ApprovalResolved):
            verdict = (
                "approved" if payload.approved else f"denied: {payload.reason or 'no reason given'}"
            )
            remembered = f" (always for this {payload.remember})" if payload.remember else ""
            self.note(f"[{verdict}]{remembered}")
        elif isinstance(payload, RunFinished):
            self._end_text()
            if not self.outcome:
                return
            if payload.status == "failed" and payload.error is not None:
                self.note(f"[run failed] {payload.error.message} ({payload.error.code})")
            elif payload.status == "aborted":
                self.note("[run aborted]")


def cost_text(usage: Usage) -> str:
    """``$0.0123`` (to the hundredth of a cent), or ``-`` when no price was known."""
    return "-" if usage.cost is None else f"${usage.cost:.4f}"


def describe_usage(usage: Usage) -> str:
    """``1200 tokens (1000 in / 200 out), $0.0030``; the cost only when it is known."""
    text = f"{usage.total_tokens} tokens ({usage.input_tokens} in / {usage.output_tokens} out)"
    return text if usage.cost is None else f"{text}, {cost_text(usage)}"


def describe_labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"
