"""Fixtures for the local sandbox: a sandbox per isolation level."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator

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
def make_sandbox(tmp_path: os.PathLike[str]) -> Iterator[Callable[..., LocalSandbox]]:
    """``make_sandbox(isolation=..., **options)``: a sandbox rooted in the test's directory.

    Its cgroups are removed after the test, whether or not the test closed it.
    """
    made: list[LocalSandbox] = []

    def make(**options: object) -> LocalSandbox:
        options.setdefault("root", os.path.join(os.fspath(tmp_path), "root"))
        sandbox = LocalSandbox(LocalSandboxOptions(**options))  # type: ignore[arg-type]
        made.append(sandbox)
        return sandbox

    yield make
    for sandbox in made:
        if sandbox.cgroups is not None:
            sandbox.cgroups.close()


@pytest.fixture
async def box(make_sandbox: Callable[..., LocalSandbox], isolation: str) -> AsyncIterator[LocalSandboxSession]:
    sandbox = make_sandbox(isolation=isolation)
    workspace = await sandbox.open(SessionInfo(f"s-{secrets.token_hex(3)}", "agent"))
    yield workspace
    await workspace.close("close")
    await sandbox.aclose()


