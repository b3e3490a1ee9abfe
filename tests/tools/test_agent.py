"""The kits inside real agent runs: a scripted model uses them, people approve, events record it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from harness_kernel import ModelRequest, ToolResultPart, create_session_store, define_agent
from harness_kernel.errors import ConfigError
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall
from harness_kernel_local_sandbox import workspace_name

SCRIPT = [
    ToolCall("write_file", {"path": "greet.sh", "content": 'echo "hello, world"\n'}),
    ToolCall("edit_file", {"path": "greet.sh", "old_text": "hello, world", "new_text": "hello, harness"}),
    ToolCall("grep", {"pattern": r"hello, \w+", "glob": "*.sh"}),
    ToolCall("shell", {"command": "sh greet.sh"}),
]


def tool_results(request: ModelRequest) -> list[ToolResultPart]:
    return [p for m in request.messages for p in m.parts if isinstance(p, ToolResultPart)]


def step_by_step(request: ModelRequest) -> Reply:
    """One tool call per model step, in SCRIPT order; then report every result."""
    results = tool_results(request)
    if len(results) < len(SCRIPT):
        return Reply(tool_calls=[SCRIPT[len(results)]])
    return Reply(text="\n---\n".join(f"{'ERROR ' if r.is_error else ''}{r.content}" for r in results))


def store_for(tmp_path: Path, **kwargs: Any):
    agent = define_agent(name="coder", instructions="You write scripts.", tools=["files", "shell"])
    kwargs.setdefault("sandbox", "local")
    if kwargs["sandbox"] == "local":
        kwargs.setdefault("sandbox_options", {"root": str(tmp_path / "workspaces")})
    return create_session_store(
        agent=agent,
        providers=[ScriptedProvider({"coder": step_by_step})],
        default_model="scripted/coder",
        **kwargs,
    )


async def test_agent_writes_edits_greps_and_runs_a_file_with_approvals(tmp_path: Path) -> None:
    """Edits and commands wait for approval (read tools do not); once approved, the file is
    written, edited, found and run, and the log records each request and decision."""
    async with store_for(tmp_path) as store:
        session = await store.create("dev-1")
        result = await session.send("Make a greeting script and run it.")
        asked = []
        while result is not None and result.status == "waiting_approval":
            (pending,) = session.pending_approvals
            asked.append((pending.tool, pending.category))
            result = await session.approve(pending.approval_id)
        assert result is not None
        assert result.status == "completed", result.error
        assert asked == [("write_file", "edit"), ("edit_file", "edit"), ("shell", "execute")]
        assert result.text.split("\n---\n") == [
            "wrote 20 bytes to 'greet.sh'",
            "replaced 1 occurrence in 'greet.sh' (first at line 1)",
            'greet.sh:1: echo "hello, harness"',
            "exit code: 0\nstdout:\nhello, harness",
        ]
        script = tmp_path / "workspaces" / workspace_name("dev-1") / "greet.sh"
        assert script.read_text() == 'echo "hello, harness"\n'

        events = [e for e in await store.storage.read("dev-1")]
        requested = [e.payload for e in events if e.type == "approval.requested"]
        resolved = [e.payload for e in events if e.type == "approval.resolved"]
        assert [(r.tool, r.category) for r in requested] == asked
        assert [(r.approval_id, r.approved) for r in resolved] == [(r.approval_id, True) for r in requested]
        in_run = await session.run_events(result.run_id)
        assert [e.payload.tool for e in in_run if e.type == "approval.requested"] == [t for t, _ in asked]
        finished = [(e.payload.name, e.payload.outcome) for e in in_run if e.type == "tool.finished"]
        assert finished == [(c.name, "ok") for c in SCRIPT]


async def test_a_denied_command_does_not_run(tmp_path: Path) -> None:
    """Denying the shell call tells the model why, and the command never ran."""
    async with store_for(tmp_path, tool_options={"files": {"approvals": {"edit": "auto"}}}) as store:
        session = await store.create("dev-2")
        result = await session.send("go")
        assert result.status == "waiting_approval"
        (pending,) = session.pending_approvals
        assert (pending.tool, pending.arguments) == ("shell", {"command": "sh greet.sh"})
        result = await session.deny(pending.approval_id, "not on my machine")
        assert result is not None
        assert result.status == "completed"
        assert result.text.split("\n---\n")[-1] == "ERROR the user denied this call: not on my machine"


async def test_approvals_can_be_configured_per_category(tmp_path: Path) -> None:
    """Trusted setups set edit and execute to 'auto' (nothing waits); 'deny' refuses by policy."""
    trusted = {"files": {"approvals": {"edit": "auto"}}, "shell": {"approvals": {"execute": "auto"}}}
    async with store_for(tmp_path, tool_options=trusted) as store:
        result = await store.send("ci-1", "go")
        assert result.status == "completed"
        assert result.text.endswith("exit code: 0\nstdout:\nhello, harness")
    locked = {"files": {"approvals": {"edit": "auto"}}, "shell": {"approvals": {"execute": "deny"}}}
    async with store_for(tmp_path, tool_options=locked) as store:
        result = await store.send("ci-2", "go")
        assert result.status == "completed"
        assert result.text.split("\n---\n")[-1] == "ERROR tool 'shell' is not allowed here (denied by policy)"


async def test_without_a_sandbox_every_tool_reports_the_sandbox_error(tmp_path: Path) -> None:
    """With the default noop sandbox, the kit's tools return the sandbox's clear error to the model."""
    trusted = {"files": {"approvals": {"edit": "auto"}}, "shell": {"approvals": {"execute": "auto"}}}
    async with store_for(tmp_path, sandbox="noop", tool_options=trusted) as store:
        result = await store.send("nobox", "go")
    assert result.status == "completed"
    for content in result.text.split("\n---\n"):
        assert content.startswith("ERROR no sandbox is configured for this agent")


async def test_kits_are_listed_and_their_options_checked_at_start(tmp_path: Path) -> None:
    """Both kits appear in the plugin listing; bad kit options fail the store start with a path."""
    async with store_for(tmp_path) as store:
        kits = {(p.name, p.distribution) for p in store.plugins() if p.kind == "tools"}
        assert {("files", "harness-kernel-tools"), ("shell", "harness-kernel-tools")} <= kits
    bad = [
        ({"files": {"approvals": {"execute": "auto"}}}, "tools.files.options.approvals: unknown category 'execute' (this kit has: read, edit)"),
        ({"files": {"approvals": {"read": "sometimes"}}}, "tools.files.options.approvals['read']: expected one of 'auto', 'ask', 'deny'"),
        ({"shell": {"default_timeout": 0}}, "tools.shell.options.default_timeout: must be a positive number of seconds"),
        ({"shell": {"timeout": 5}}, "tools.shell.options: unknown key"),
    ]
    for options, message in bad:
        with pytest.raises(ConfigError, match=re.escape(message)):
            async with store_for(tmp_path, tool_options=options):
                pass


AGENT_MODULE = '''
from harness_kernel import define_agent, hookimpl
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall


def write_then_answer(request):
    if request.messages[-1].role == "tool":
        return Reply(text=request.messages[-1].parts[0].content)
    return Reply(tool_calls=[ToolCall("write_file", {"path": "from-config.txt", "content": "configured"})])


agent = define_agent(name="configured", instructions="", tools=["files", "shell"])


@hookimpl
def harness_kernel_providers(register):
    register("coder", lambda: ScriptedProvider({"m": write_then_answer}, name="coder"))
'''


def write_config(tmp_path: Path, module: str, tools_table: str) -> Path:
    (tmp_path / f"{module}.py").write_text(AGENT_MODULE)
    config = tmp_path / "harness.toml"
    config.write_text(
        f'agent = "{module}:agent"\n'
        'default_model = "coder/m"\n'
        f'[[plugins]]\nmodule = "{module}"\n'
        '[[providers]]\nplugin = "coder"\n'
        f'[sandbox]\nplugin = "local"\noptions = {{ root = "{tmp_path / "ws"}" }}\n'
        f"{tools_table}"
    )
    return config


async def test_kits_from_a_config_file(tmp_path: Path) -> None:
    """harness.toml names the sandbox and the kits' options; a bad kit option is reported by
    load_config with its key path, before anything is built."""
    from harness_kernel.config import ConfigFileError, load_config, open_store_from_config

    config = write_config(tmp_path, "hk_tools_config_ok", '[tools.files]\noptions = { approvals = { edit = "auto" } }\n')
    async with open_store_from_config(config) as store:
        result = await store.send("from-config", "go")
    assert (result.status, result.text) == ("completed", "wrote 10 bytes to 'from-config.txt'")
    assert (tmp_path / "ws" / workspace_name("from-config") / "from-config.txt").read_text() == "configured"

    bad = write_config(tmp_path, "hk_tools_config_bad", '[tools.files]\noptions = { approvals = { execute = "auto" } }\n')
    with pytest.raises(ConfigFileError) as caught:
        load_config(bad)
    assert caught.value.errors == (
        "tools.files.options.approvals: unknown category 'execute' (this kit has: read, edit)",
    )
