"""One MCP server: its connection, kept up by a task in the hub's nursery.

The task connects (the ``mcp`` SDK's ``Client``: the 2026-07-28 protocol, or the
initialize handshake with an older server), lists the tools, then waits until the
connection is lost: a call that finds it closed, or the change subscription dropping.
It then reconnects with backoff; while it does, calls wait for it (up to the server's
``connect_timeout``) and after ``restart.max_attempts`` failed starts they fail at once.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import attrs
import httpx2
import mcp_types
import pydantic
import trio
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.subscriptions import ListenNotSupportedError

from harness_kernel.errors import ToolError

from ._options import HttpServer, McpServerOptions, StdioServer
from ._render import render_call_result

__all__ = ["ServerConnection", "ServerStatus", "ServerUnavailable"]

_log = logging.getLogger("harness_kernel_mcp")
_BROKEN = (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream)

State = Literal["starting", "ready", "restarting", "failed", "closed"]


class ServerUnavailable(ToolError):
    """An MCP server could not be reached (not started, restarting, or given up)."""

    code = "tool.mcp_unavailable"


@attrs.frozen
class ServerStatus:
    """What ``McpServers.status()`` reports for one server."""

    name: str
    state: State
    restarts: int
    tools: tuple[str, ...]
    last_error: str | None


class ServerConnection:
    """Keeps one server connected and lists its tools; ``call`` runs one tool."""

    def __init__(self, options: McpServerOptions) -> None:
        self.options = options
        self.tools: dict[str, mcp_types.Tool] = {}
        self.state: State = "starting"
        self.restarts = 0
        self.last_error: str | None = None
        self.listing = 0
        """Bumped each time the tool list is read again (after a change notice)."""
        self.listed = trio.Event()
        """Set when the next listing is in (a new one replaces it)."""
        self._client: Client | None = None
        self._ready = trio.Event()
        self._lost = trio.Event()
        self._changed = trio.Event()
        self._gave_up = trio.Event()
        self._started = False

    def status(self) -> ServerStatus:
        return ServerStatus(self.options.name, self.state, self.restarts, tuple(self.tools), self.last_error)

    # -- the connection's task ---------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, serve, reconnect; ``task_status.started()`` once the first listing is
        in (or the server was given up)."""
        restart = self.options.restart
        failures = 0
        try:
            while True:
                # The deadline bounds the start only; once listed, it is lifted.
                with trio.CancelScope(deadline=trio.current_time() + self.options.connect_timeout) as start:
                    try:
                        async with self._connect() as client:
                            await self._list(client)
                            start.deadline = math.inf
                            self._client, self.state, failures = client, "ready", 0
                            self._ready.set()
                            if not self._started:
                                self._started = True
                                task_status.started()
                            async with trio.open_nursery() as nursery:
                                nursery.start_soon(self._follow_changes, client)
                                await self._lost.wait()
                                nursery.cancel_scope.cancel()
                        self.last_error = self.last_error or "the connection was lost"
                    except Exception as exc:
                        self.last_error = _describe(exc)
                if start.cancelled_caught:
                    self.last_error = f"no tool list within {self.options.connect_timeout:g} s"
                self._client, self._lost = None, trio.Event()
                if self._ready.is_set():  # waiting calls hold the unset one: keep it
                    self._ready = trio.Event()
                failures += 1
                if failures > restart.max_attempts:
                    self.state = "failed"
                    self._gave_up.set()
                    _log.error("mcp server %r given up after %d failed starts: %s",
                               self.options.name, failures, self.last_error)
                    if not self._started:
                        self._started = True
                        task_status.started()
                    return
                if self._started:
                    self.state = "restarting"
                    self.restarts += 1
                    _log.warning("mcp server %r lost (%s); restart %d", self.options.name,
                                 self.last_error, self.restarts)
                await trio.sleep(min(restart.initial_delay * 2 ** (failures - 1), restart.max_delay))
        finally:
            if self.state != "failed":
                self.state = "closed"

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[Client]:
        options = self.options
        if isinstance(options, StdioServer):
            env = dict(options.env)
            for name in options.env_from:
                if name in os.environ:
                    env[name] = os.environ[name]
            params = StdioServerParameters(
                command=options.command, args=list(options.args), env=env, cwd=options.cwd
            )
            client = Client(params, message_handler=self._on_message, cache=None)
            async with client:
                yield client
        elif isinstance(options, HttpServer):
            headers = dict(options.headers)
            for header, variable in options.headers_from_env.items():
                value = os.environ.get(variable)
                if value is None:
                    raise ServerUnavailable(
                        f"MCP server '{options.name}': environment variable {variable} is not set"
                    )
                headers[header] = value
            timeout = httpx2.Timeout(30.0, read=300.0)
            async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
                from mcp.client.streamable_http import streamable_http_client

                transport = streamable_http_client(options.url, http_client=http)
                async with Client(transport, message_handler=self._on_message, cache=None) as client:
                    yield client
        else:  # pragma: no cover - the options classes are closed
            raise TypeError(f"unknown MCP server options {type(options).__name__}")

    async def _list(self, client: Client) -> None:
        tools: dict[str, mcp_types.Tool] = {}
        cursor: str | None = None
        for _ in range(100):  # a paginator that never ends must not hang the start
            with trio.fail_after(self.options.connect_timeout):
                page = await client.list_tools(cursor=cursor, cache_mode="refresh")
            for item in page.tools:
                if self.options.include is None or item.name in self.options.include:
                    tools[item.name] = item
            cursor = page.next_cursor
            if cursor is None:
                break
        self.tools = tools
        self.listing += 1
        self.listed.set()
        self.listed = trio.Event()

    async def _on_message(self, message: Any) -> None:
        """Handshake-era servers announce tool list changes as notifications."""
        if isinstance(message, mcp_types.ToolListChangedNotification) or (
            getattr(message, "method", None) == "notifications/tools/list_changed"
        ):
            self._changed.set()
        await trio.lowlevel.checkpoint()

    async def _follow_changes(self, client: Client) -> None:
        tools = client.server_capabilities.tools
        if tools is None or not tools.list_changed:
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._listen, client)
            while True:
                await self._changed.wait()
                self._changed = trio.Event()
                try:
                    await self._list(client)
                except Exception as exc:
                    self.last_error = _describe(exc)
                    self._lost.set()
                    return
                _log.info("mcp server %r changed its tools: %s", self.options.name, ", ".join(self.tools))

    async def _listen(self, client: Client) -> None:
        """2026-07-28 servers stream change events; a dropped stream means a lost server."""
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for _event in subscription:
                    self._changed.set()
        except ListenNotSupportedError:
            return
        except Exception as exc:
            self.last_error = _describe(exc)
            self._lost.set()
            return
        self.last_error = "the server closed its change stream"
        self._lost.set()

    # -- calls ---------------------------------------------------------------------

    async def _wait_ready(self) -> Client:
        name = self.options.name
        with trio.move_on_after(self.options.connect_timeout):
            while self._client is None:
                if self.state == "failed":
                    raise ServerUnavailable(f"MCP server '{name}' is unavailable: {self.last_error}")
                async with trio.open_nursery() as nursery:
                    # Whichever comes first: connected again, or given up.
                    async def wait(event: trio.Event) -> None:
                        await event.wait()
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(wait, self._ready)
                    nursery.start_soon(wait, self._gave_up)
            return self._client
        raise ServerUnavailable(
            f"MCP server '{name}' did not come back within {self.options.connect_timeout:g} s"
            f" ({self.last_error or 'restarting'})"
        )

    async def call(self, remote: str, arguments: dict[str, Any]) -> str:
        """Run ``remote`` on the server; every failure is a ``ToolError`` the model sees."""
        name = self.options.name
        client = await self._wait_ready()
        try:
            with trio.fail_after(self.options.call_timeout):
                result = await client.call_tool(remote, arguments)
        except trio.TooSlowError:
            raise ToolError(
                f"tool '{remote}' of MCP server '{name}' did not answer within {self.options.call_timeout:g} s"
            ) from None
        except MCPError as exc:
            if exc.code == mcp_types.CONNECTION_CLOSED:
                self._lose(exc)
                raise ServerUnavailable(f"MCP server '{name}' closed the connection during the call; it is restarted") from None
            raise ToolError(f"MCP server '{name}' refused the call: {exc.error.message}") from None
        except _BROKEN as exc:
            self._lose(exc)
            raise ServerUnavailable(f"MCP server '{name}' went away during the call; it is restarted") from None
        except pydantic.ValidationError:
            raise ToolError(f"MCP server '{name}' returned a malformed result for '{remote}'") from None
        return render_call_result(result, f"tool '{remote}' of MCP server '{name}'")

    def _lose(self, exc: BaseException) -> None:
        # Calls from now on wait for the next connection instead of using this one.
        self.last_error = _describe(exc)
        self._client, self._ready = None, trio.Event()
        self._lost.set()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _describe(exc.exceptions[0])
    if isinstance(exc, trio.TooSlowError):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

