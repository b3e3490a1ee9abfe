import tempfile, trio
from harness_kernel import ToolContext, create_session_store, define_agent, tool
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall

@tool(approval="ask")  # a person approves each call
async def write_note(ctx: ToolContext, path: str, text: str) -> str:
    """Write a note into the session's workspace."""
    await ctx.sandbox.write_file(path, text)  # confined to the workspace: no "../", no absolute paths
    return f"wrote {path}"

def model(request):  # a scripted model, no API key: calls the tool, then reports its result
    if request.messages[-1].role == "tool":
        return Reply(text=f"Done: I {request.messages[-1].text}.")
    return Reply(text="Noting that. ", tool_calls=[ToolCall("write_note", {"path": "todo.txt", "text": "water the plants"})])

async def main() -> None:
    async with create_session_store(agent=define_agent(name="notes", tools=[write_note]),
            providers=[ScriptedProvider({"notes": model})], default_model="scripted/notes",
            sandbox="local", sandbox_options={"root": tempfile.mkdtemp()}) as store:  # one workspace per session
        async with store.stream("s1", "Remind me to water the plants") as events:
            async for event in events:  # the answer streams; the run then waits for the approval
                if event.type == "text.delta":
                    print(event.text, end="", flush=True)
        [asked] = store.pending_approvals("s1")
        print(f"\n[approve {asked.tool}({dict(asked.arguments)})? yes]")
        print((await store.approve("s1", asked.approval_id)).text)

trio.run(main)
