"""The options of the ``local`` sandboxing plugin (``sandbox_options`` / ``[sandbox.options]``)."""

from __future__ import annotations

import re
from typing import Literal

import attrs

from ._limits import CommandLimits

__all__ = ["DEFAULT_PATH", "LocalSandboxOptions"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ENV_NAME = re.compile(r"^[^=\x00]+$")


@attrs.frozen
class LocalSandboxOptions:
    """Where workspaces live, how commands are isolated, and what they may see."""

    root: str = ".harness/workspaces"
    """Directory holding one work directory per session (created if missing)."""
    isolation: Literal["none", "bwrap"] = "none"
    """``none``: commands run as the host user; ``bwrap``: inside bubblewrap."""
    env_allow: tuple[str, ...] = ()
    """Names of host environment variables passed through to commands."""
    env: dict[str, str] = attrs.field(factory=dict)
    """Variables set for every command (after ``env_allow``)."""
    path: str = DEFAULT_PATH
    """``PATH`` of commands."""
    lang: str = "C.UTF-8"
    """``LANG`` of commands."""
    max_output_bytes: int = 1 << 20
    """Per stream: output beyond this is cut (first and last halves kept)."""
    max_file_bytes: int = 64 << 20
    """Largest file ``read_file`` returns and ``write_file`` accepts."""
    default_timeout: float | None = None
    """Seconds a command may run when ``exec`` gets no timeout (``None``: no limit)."""
    network: bool = False
    """``bwrap`` only: keep the host's network (default: no network at all)."""
    ro_binds: tuple[str, ...] = ()
    """``bwrap`` only: extra host paths made visible read-only (a toolchain, a venv)."""
    bwrap: str = "bwrap"
    """The bubblewrap program: a name looked up on the host's PATH, or a path."""
    limits: CommandLimits = attrs.field(factory=CommandLimits)
    """What each command may use (CPU, memory, processes, file size, open files); on by
    default. ``exec(..., limits={...})`` overrides them for one command."""
    disk_quota_bytes: int | None = 4 << 30
    """Most disk a session's work directory may take (``None``: no quota)."""
    cgroup: Literal["auto", "off"] = "auto"
    """``auto``: a cgroup per command for memory and processes where the host allows it;
    ``off``: ``setrlimit`` only."""
    cgroup_parent: str | None = None
    """A cgroup v2 directory delegated to the sandbox (with ``memory`` and ``pids``), for
    hosts where the sandbox's own cgroup cannot have children with controllers."""

    def __attrs_post_init__(self) -> None:
        # ValueError: the kernel reports it with the options' path when it validates a table.
        if not self.root:
            raise ValueError("root: must not be empty")
        for index, name in enumerate(self.env_allow):
            if not _ENV_NAME.match(name):
                raise ValueError(f"env_allow[{index}]: {name!r} is not a variable name")
        for name, value in self.env.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"env: {name!r} is not a variable name")
            if "\x00" in value:
                raise ValueError(f"env.{name}: contains a NUL byte")
        if self.max_output_bytes < 1024:
            raise ValueError("max_output_bytes: must be at least 1024")
        if self.max_file_bytes < 1:
            raise ValueError("max_file_bytes: must be positive")
        if self.default_timeout is not None and not self.default_timeout > 0:
            raise ValueError("default_timeout: must be a positive number of seconds")
        if self.disk_quota_bytes is not None and (
            isinstance(self.disk_quota_bytes, bool) or self.disk_quota_bytes < 0
        ):
            raise ValueError("disk_quota_bytes: must be a number of bytes (0 or more) or null")
        if self.cgroup_parent is not None and not self.cgroup_parent.startswith("/"):
            raise ValueError(f"cgroup_parent: {self.cgroup_parent!r} must be an absolute path")
        for index, path in enumerate(self.ro_binds):
            if not path.startswith("/"):
                raise ValueError(f"ro_binds[{index}]: {path!r} must be an absolute path")
