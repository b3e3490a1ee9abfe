"""Quickstart on the embedded defaults: no API key, no files, no services.

The notes agent (notes_agent.py) talks to a scripted model, a stand-in that decides its
answers in Python, not a real LLM: it streams its answer, calls a tool that needs
approval (approved here on the user's behalf), then the store is closed and a new store
on the same storage, in this same process, picks the session up where it was. `make demo`
runs this, then the same agent deployed from harness.toml through the CLI.

To use a real model here, name the provider and the model instead of the scripted ones:
    providers=["openai"], default_model="openai/gpt-4.1-mini"   (OPENAI_API_KEY from the env)
"""

from __future__ import annotations

import trio
from notes_agent import agent, notes_model  # the same agent harness.toml deploys

from harness_kernel import MemoryStorage, create_session_store
from harness_kernel.testing import ScriptedProvider


async def turn(store, session_id: str, text: str) -> None:
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
            for message in result.messages:
                if message.role == "tool":
                    print(f"  [tool {approval.tool} ran: {message.text}]")
            print(f"notes> {result.text}")
    print()


async def main() -> None:
    storage = MemoryStorage()  # stands in for sqlite/file/s3: it outlives the stores below
    models = [ScriptedProvider({"notes": notes_model})]

    print("== a store on memory storage; the model is scripted (no LLM, no API key) ==")
    async with create_session_store(agent=agent, providers=models, default_model="scripted/notes", storage=storage) as store:
        await turn(store, "demo", "Hello there")
        await turn(store, "demo", "Remember to water the plants on Friday")
    print("\n(store closed: the session lives on in storage)")

    print("\n== a new store on the same storage (same process: a restart would look the same) ==")
    async with create_session_store(agent=agent, providers=models, default_model="scripted/notes", storage=storage) as store:
        session = await store.get_or_create("demo")
        runs = await session.runs()
        print(f"resumed session 'demo': {len(await session.history())} messages, {len(runs)} runs, "
              f"last run {runs[-1].status}")
        await turn(store, "demo", "What did I ask you to remember?")


if __name__ == "__main__":
    trio.run(main)
