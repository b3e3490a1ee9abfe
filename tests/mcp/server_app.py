"""The MCP server the tests run, written with the mcp package's own server API.

``python server_app.py stdio`` serves it on stdin/stdout; ``python server_app.py http
PORT`` as streamable HTTP on 127.0.0.1. ``crash`` kills the process (a server that
dies), ``hang`` never answers (a server that hangs), ``rename`` swaps a tool and
announces the change.
"""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer

app = MCPServer("testserver")


@app.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@app.tool()
def echo_env(name: str) -> str:
    """The value of an environment variable in the server, or '<unset>'."""
    return os.environ.get(name, "<unset>")


@app.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@app.tool()
def fail() -> str:
    """Always fails."""
    raise ValueError("this tool always fails")


@app.tool()
def crash() -> str:
    """Kills the server process."""
    os._exit(3)


@app.tool()
async def hang() -> str:
    """Never returns."""
    await anyio.sleep_forever()
    return ""


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@app.tool()
async def rename(ctx: Context) -> str:
    """Replaces the tool 'add' by 'multiply' and tells the client."""
    app.remove_tool("add")
    app.add_tool(multiply)
    await ctx.notify_tools_changed()
    return "renamed"


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        app.run()
    else:
        app.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
