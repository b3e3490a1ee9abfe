"""File and shell tools for harness-kernel agents: the ``files`` and ``shell`` kits.

An agent adds a kit by name: ``define_agent(tools=["files", "shell"])``. The tools work
through the session's sandbox (``ctx.sandbox``), so they run wherever the store's sandbox
puts the workspace; with the default ``noop`` sandbox every call reports to the model
that no sandbox is configured. Options per kit: ``create_session_store(tool_options=
{"files": {...}, "shell": {...}})``. See ``docs/tools-kit.md``.
"""

from __future__ import annotations

from harness_kernel import hookimpl
from harness_kernel.hookspecs import Register

from ._files import files_kit
from ._options import DEFAULT_APPROVALS, FilesKitOptions, ShellKitOptions
from ._search import glob_regex
from ._shell import shell_kit

__all__ = [
    "DEFAULT_APPROVALS",
    "FilesKitOptions",
    "ShellKitOptions",
    "files_kit",
    "glob_regex",
    "shell_kit",
]


@hookimpl
def harness_kernel_tools(register: Register) -> None:
    register("files", files_kit, options=FilesKitOptions)
    register("shell", shell_kit, options=ShellKitOptions)
