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

from typing import TYPE_CHECKING

from harness_kernel import hookimpl, lazy_exports
from harness_kernel.hookspecs import Register

from ._entry import McpKitOptions, McpServer
from ._options import HttpServer, McpServerOptions, Restart, StdioServer, tool_name

if TYPE_CHECKING:
    from harness_kernel import Tool

    from ._connection import ServerStatus, ServerUnavailable
    from ._kit import mcp_kit
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


# The names that need the MCP SDK (or trio) load on first use, so importing the plugin (as the
# entry point does for every command) costs no SDK import.
_MODULE_OF = {
    "McpServers": "._servers",
    "McpTool": "._servers",
    "ServerStatus": "._connection",
    "ServerUnavailable": "._connection",
    "mcp_kit": "._kit",
    "open_mcp_servers": "._servers",
}


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)


def _mcp_kit(options: McpKitOptions) -> list[Tool]:
    from ._kit import mcp_kit

    return mcp_kit(options)


@hookimpl
def harness_kernel_tools(register: Register) -> None:
    register("mcp", _mcp_kit, options=McpKitOptions)
