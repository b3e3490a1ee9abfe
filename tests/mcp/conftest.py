"""Real MCP servers for the tests: ``server_app.py`` (the mcp package's MCPServer) as a
stdio subprocess or a streamable-HTTP server on 127.0.0.1, and a hand-written malformed
one; and a scripted agent that calls the tool the user message names."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness_kernel import ModelRequest, ToolResultPart
from harness_kernel.testing import Reply, ToolCall
from harness_kernel_mcp import HttpServer, StdioServer

HERE = Path(__file__).parent


def stdio_server(name: str = "t", **options: Any) -> StdioServer:
    return StdioServer(name=name, command=sys.executable, args=(str(HERE / "server_app.py"), "stdio"), **options)


def malformed_server(name: str = "bad") -> StdioServer:
    return StdioServer(name=name, command=sys.executable, args=(str(HERE / "malformed_server.py"),), approval="auto")


def caller(request: ModelRequest) -> Reply:
    """The user message is ``{"tool": ..., "arguments": {...}}``: call it, then answer
    with the tool's result (prefixed ``error:`` when it is an error)."""
    last = request.messages[-1]
    if last.role == "user":
        wanted = json.loads(last.text)
        return Reply(tool_calls=[ToolCall(wanted["tool"], wanted.get("arguments", {}))])
    part = last.parts[0]
    assert isinstance(part, ToolResultPart)
    return Reply(text=("error: " if part.is_error else "") + part.content)


def ask(tool: str, **arguments: Any) -> str:
    return json.dumps({"tool": tool, "arguments": arguments})


@pytest.fixture
def http_url() -> Iterator[str]:
    """server_app.py served over streamable HTTP on a free 127.0.0.1 port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, str(HERE / "server_app.py"), "http", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


__all__ = ["HttpServer", "ask", "caller", "malformed_server", "stdio_server"]
