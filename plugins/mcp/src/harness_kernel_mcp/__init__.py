"""Tools served by Model Context Protocol servers, as harness-kernel tools.

``open_mcp_servers([...])`` starts stdio servers (subprocesses with a minimal
environment) and connects to streamable-HTTP servers, lists their tools and keeps them
connected (restarting a server that dies, with backoff); ``servers.tools`` are kernel
``Tool`` objects named ``<server>__<tool>``, with the server's JSON schema and an
approval policy per server and per tool (``ask`` unless configured). Calls go through
the kernel's run loop like any tool's. The ``mcp`` tool kit declares servers in the
store's options or ``harness.toml`` instead (``tools=["mcp"]``). See ``docs/mcp.md``.
"""

from __future__ import annotations

from harness_kernel import hookimpl
from harness_kernel.hookspecs import Register

from ._connection import ServerStatus, ServerUnavailable
from ._entry import McpServer
from ._kit import McpKitOptions, mcp_kit
from ._options import HttpServer, McpServerOptions, Restart, StdioServer, tool_name
from ._servers import McpServers, McpTool, open_mcp_servers

__all__ = [
    "HttpServer",
    "McpKitOptions",
    "McpServer",
    "McpServerOptions",
    "McpServers",
    "McpTool",
    "Restart",
    "ServerStatus",
    "ServerUnavailable",
    "StdioServer",
    "mcp_kit",
    "open_mcp_servers",
    "tool_name",
]


@hookimpl
def harness_kernel_tools(register: Register) -> None:
    register("mcp", mcp_kit, options=McpKitOptions)
