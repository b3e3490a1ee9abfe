"""The local sandbox as a plugin: conformance, configuration errors, and its life in a store."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from harness_kernel import create_session_store, define_agent, tool
from harness_kernel.errors import ConfigError
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall, check_sandbox
from harness_kernel_local_sandbox import LocalSandbox, LocalSandboxOptions, workspace_name
from tests.local_sandbox._support import bwrap_problem, needs_bwrap

ALL_CHECKS = [
    "files_round_trip",
    "list_dir_is_sorted_with_kinds",
    "missing_file_is_a_sandbox_error",
    "escaping_paths_are_refused",
    "exec_runs_argv_and_shell_commands",
    "exec_timeout_kills_the_command",
    "exec_cwd_is_confined",
    "close_is_idempotent_and_the_workspace_survives_it",
    "destroy_removes_the_workspace",
]


async def test_check_sandbox_passes(tmp_path: Path, isolation: str) -> None:
    """Every check of the sandbox contract passes, at each isolation level."""
    root = str(tmp_path / "root")
    passed = await check_sandbox(lambda: LocalSandbox(LocalSandboxOptions(root=root, isolation=isolation)))
    assert passed == ALL_CHECKS
    assert os.listdir(root) == []


@tool(approval="auto")
async def note(ctx, text: str) -> str:
    """Write a note into the workspace."""
    await ctx.sandbox.write_file("notes/note.txt", text)
    result = await ctx.sandbox.exec(["cat", "notes/note.txt"])
    return result.stdout


def _write_note(request):
    if request.messages[-1].role == "tool":
        return Reply(text=request.messages[-1].parts[0].content)
    return Reply(tool_calls=[ToolCall("note", {"text": "remember the milk"})])


async def test_workspace_lives_with_the_session_and_goes_with_delete(tmp_path: Path) -> None:
    """Through a store: a tool's file persists across close and reload, and delete removes it."""
    agent = define_agent(name="notes", instructions="", tools=[note])
    root = tmp_path / "workspaces"
    async with create_session_store(
        agent=agent,
        providers=[ScriptedProvider({"notes": _write_note})],
        default_model="scripted/notes",
        sandbox="local",
        sandbox_options={"root": str(root)},
    ) as store:
        assert any(p.kind == "sandbox" and p.name == "local" and p.distribution == "harness-kernel-local-sandbox"
                   for p in store.plugins())
        result = await store.send("Customer-42", "note this")
        assert result.text == "remember the milk"
        workdir = root / workspace_name("Customer-42")
        assert (workdir / "notes" / "note.txt").read_text() == "remember the milk"
        await store.close("Customer-42")
        assert (workdir / "notes" / "note.txt").exists()
        await store.get_or_create("Customer-42")
        assert (workdir / "notes" / "note.txt").read_text() == "remember the milk"
        await store.delete("Customer-42")
        assert not workdir.exists()
        assert os.listdir(root) == []


async def test_bad_options_fail_at_store_start_with_their_path(tmp_path: Path) -> None:
    """Invalid options are a ConfigError naming the option, raised by create_session_store."""
    agent = define_agent(name="a", instructions="")
    a_file = tmp_path / "file"
    a_file.write_text("")
    cases = [
        ({"isolation": "docker"}, "sandbox.options.isolation"),
        ({"root": str(a_file)}, "sandbox.options.root"),
        ({"max_output_bytes": 10}, "sandbox.options.max_output_bytes: must be at least 1024"),
        ({"default_timeout": -1}, "sandbox.options.default_timeout: "),
        ({"ro_binds": ["relative/path"]}, "sandbox.options.ro_binds[0]: 'relative/path' must be an absolute path"),
        ({"env": {"A=B": "x"}}, "sandbox.options.env: 'A=B' is not a variable name"),
        ({"env_allow": ["OK", "A\x00"]}, "sandbox.options.env_allow[1]: "),
        ({"rooot": "x"}, "rooot"),
    ]
    for options, where in cases:
        with pytest.raises(ConfigError, match=re.escape(where)):
            async with create_session_store(agent=agent, sandbox="local", sandbox_options=options):
                pass


async def test_missing_bubblewrap_fails_at_store_start(tmp_path: Path) -> None:
    """isolation = 'bwrap' without bubblewrap is a clear ConfigError when the store starts."""
    agent = define_agent(name="a", instructions="")
    options = {"root": str(tmp_path), "isolation": "bwrap", "bwrap": "/nonexistent/bwrap"}
    with pytest.raises(ConfigError, match=r"needs bubblewrap.*'/nonexistent/bwrap' was not found"):
        async with create_session_store(agent=agent, sandbox="local", sandbox_options=options):
            pass


async def test_unusable_bubblewrap_fails_at_store_start_with_its_reason(tmp_path: Path) -> None:
    """A bwrap that cannot create namespaces (a stand-in script failing as bwrap does when user
    namespaces are disabled) is a ConfigError at store start carrying bwrap's message."""
    agent = define_agent(name="a", instructions="")
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    options = {"root": str(tmp_path / "root"), "isolation": "bwrap", "bwrap": str(fake)}
    with pytest.raises(ConfigError, match="cannot create a sandbox on this host: bwrap: No permissions"):
        async with create_session_store(agent=agent, sandbox="local", sandbox_options=options):
            pass


def test_bwrap_works_here_or_the_reason_is_reported() -> None:
    """Reports whether this host can run the bwrap tests (skipped, with bwrap's reason, if not)."""
    needs_bwrap()
    assert bwrap_problem() is None
