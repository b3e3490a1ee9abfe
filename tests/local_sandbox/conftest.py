"""Fixtures for the local sandbox: a sandbox per isolation level."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable

import pytest

from harness_kernel.contracts import SessionInfo
from harness_kernel_local_sandbox import LocalSandbox, LocalSandboxOptions, LocalSandboxSession
from tests.local_sandbox._support import needs_bwrap

ISOLATIONS = ["none", "bwrap"]


@pytest.fixture(params=ISOLATIONS)
def isolation(request: pytest.FixtureRequest) -> str:
    if request.param == "bwrap":
        needs_bwrap()
    return str(request.param)


@pytest.fixture
def make_sandbox(tmp_path: os.PathLike[str]) -> Callable[..., LocalSandbox]:
    """``make_sandbox(isolation=..., **options)``: a sandbox rooted in the test's directory."""

    def make(**options: object) -> LocalSandbox:
        options.setdefault("root", os.path.join(os.fspath(tmp_path), "root"))
        return LocalSandbox(LocalSandboxOptions(**options))  # type: ignore[arg-type]

    return make


@pytest.fixture
async def box(make_sandbox: Callable[..., LocalSandbox], isolation: str) -> AsyncIterator[LocalSandboxSession]:
    sandbox = make_sandbox(isolation=isolation)
    workspace = await sandbox.open(SessionInfo(f"s-{secrets.token_hex(3)}", "agent"))
    yield workspace
    await workspace.close("close")
    await sandbox.aclose()


