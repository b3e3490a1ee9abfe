"""The agent the service tests deploy: a scripted shop model, a tool that needs an
approval, a tool that suspends, and a slow storyteller for streams cut mid-run."""

from __future__ import annotations

import trio
import trio.lowlevel

from harness_kernel import (
    Finish,
    ModelRequest,
    TextDelta,
    ToolResultPart,
    ask_user,
    define_agent,
    hookimpl,
    tool,
)
from harness_kernel.hookspecs import Register
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall


@tool(approval="ask", category="payments")
def refund(order: str) -> str:
    """Refund an order (a person approves first)."""
    return f"refunded {order}"


@tool
async def tick(n: int) -> str:
    """Count one step (slowly enough that a follower sees the run live)."""
    await trio.sleep(0.01)
    return f"tick {n}"


agent = define_agent(name="shop", tools=[refund, ask_user, tick])


def shop_model(request: ModelRequest) -> Reply:
    """``refund <order>`` calls the refund tool; ``ask`` suspends on a question;
    ``ticks N`` calls ``tick`` N times, one model step each, then answers."""
    last = request.messages[-1]
    asked = next(m for m in reversed(request.messages) if m.role == "user")
    if asked.text.startswith("ticks "):
        since = request.messages[request.messages.index(asked) :]
        done = sum(1 for m in since if m.role == "tool")
        if done < int(asked.text.split()[1]):
            return Reply(text=f"step {done + 1}. ", tool_calls=[ToolCall("tick", {"n": done + 1})])
        return Reply(text=f"ticked {done}")
    if last.role == "tool":
        part = last.parts[0]
        assert isinstance(part, ToolResultPart)
        return Reply(text=f"Done: {part.content}")
    if last.text.startswith("refund "):
        return Reply(tool_calls=[ToolCall("refund", {"order": last.text.split()[1]})])
    if last.text == "ask":
        return Reply(tool_calls=[ToolCall("ask_user", {"question": "which colour?"})])
    return Reply(text=f"You said: {last.text}")


async def words(request: ModelRequest):  # type: ignore[no-untyped-def]
    """``count N``: N words, one delta each, a checkpoint between them; ``slow``: a word
    every 50 ms for a long time (a run that is still going when it is aborted)."""
    text = request.messages[-1].text
    if text.startswith("count "):
        for number in range(int(text.split()[1])):
            yield TextDelta(f"w{number} ")
            await trio.lowlevel.checkpoint()
    else:
        for number in range(2000):
            yield TextDelta(f"slow{number} ")
            await trio.sleep(0.05)
    yield Finish("stop")


@hookimpl
def harness_kernel_providers(register: Register) -> None:
    register("shop", lambda: ScriptedProvider({"shop": shop_model, "words": words}, name="shop"))
