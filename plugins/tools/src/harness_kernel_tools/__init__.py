"""File and shell tools for harness-kernel agents: the ``files`` and ``shell`` kits.

An agent adds a kit by name: ``define_agent(tools=["files", "shell"])``. The tools work
through the session's sandbox (``ctx.sandbox``), so they run wherever the store's sandbox
puts the workspace; with the default ``noop`` sandbox every call reports to the model
that no sandbox is configured. Options per kit: ``create_session_store(tool_options=
{"files": {...}, "shell": {...}})``. See ``docs/tools-kit.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness_kernel import hookimpl, lazy_exports
from harness_kernel.hookspecs import Register

from ._options import DEFAULT_APPROVALS, FilesKitOptions, ShellKitOptions

if TYPE_CHECKING:
    from harness_kernel import Tool

    from ._files import files_kit
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


# The kits (and ``regex``) load when a kit is built or one of these names is used, not
# when the plugin is imported: every command imports every installed plugin to list it.
_MODULE_OF = {"files_kit": "._files", "glob_regex": "._search", "shell_kit": "._shell"}


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)


def _files_kit(options: FilesKitOptions) -> list[Tool]:
    from ._files import files_kit

    return files_kit(options)


def _shell_kit(options: ShellKitOptions) -> list[Tool]:
    from ._shell import shell_kit

    return shell_kit(options)


@hookimpl
def harness_kernel_tools(register: Register) -> None:
    register("files", _files_kit, options=FilesKitOptions)
    register("shell", _shell_kit, options=ShellKitOptions)
