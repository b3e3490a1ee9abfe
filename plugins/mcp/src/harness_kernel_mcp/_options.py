"""How an MCP server is declared: ``StdioServer`` (a subprocess) or ``HttpServer`` (a
streamable-HTTP endpoint). attrs classes, so a config table is validated by cattrs."""

from __future__ import annotations

import re
from typing import Literal, TypeAlias

import attrs

__all__ = [
    "Approval",
    "HttpServer",
    "McpServerOptions",
    "Restart",
    "StdioServer",
    "tool_name",
]

Approval: TypeAlias = Literal["auto", "ask", "deny"]
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


@attrs.frozen
class Restart:
    """How a server that died is started again: after ``initial_delay`` seconds, doubling
    up to ``max_delay``; after ``max_attempts`` failed starts in a row it is given up
    (calls then report it unavailable)."""

    initial_delay: float = 0.5
    max_delay: float = 30.0
    max_attempts: int = 8


@attrs.frozen(kw_only=True)
class McpServerOptions:
    """What every server has. ``name`` prefixes its tools (``<name>__<tool>``)."""

    name: str
    approval: Approval = "ask"
    """The approval policy of the server's tools (``ask`` unless set)."""
    tool_approvals: dict[str, Approval] = attrs.field(factory=dict)
    """Per tool (the server's own tool name), overriding ``approval``."""
    include: tuple[str, ...] | None = None
    """Only these tools of the server (its own names); ``None``: all."""
    call_timeout: float = 60.0
    """Seconds one call may take before the model is told it timed out."""
    connect_timeout: float = 30.0
    """Seconds to wait for the server to start and list its tools."""
    restart: Restart = Restart()

    def __attrs_post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"name: {self.name!r} must match [A-Za-z0-9_-]{{1,32}}")
        if not self.call_timeout > 0 or not self.connect_timeout > 0:
            raise ValueError("call_timeout and connect_timeout must be positive numbers of seconds")

    def approval_for(self, tool: str) -> Approval:
        return self.tool_approvals.get(tool, self.approval)


@attrs.frozen(kw_only=True)
class StdioServer(McpServerOptions):
    """A server run as a subprocess speaking MCP on its stdin/stdout.

    It gets a minimal environment (``HOME``, ``LOGNAME``, ``PATH``, ``SHELL``, ``TERM``,
    ``USER``), plus ``env``, plus the host variables named in ``env_from`` (copied when
    the server starts, so secrets stay out of the config).
    """

    command: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = attrs.field(factory=dict)
    env_from: tuple[str, ...] = ()
    cwd: str | None = None


@attrs.frozen(kw_only=True)
class HttpServer(McpServerOptions):
    """A streamable-HTTP server at ``url``. ``headers`` are sent as they are;
    ``headers_from_env`` maps a header to the environment variable holding its value
    (``{"Authorization": "GITHUB_MCP_AUTH"}``), read when the server is connected."""

    url: str
    headers: dict[str, str] = attrs.field(factory=dict)
    headers_from_env: dict[str, str] = attrs.field(factory=dict)


def tool_name(prefix: str, remote: str) -> str:
    """The kernel tool name of a server's tool: ``<prefix>__<tool>``, characters outside
    ``[A-Za-z0-9_-]`` replaced by ``_``, cut to 64."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{prefix}__{remote}")[:64]
