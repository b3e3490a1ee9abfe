"""The ``mcp`` tool kit: servers declared in the store's options or ``harness.toml``.

A kit's factory is called synchronously while the store starts and returns a fixed list,
and the store never closes a kit. So the kit's servers run on a trio loop of their own,
in a daemon thread that lives as long as the process: the factory blocks until every
server has listed its tools (bounded by their ``connect_timeout``), and each call hops
to that loop. Hosts that can, open the servers themselves with ``open_mcp_servers``
(same connections, in their own nursery, closed with it).
"""

from __future__ import annotations

import atexit
import threading
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs
import trio

from harness_kernel import Tool
from harness_kernel.errors import ConfigError

from ._entry import McpKitOptions

if TYPE_CHECKING:
    from ._connection import ServerConnection

__all__ = ["McpKitOptions", "mcp_kit"]


class _Loop:
    """A trio loop in a daemon thread running the kit's server connections."""

    def __init__(self, connections: list[ServerConnection]) -> None:
        self.connections = connections
        self.token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True, name="harness-kernel-mcp")

    async def _main(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as self._scope:
            async with trio.open_nursery() as nursery:
                for connection in self.connections:
                    await nursery.start(connection.run)
                self._ready.set()

    def start(self, timeout: float) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ConfigError(f"tool kit 'mcp': the servers did not list their tools within {timeout:g} s")
        atexit.register(self.stop)

    def stop(self) -> None:
        scope, token = self._scope, self.token
        if scope is not None and token is not None and self._thread.is_alive():
            try:
                trio.from_thread.run_sync(scope.cancel, trio_token=token)
            except trio.RunFinishedError:
                return
            self._thread.join(timeout=10)

    async def call(self, connection: ServerConnection, remote: str, arguments: dict[str, Any]) -> str:
        run = partial(trio.from_thread.run, connection.call, remote, arguments, trio_token=self.token)
        result: str = await trio.to_thread.run_sync(run, abandon_on_cancel=True)
        return result


class KitTools(list[Tool]):
    """The kit's tools; ``aclose()`` (which the store calls when it closes) stops the
    kit's servers and their loop."""

    def __init__(self, tools: list[Tool], loop: _Loop) -> None:
        super().__init__(tools)
        self._loop = loop

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self._loop.stop)


def mcp_kit(options: McpKitOptions) -> list[Tool]:
    """Start the declared servers (blocking until they list their tools) and return
    their tools. Raises ``ConfigError`` if a server cannot be started."""
    # The MCP SDK (and jsonschema) load when a kit is built, not when the plugin is
    # listed: ``harness-kernel plugins`` imports every plugin's entry point.
    from ._connection import ServerConnection
    from ._servers import McpTool, kernel_tools

    servers = [*options.stdio, *options.http, *(entry.server() for entry in options.servers)]
    names = [s.name for s in servers]
    if len(set(names)) != len(names):
        raise ConfigError(f"tool kit 'mcp': server names must be unique, got {', '.join(names)}")
    if not servers:
        return []
    connections = [ServerConnection(s) for s in servers]
    loop = _Loop(connections)
    # Each start retries with backoff within its bound; this is the whole start's bound.
    loop.start(sum(s.connect_timeout * (s.restart.max_attempts + 1) for s in servers) + 5)
    failed = [c for c in connections if c.state == "failed"]
    if failed:
        loop.stop()
        raise ConfigError(
            f"tool kit 'mcp': server '{failed[0].options.name}' could not be started: {failed[0].last_error}"
        )
    tools: list[Tool] = []
    for tool in kernel_tools(connections):
        assert isinstance(tool, McpTool)
        assert tool.server is not None
        call = partial(_call_via, loop, tool.server, tool.remote_name)
        tools.append(attrs.evolve(tool, function=call))
    return KitTools(tools, loop)


async def _call_via(loop: _Loop, connection: ServerConnection, remote: str, **arguments: Any) -> str:
    return await loop.call(connection, remote, arguments)
