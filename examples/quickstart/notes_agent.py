"""The notes agent that harness.toml deploys, and the scripted model it talks to.

Everything else (storage, providers, logging) comes from the configuration file. The
``demo`` model provider registered below stands in for a real model, so the quickstart
needs no API key: it streams its answer, asks to save a note (a tool that needs the
user's approval) and remembers what was saved across restarts, because the history lives
in the configured storage.
"""

from __future__ import annotations

from harness_kernel import ModelRequest, ToolResultPart, define_agent, hookimpl, tool
from harness_kernel.hookspecs import Register
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall


@tool(approval="ask", category="edit")
async def save_note(title: str, text: str) -> str:
    """Save a note for the user.

    Args:
        title: a short title
        text: the note itself
    """
    return f"saved note '{title}' ({len(text)} characters)"


agent = define_agent(
    name="notes",
    instructions="You keep the user's notes. Save a note when asked to remember something.",
    tools=[save_note],
)


def notes_model(request: ModelRequest) -> Reply:
    """A scripted stand-in for a real model, deciding from the conversation so far."""
    last = request.messages[-1]
    if last.role == "tool":
        result = last.parts[0]
        assert isinstance(result, ToolResultPart)
        if result.is_error:
            return Reply(text=f"I could not save it: {result.content}")
        return Reply(text=f"Done: {result.content}. Anything else?")
    text = last.text.strip()
    if text.lower().startswith("remember"):
        note = text.split(" ", 1)[1] if " " in text else text
        return Reply(
            text="Let me write that down.",
            tool_calls=[ToolCall("save_note", {"title": "reminder", "text": note})],
        )
    saved = [
        part.content
        for message in request.messages
        if message.role == "tool"
        for part in message.parts
        if isinstance(part, ToolResultPart) and not part.is_error
    ]
    if not saved:
        return Reply(text="Hello! I keep notes for you. Ask me to remember something.")
    return Reply(text=f"You have {len(saved)} note(s): {'; '.join(saved)}.")


@hookimpl
def harness_kernel_providers(register: Register) -> None:
    """Register the ``demo`` provider, serving the model ref ``demo/notes``."""
    register("demo", lambda: ScriptedProvider({"notes": notes_model}, name="demo"))
