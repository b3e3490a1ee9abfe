"""Fixtures for the tool kits: a real local workspace and a way to call tools on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from harness_kernel import Tool, ToolContext
from harness_kernel.contracts import SandboxSession, SessionInfo
from harness_kernel_local_sandbox import LocalSandbox, LocalSandboxOptions, LocalSandboxSession
from harness_kernel_tools import FilesKitOptions, ShellKitOptions, files_kit, shell_kit


class Kit:
    """Calls tools the way the run loop does: validate the model's arguments, then invoke."""

    def __init__(self, tools: Sequence[Tool], sandbox: SandboxSession) -> None:
        self.tools = {t.name: t for t in tools}
        self.sandbox = sandbox

    async def __call__(self, name: str, **arguments: Any) -> str:
        tool = self.tools[name]
        validated = tool.validate(arguments)
        ctx = ToolContext(
            session_id="s", run_id="r", call_id="c", tool_name=name, sandbox=self.sandbox,
            resources={}, labels={}, state=None, log=None,
        )
        return await tool.invoke(ctx, validated)


@pytest.fixture
async def workspace(tmp_path: Path) -> AsyncIterator[LocalSandboxSession]:
    sandbox = LocalSandbox(LocalSandboxOptions(root=str(tmp_path / "root")))
    box = await sandbox.open(SessionInfo("tools", "agent"))
    yield box
    await box.close("close")
    await sandbox.aclose()


@pytest.fixture
def files(workspace: LocalSandboxSession) -> Kit:
    return Kit(files_kit(), workspace)


@pytest.fixture
def make_files(workspace: LocalSandboxSession):
    return lambda **options: Kit(files_kit(FilesKitOptions(**options)), workspace)


@pytest.fixture
def shell(workspace: LocalSandboxSession) -> Kit:
    return Kit(shell_kit(), workspace)


@pytest.fixture
def make_shell(workspace: LocalSandboxSession):
    return lambda **options: Kit(shell_kit(ShellKitOptions(**options)), workspace)
