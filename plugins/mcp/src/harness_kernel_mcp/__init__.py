"""Tools served by Model Context Protocol servers, as harness-kernel tools.

``open_mcp_servers([...])`` starts stdio servers (subprocesses with a minimal
environment) and connects to streamable-HTTP servers, lists their tools and keeps them
connected (restarting a server that dies, with backoff); ``servers.tools`` are kernel
``Tool`` objects named ``<server>__<tool>``, with the server's JSON schema and an
approval policy per server and per tool (``ask`` unless configured). Calls go through
the kernel's run loop like any tool's. See ``docs/mcp.md``.
"""

from __future__ import annotations

from ._connection import ServerStatus, ServerUnavailable
from ._options import HttpServer, McpServerOptions, Restart, StdioServer, tool_name
from ._servers import McpServers, McpTool, open_mcp_servers

__all__ = [
    "HttpServer",
    "McpServerOptions",
    "McpServers",
    "McpTool",
    "Restart",
    "ServerStatus",
    "ServerUnavailable",
    "StdioServer",
    "open_mcp_servers",
    "tool_name",
]
