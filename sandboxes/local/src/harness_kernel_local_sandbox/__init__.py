"""The ``local`` sandbox: a work directory per session on this host, commands as subprocesses.

Configure it with ``create_session_store(sandbox="local", sandbox_options={...})`` or in
``harness.toml`` under ``[sandbox]``; the options are ``LocalSandboxOptions``. Isolation
``"none"`` runs commands as the host user with a minimal environment; ``"bwrap"`` runs
them inside bubblewrap (read-only system, writable work directory, no network, own
PID namespace). Every command runs under ``CommandLimits`` (CPU, memory, processes,
file size, open files) and each work directory under a disk quota; ``ExecResult.limit``
names the limit that stopped a command. See ``docs/sandboxes.md``.
"""

from __future__ import annotations

from harness_kernel import hookimpl
from harness_kernel.hookspecs import Register

from ._exec import OutputCapture
from ._limits import LIMIT_NAMES, CommandLimits, LimitName
from ._options import DEFAULT_PATH, LocalSandboxOptions
from ._sandbox import LocalSandbox, LocalSandboxSession, workspace_name

__all__ = [
    "DEFAULT_PATH",
    "LIMIT_NAMES",
    "CommandLimits",
    "LimitName",
    "LocalSandbox",
    "LocalSandboxOptions",
    "LocalSandboxSession",
    "OutputCapture",
    "workspace_name",
]


@hookimpl
def harness_kernel_sandboxes(register: Register) -> None:
    register("local", LocalSandbox, options=LocalSandboxOptions)
