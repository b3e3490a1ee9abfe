"""A run parked on an approval survives a restart of the process, on a real backend."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness_kernel import ModelRequest, ToolResultPart, create_session_store, define_agent, tool
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall

calls: list[str] = []


@tool(approval="ask", category="edit")
async def write_note(text: str) -> str:
    """Write a note."""
    calls.append(text)
    return f"wrote {len(text)} characters"


def brain(request: ModelRequest) -> Reply:
    last = request.messages[-1]
    if last.role == "user":
        return Reply(tool_calls=[ToolCall("write_note", {"text": last.text})])
    part = last.parts[0]
    assert isinstance(part, ToolResultPart)
    return Reply(text=f"Done: {part.content}.")


AGENT = define_agent(name="notes", instructions="You keep notes.", tools=[write_note])


async def approval_survives_a_restart(storage: str, options: Mapping[str, Any]) -> None:
    """Park a run on an approval, close the store, open a new one on the same storage:
    the approval is still pending, approving it runs the tool once and completes the run."""
    calls.clear()

    def open_store() -> Any:
        return create_session_store(
            agent=AGENT, providers=[ScriptedProvider({"brain": brain})], default_model="scripted/brain",
            storage=storage, storage_options=options,
        )

    async with open_store() as store:
        parked = await store.send("notes-1", "buy milk")
        assert parked.status == "waiting_approval"
        assert calls == []
    async with open_store() as store:
        await store.get_or_create("notes-1")
        (pending,) = store.pending_approvals("notes-1")
        assert (pending.tool, dict(pending.arguments)) == ("write_note", {"text": "buy milk"})
        done = await store.approve("notes-1", pending.approval_id)
        assert done is not None
        assert (done.status, done.text) == ("completed", "Done: wrote 8 characters.")
        assert calls == ["buy milk"]
    async with open_store() as store:
        session = await store.get_or_create("notes-1")
        assert store.pending_approvals("notes-1") == []
        assert [m.text for m in await session.history() if m.role == "assistant" and m.text] == [
            "Done: wrote 8 characters."
        ]
