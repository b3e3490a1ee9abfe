from __future__ import annotations

import secrets
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

AGENT = textwrap.dedent(
    '''
    from harness_kernel import define_agent, hookimpl, tool
    from harness_kernel.testing import ScriptedProvider


    @tool
    async def lookup(q: str) -> str:
        """Look a word up."""
        return q


    agent = define_agent(name="cfg", tools=[lookup])
    not_an_agent = 42


    @hookimpl
    def harness_kernel_providers(register):
        register("extra", lambda: ScriptedProvider({}, name="extra"))
    '''
)


class Deployment:
    """A directory with a uniquely named agent module and a writer for harness.toml."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.module = f"cfg_agent_{secrets.token_hex(4)}"
        (directory / f"{self.module}.py").write_text(AGENT)

    def write(self, text: str, name: str = "harness.toml") -> Path:
        path = self.directory / name
        path.write_text(textwrap.dedent(text).replace("MODULE", self.module))
        return path


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_config puts the config's directory on sys.path; keep that within a test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    return Deployment(tmp_path)


@pytest.fixture
def write(deployment: Deployment) -> Callable[..., Path]:
    return deployment.write
