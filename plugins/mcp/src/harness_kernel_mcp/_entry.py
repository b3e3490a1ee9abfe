"""One ``[[mcp_servers]]`` entry: a stdio or a streamable-HTTP server in one table.

``harness.toml``'s ``[[mcp_servers]]`` and ``create_session_store(mcp_servers=[...])``
hand the ``mcp`` kit a list of plain tables; a table with ``command`` is a stdio server,
one with ``url`` an HTTP server. ``McpServer`` validates either shape (field by field,
so a bad value is reported with its path) and builds the ``StdioServer`` or
``HttpServer`` it stands for.
"""

from __future__ import annotations

import attrs

from ._options import Approval, HttpServer, Restart, StdioServer

__all__ = ["McpKitOptions", "McpServer"]

_STDIO_ONLY = ("args", "env", "env_from", "cwd")
_HTTP_ONLY = ("headers", "headers_from_env")


@attrs.frozen(kw_only=True)
class McpServer:
    """A server declared in ``[[mcp_servers]]``: ``command`` (stdio, with ``args``,
    ``env``, ``env_from``, ``cwd``) or ``url`` (streamable HTTP, with ``headers``,
    ``headers_from_env``), plus the fields every server has (see ``StdioServer``)."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = attrs.field(factory=dict)
    env_from: tuple[str, ...] = ()
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = attrs.field(factory=dict)
    headers_from_env: dict[str, str] = attrs.field(factory=dict)
    approval: Approval = "ask"
    tool_approvals: dict[str, Approval] = attrs.field(factory=dict)
    include: tuple[str, ...] | None = None
    call_timeout: float = 60.0
    connect_timeout: float = 30.0
    restart: Restart = Restart()

    def __attrs_post_init__(self) -> None:
        if self.command is None and self.url is None:
            # Reported as ``mcp_servers[i].command: required field missing`` (the usual
            # wording: the entry is a stdio server unless it has a url).
            raise ValueError("command: required field missing")
        if self.command is not None and self.url is not None:
            raise ValueError(
                f"MCP server '{self.name}': give either 'command' (a stdio server) or 'url' (an HTTP server), not both"
            )
        wrong = _HTTP_ONLY if self.command is not None else _STDIO_ONLY
        for field in wrong:
            if getattr(self, field):
                kind = "a stdio server" if self.command is not None else "an HTTP server"
                raise ValueError(f"MCP server '{self.name}': '{field}' does not apply to {kind}")
        self.server()  # the name, the timeouts and the URL are checked there

    def server(self) -> StdioServer | HttpServer:
        """The ``StdioServer`` or ``HttpServer`` this entry declares."""
        common = {
            "name": self.name,
            "approval": self.approval,
            "tool_approvals": dict(self.tool_approvals),
            "include": self.include,
            "call_timeout": self.call_timeout,
            "connect_timeout": self.connect_timeout,
            "restart": self.restart,
        }
        if self.command is not None:
            return StdioServer(
                command=self.command,
                args=self.args,
                env=dict(self.env),
                env_from=self.env_from,
                cwd=self.cwd,
                **common,  # type: ignore[arg-type]
            )
        assert self.url is not None
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"MCP server '{self.name}': url must start with http:// or https://")
        return HttpServer(
            url=self.url,
            headers=dict(self.headers),
            headers_from_env=dict(self.headers_from_env),
            **common,  # type: ignore[arg-type]
        )


@attrs.frozen
class McpKitOptions:
    """``tool_options={"mcp": {"stdio": [...], "http": [...]}}`` or
    ``[tools.mcp] options = {stdio = [...], http = [...]}``: the servers of the kit.
    ``servers`` holds the ``[[mcp_servers]]`` entries (either kind, one table each)."""

    stdio: tuple[StdioServer, ...] = ()
    http: tuple[HttpServer, ...] = ()
    servers: tuple[McpServer, ...] = ()
