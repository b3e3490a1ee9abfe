"""Quickstart on the embedded defaults: no API key, no files, no services.

A notes agent talks through the scripted model: it streams its answer, calls a tool that
needs approval (approved here on the user's behalf), then the store is closed and a new
one, on the same storage, picks the session up where it was. Run it with `make demo`.

To use a real model, install harness-kernel-openai and change one line:
    providers=["scripted"] -> providers=[{"plugin": "openai", "options": {}}]
and default_model to e.g. "openai/gpt-4.1-mini" (OPENAI_API_KEY is read from the env).
"""

from __future__ import annotations

import trio

from harness_kernel import (
    MemoryStorage,
    ModelRequest,
    ToolResultPart,
    create_session_store,
    define_agent,
    tool,
)
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall


@tool(approval="ask", category="edit")
async def save_note(title: str, text: str) -> str:
    """Save a note for the user.

    Args:
        title: a short title
        text: the note itself
    """
    return f"saved note '{title}' ({len(text)} characters)"


def notes_model(request: ModelRequest) -> Reply:
    """A scripted stand-in for a real model, deciding from the conversation so far."""
    last = request.messages[-1]
    if last.role == "tool":
        result = last.parts[0]
        assert isinstance(result, ToolResultPart)
        return Reply(text=f"Done: {result.content}. Anything else?")
    question = last.text
    if question.lower().startswith("remember"):
        note = question.split(" ", 1)[1]
        return Reply(text="Let me write that down. ", tool_calls=[ToolCall("save_note", {"title": "reminder", "text": note})])
    saved = [
        m.parts[0].content
        for m in request.messages
        if m.role == "tool" and isinstance(m.parts[0], ToolResultPart) and not m.parts[0].is_error
    ]
    return Reply(text=f"So far I have {len(saved)} note(s): {'; '.join(saved) or 'none'}.")


agent = define_agent(
    name="notes",
    instructions="You keep the user's notes.",
    tools=[save_note],
)


async def turn(store, session_id: str, text: str) -> None:  # noqa: ANN001
    print(f"\nuser> {text}")
    print("notes> ", end="", flush=True)
    async with store.stream(session_id, text) as events:
        async for event in events:
            if event.type == "text.delta":
                print(event.text, end="", flush=True)
            elif event.type == "tool.started":
                print(f"\n  [tool {event.payload.name}({dict(event.payload.arguments)})]", flush=True)
            elif event.type == "tool.finished":
                print(f"  [tool result: {event.payload.result.content}]\nnotes> ", end="", flush=True)
    result = events.result
    while result is not None and result.status == "waiting_approval":
        session = store.get(session_id)
        for approval in session.pending_approvals:
            print(f"\n  [approval needed: {approval.tool}({dict(approval.arguments)}) -> approving]")
            result = await session.approve(approval.approval_id) or result
            print(f"notes> {result.text}")
    print()


async def main() -> None:
    storage = MemoryStorage()  # stands in for sqlite/file/s3: it outlives the stores below
    models = [ScriptedProvider({"notes": notes_model})]

    print("== first process ==")
    async with create_session_store(agent=agent, providers=models, default_model="scripted/notes", storage=storage) as store:
        await turn(store, "demo", "Hello there")
        await turn(store, "demo", "Remember to water the plants on Friday")
    print("\n(store closed: the session lives on in storage)")

    print("\n== second process ==")
    async with create_session_store(agent=agent, providers=models, default_model="scripted/notes", storage=storage) as store:
        session = await store.get_or_create("demo")
        runs = await session.runs()
        print(f"resumed session 'demo': {len(await session.history())} messages, {len(runs)} runs, "
              f"last run {runs[-1].status}")
        await turn(store, "demo", "What do you have for me?")


if __name__ == "__main__":
    trio.run(main)
