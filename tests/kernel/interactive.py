"""A scripted agent for the human-in-the-loop tests: the user's words pick the behaviour."""

from __future__ import annotations

from typing import Any

import trio

from harness_kernel import (
    Message,
    ModelRequest,
    ToolContext,
    ToolResultPart,
    ask_user,
    define_agent,
    tool,
)
from harness_kernel.testing import Reply, ToolCall

GATES: dict[str, trio.Event] = {}


@tool(approval="ask", category="edit")
def write(path: str) -> str:
    """Write a file (needs approval)."""
    return f"wrote {path}"


@tool(approval="ask", category="edit", approval_timeout=30)
def publish(target: str) -> str:
    """Publish (needs approval within 30 seconds)."""
    return f"published {target}"


@tool(category="read")
def read(path: str) -> str:
    """Read a file."""
    return f"content of {path}"


@tool(approval=lambda args: "ask" if args["amount"] > 100 else "auto")
def pay(amount: int) -> str:
    """Pay an amount (large amounts need approval)."""
    return f"paid {amount}"


@tool
async def wait(ctx: ToolContext, gate: str) -> str:
    """Wait until the test opens ``gate``."""
    await GATES.setdefault(gate, trio.Event()).wait()
    return f"gate {gate} opened"


@tool
async def confirm(ctx: ToolContext, what: str) -> str:
    """Ask the host to confirm, by suspending."""
    await ctx.suspend({"confirm": what})


AGENT = define_agent(name="hitl", tools=[write, publish, read, pay, wait, confirm, ask_user])


def brain(request: ModelRequest) -> Reply:
    """``tool:<name>:<json-ish arg>`` calls tools (``;``-separated); else echoes."""
    last = request.messages[-1]
    if last.role == "tool":
        results = []
        for message in reversed(request.messages):
            if message.role != "tool":
                break
            part = message.parts[0]
            assert isinstance(part, ToolResultPart)
            results.append(part.content)
        return Reply(text="tool said: " + " | ".join(reversed(results)))
    text = last.text
    if text.startswith("tools:"):
        calls = []
        for spec in text.removeprefix("tools:").split(";"):
            name, _, arg = spec.partition("=")
            key = {"write": "path", "publish": "target", "read": "path", "pay": "amount", "wait": "gate",
                   "confirm": "what", "ask_user": "question"}[name]
            value: Any = int(arg) if name == "pay" else arg
            calls.append(ToolCall(name, {key: value}))
        return Reply(tool_calls=calls)
    users = [m.text for m in request.messages if m.role == "user"]
    return Reply(text=f"echo: {text} (user messages so far: {len(users)})")


def user_texts(messages: list[Message]) -> list[str]:
    return [m.text for m in messages if m.role == "user"]
