"""``McpServers``: the servers a host runs, and their tools as kernel ``Tool`` objects."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import jsonschema  # type: ignore[import-untyped]
import trio

from harness_kernel import Tool
from harness_kernel.errors import ConfigError, ToolArgumentsInvalid

from ._connection import ServerConnection, ServerStatus
from ._options import McpServerOptions, tool_name

__all__ = ["McpServers", "McpTool", "kernel_tools", "open_mcp_servers"]


@attrs.frozen
class McpTool(Tool):
    """A tool of an MCP server. Arguments are validated against the schema the server
    lists now (it may have changed since the store started); the call goes to the
    server through its connection."""

    server: ServerConnection | None = None
    remote_name: str = ""

    def validate(self, arguments: Any) -> dict[str, Any]:
        """Raises ``ToolArgumentsInvalid`` naming each problem by path (never a value)."""
        assert self.server is not None
        listed = self.server.tools.get(self.remote_name)
        if listed is None:
            raise ToolArgumentsInvalid(
                f"tool '{self.name}' is no longer offered by MCP server '{self.server.options.name}'"
            )
        if not isinstance(arguments, dict):
            raise ToolArgumentsInvalid(f"arguments for '{self.name}' must be a JSON object")
        schema = _object_schema(listed.input_schema)
        validator = jsonschema.validators.validator_for(schema)(schema)
        problems = sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
        if problems:
            lines = "; ".join(_problem(p) for p in problems)
            raise ToolArgumentsInvalid(f"invalid arguments for '{self.name}': {lines}")
        return dict(arguments)


def _problem(error: jsonschema.ValidationError) -> str:
    where = error.json_path
    if error.validator in ("required", "additionalProperties"):
        return f"{where}: {error.message}"  # these name keys, not values
    if error.validator == "type":
        return f"{where}: expected {error.validator_value}"
    return f"{where}: fails '{error.validator}'"


def _object_schema(listed: Any) -> dict[str, Any]:
    schema: dict[str, Any] = dict(listed or {})
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return schema


def _kernel_tool(connection: ServerConnection, remote: str) -> McpTool:
    listed = connection.tools[remote]
    options = connection.options

    async def call(**arguments: Any) -> str:
        return await connection.call(remote, arguments)

    description = listed.description or getattr(listed, "title", None) or remote
    return McpTool(
        name=tool_name(options.name, remote),
        description=f"{description} (MCP server '{options.name}')",
        function=call,
        parameters=_object_schema(listed.input_schema),
        arguments_class=dict,
        takes_context=False,
        approval=options.approval_for(remote),
        category=f"mcp:{options.name}",
        server=connection,
        remote_name=remote,
    )


def kernel_tools(connections: Sequence[ServerConnection]) -> list[Tool]:
    """The tools every connection lists now, as kernel tools."""
    return [_kernel_tool(c, remote) for c in connections for remote in c.tools]


class McpServers:
    """Running MCP servers. ``tools`` is their tools as kernel tools; hand them to
    ``define_agent(tools=[*servers.tools, ...])``. Open with ``open_mcp_servers``."""

    def __init__(self, connections: Sequence[ServerConnection]) -> None:
        self._connections = list(connections)

    @property
    def tools(self) -> list[Tool]:
        """The tools every server lists now (a change notice updates this list; an agent
        built earlier keeps its tools, and calls to a removed one are refused)."""
        return kernel_tools(self._connections)

    async def wait_for_listing(self) -> None:
        """Return when some server has listed its tools again (after a change notice or
        a restart); read ``tools`` then."""
        async with trio.open_nursery() as nursery:

            async def wait(connection: ServerConnection) -> None:
                await connection.listed.wait()
                nursery.cancel_scope.cancel()

            for connection in self._connections:
                nursery.start_soon(wait, connection)

    def status(self) -> list[ServerStatus]:
        """Each server's state (``ready``, ``restarting``, ``failed``...), restarts and tools."""
        return [c.status() for c in self._connections]


@asynccontextmanager
async def open_mcp_servers(servers: Sequence[McpServerOptions]) -> AsyncIterator[McpServers]:
    """Start (or connect to) every server and list its tools; stop them on exit.

    Raises ``ConfigError`` if two servers share a name, or if a server cannot be
    started and listed within its ``connect_timeout`` (after retrying with backoff).
    """
    names = [s.name for s in servers]
    if len(set(names)) != len(names):
        raise ConfigError(f"mcp servers: names must be unique, got {', '.join(names)}")
    connections = [ServerConnection(options) for options in servers]
    failed: ServerConnection | None = None
    async with trio.open_nursery() as nursery:
        for connection in connections:
            await nursery.start(connection.run)
        failed = next((c for c in connections if c.state == "failed"), None)
        if failed is None:
            try:
                yield McpServers(connections)
            finally:
                nursery.cancel_scope.cancel()
        else:
            nursery.cancel_scope.cancel()
    if failed is not None:
        raise ConfigError(f"mcp server '{failed.options.name}' could not be started: {failed.last_error}")
