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

from typing import TYPE_CHECKING

from harness_kernel import hookimpl, lazy_exports
from harness_kernel.hookspecs import Register

from ._limits import LIMIT_NAMES, CommandLimits, LimitName
from ._options import DEFAULT_PATH, LocalSandboxOptions

if TYPE_CHECKING:
    from ._exec import OutputCapture
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


# The sandbox loads when one is built (or one of these names is used), not when the
# plugin is imported: every command imports every installed plugin to list it.
_MODULE_OF = {
    "LocalSandbox": "._sandbox",
    "LocalSandboxSession": "._sandbox",
    "OutputCapture": "._exec",
    "workspace_name": "._sandbox",
}


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)


def _local(options: LocalSandboxOptions) -> LocalSandbox:
    from ._sandbox import LocalSandbox

    return LocalSandbox(options)


@hookimpl
def harness_kernel_sandboxes(register: Register) -> None:
    register("local", _local, options=LocalSandboxOptions)
