"""The agent the host-facade tests drive (harness_kernel.asyncio and .sync alike).

The user's words pick the behaviour, as in the trio tests: ``write:<path>`` asks for
approval, ``wait:<gate>`` runs a tool that waits until the test opens the gate, ``slow``
streams "partial " and stalls; anything else is echoed. A gate is opened from the
host's side of the kernel (an asyncio task or a plain thread) through the trio token
the tool recorded, so no test sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import trio

from harness_kernel import Finish, ModelRequest, TextDelta, ToolResultPart, define_agent, tool
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall


class Gates:
    """Named gates a tool waits on and a host opens, in either order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[trio.Event, trio.lowlevel.TrioToken]] = {}
        self._opened: set[str] = set()

    async def wait(self, name: str) -> None:
        event = trio.Event()
        with self._lock:
            if name in self._opened:  # opened before the tool got here
                self._opened.discard(name)
                return
            self._waiting[name] = (event, trio.lowlevel.current_trio_token())
        await event.wait()

    def open(self, name: str) -> None:
        """Let one waiter of ``name`` through (now, or when it arrives)."""
        with self._lock:
            waiting = self._waiting.pop(name, None)
            if waiting is None:
                self._opened.add(name)
        if waiting is not None:
            event, token = waiting
            token.run_sync_soon(event.set)


GATES = Gates()


@tool(approval="ask", category="edit")
def write(path: str) -> str:
    """Write a file (needs approval)."""
    return f"wrote {path}"


@tool
async def wait(gate: str) -> str:
    """Wait until the test opens ``gate``."""
    await GATES.wait(gate)
    return f"gate {gate} opened"


AGENT = define_agent(name="hosts", tools=[write, wait])


def brain(request: ModelRequest) -> Reply:
    last = request.messages[-1]
    if last.role == "tool":
        part = last.parts[0]
        assert isinstance(part, ToolResultPart)
        return Reply(text=f"tool said: {part.content}")
    name, _, argument = last.text.partition(":")
    if name == "write":
        return Reply(tool_calls=[ToolCall("write", {"path": argument})])
    if name == "wait":
        return Reply(tool_calls=[ToolCall("wait", {"gate": argument})])
    return Reply(text=last.text)


async def slow(_request: ModelRequest) -> AsyncIterator[Any]:
    """Streams "partial " and stalls until aborted."""
    yield TextDelta("partial ")
    await trio.sleep_forever()
    yield Finish("stop")


def store_options(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments for any facade's create_session_store."""
    options: dict[str, Any] = {
        "agent": AGENT,
        "providers": [ScriptedProvider({"main": brain, "slow": slow})],
        "default_model": "scripted/main",
        "autoload_plugins": False,
    }
    options.update(overrides)
    return options
