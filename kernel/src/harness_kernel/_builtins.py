"""The kernel's builtin plugins, registered exactly as a third party registers its own.

Each implementation is ``trylast`` so that an installed plugin registering the same name
wins. These are always loaded, even with autoload disabled or an allow-list set.
"""

from __future__ import annotations

from typing import ClassVar

from ._memory import MemoryLogSink, MemoryLogSinkOptions, MemoryStorage
from ._scripted import ScriptedProvider
from .contracts import (
    DirEntry,
    ExecResult,
    RetryPolicy,
    Sandbox,
    SandboxCapabilities,
    SandboxSession,
    SessionInfo,
)
from .errors import SandboxUnavailable
from .hookspecs import Register, hookimpl

_NO_SANDBOX = (
    "no sandbox is configured for this agent: tools cannot run commands or touch files "
    "(configure a sandbox such as 'local')"
)


class NoopSandboxSession(SandboxSession):
    """Refuses every operation with ``SandboxUnavailable``; tools report it to the model."""

    async def exec(self, command, *, cwd=None, env=None, stdin=None, timeout=None) -> ExecResult:  # type: ignore[no-untyped-def]
        raise SandboxUnavailable(_NO_SANDBOX)

    async def read_file(self, path: str) -> bytes:
        raise SandboxUnavailable(_NO_SANDBOX)

    async def write_file(self, path: str, content: bytes | str) -> None:
        raise SandboxUnavailable(_NO_SANDBOX)

    async def list_dir(self, path: str = ".") -> list[DirEntry]:
        raise SandboxUnavailable(_NO_SANDBOX)

    async def close(self, reason: str) -> None:
        return None


class NoopSandbox(Sandbox):
    """The default sandbox: no workspace at all."""

    capabilities: ClassVar[SandboxCapabilities] = SandboxCapabilities(exec=False, files=False)

    async def open(self, session: SessionInfo) -> SandboxSession:
        return NoopSandboxSession()

    async def destroy(self, session_id: str) -> None:
        return None


class NoRetry(RetryPolicy):
    """Never retries; the default until a retry plugin is installed."""

    def next_delay(self, error: BaseException, attempt: int) -> float | None:
        return None


@hookimpl(trylast=True)
def harness_kernel_storage(register: Register) -> None:
    register("memory", MemoryStorage)


@hookimpl(trylast=True)
def harness_kernel_sandboxes(register: Register) -> None:
    register("noop", NoopSandbox)


@hookimpl(trylast=True)
def harness_kernel_providers(register: Register) -> None:
    register("scripted", ScriptedProvider)


@hookimpl(trylast=True)
def harness_kernel_log_sinks(register: Register) -> None:
    register(
        "memory", lambda o: MemoryLogSink(max_records=o.max_records), options=MemoryLogSinkOptions
    )


@hookimpl(trylast=True)
def harness_kernel_retry_policies(register: Register) -> None:
    register("none", NoRetry)
