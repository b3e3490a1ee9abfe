"""MCP servers' tools called by a scripted agent through the kernel's run loop."""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from harness_kernel import SessionStore, create_session_store, define_agent
from harness_kernel.errors import ConfigError
from harness_kernel.testing import ScriptedProvider
from harness_kernel_mcp import HttpServer, McpServerOptions, McpServers, Restart, open_mcp_servers

from .conftest import ask, caller, malformed_server, stdio_server


@asynccontextmanager
async def agent_on(servers: Sequence[McpServerOptions], **store: Any):  # type: ignore[no-untyped-def]
    async with open_mcp_servers(servers) as mcp:
        agent = define_agent(name="mcp-user", tools=mcp.tools)
        async with create_session_store(
            agent=agent, providers=[ScriptedProvider({"caller": caller})], default_model="scripted/caller",
            autoload_plugins=False, **store,
        ) as s:
            yield mcp, s


async def call(store: SessionStore, tool: str, **arguments: Any) -> Any:
    session = await store.get_or_create("s")
    return await session.send(ask(tool, **arguments))


async def test_stdio_tools_are_kernel_tools_with_the_servers_schema() -> None:
    """A stdio server's tools are listed with the server's name as prefix and its JSON
    schema; their approval is ask by default, so the call waits for a person."""
    async with agent_on([stdio_server()]) as (mcp, store):
        tools = {t.name: t for t in mcp.tools}
        assert {"t__add", "t__echo_env", "t__crash", "t__hang"} <= set(tools)
        add = tools["t__add"]
        assert add.parameters["properties"]["a"]["type"] == "integer"
        assert add.parameters["required"] == ["a", "b"]
        assert add.approval == "ask"
        assert add.category == "mcp:t"
        assert "Add two integers." in add.description
        parked = await call(store, "t__add", a=2, b=3)
        assert parked.status == "waiting_approval"
        session = await store.get_or_create("s")
        (pending,) = session.pending_approvals
        assert pending.tool == "t__add"
        await session.approve(pending.approval_id)
        history = await session.history()
        assert any(m.role == "tool" and m.parts[0].content == "5" for m in history)


async def test_approval_overrides_per_server_and_tool() -> None:
    """approval and tool_approvals override the default: auto runs at once, deny is
    refused without reaching the server."""
    server = stdio_server(approval="deny", tool_approvals={"add": "auto"})
    async with agent_on([server]) as (_, store):
        ok = await call(store, "t__add", a=20, b=22)
        assert ok.status == "completed"
        assert ok.text == "42"
        denied = await call(store, "t__pid")
        assert denied.status == "completed"
        assert denied.text.startswith("error: ")
        assert "not allowed" in denied.text


async def test_arguments_are_validated_against_the_servers_schema() -> None:
    """Arguments that do not match the server's schema are an error result the model
    sees, naming the path, and the call never reaches the server."""
    async with agent_on([stdio_server(approval="auto")]) as (_, store):
        result = await call(store, "t__add", a="two")
        assert result.status == "completed"
        assert result.text.startswith("error: invalid arguments for 't__add'")
        assert "$.a: expected integer" in result.text
        assert "'b' is a required property" in result.text
        assert "two" not in result.text


async def test_server_errors_are_error_results() -> None:
    """A tool that raises on the server is an error result; the run goes on."""
    async with agent_on([stdio_server(approval="auto")]) as (_, store):
        result = await call(store, "t__fail")
        assert result.status == "completed"
        assert result.text.startswith("error: ")
        session = await store.get_or_create("s")
        events = [e.type for e in await session.run_events(result.run_id)]
        assert "tool.started" in events
        assert "tool.finished" in events


async def test_a_hanging_server_times_out() -> None:
    """A call that gets no answer within call_timeout is an error result saying so."""
    async with agent_on([stdio_server(approval="auto", call_timeout=0.5)]) as (_, store):
        result = await call(store, "t__hang")
        assert result.status == "completed"
        assert "did not answer within 0.5 s" in result.text
        again = await call(store, "t__add", a=1, b=1)
        assert again.text == "2"


async def test_a_crashed_server_is_restarted_and_reported() -> None:
    """A server that dies during a call gives an error result; it is started again
    with backoff, the status reports the restart, and the next call reaches the new
    process."""
    server = stdio_server(approval="auto", restart=Restart(initial_delay=0.01))
    async with agent_on([server]) as (mcp, store):
        before = await call(store, "t__pid")
        crashed = await call(store, "t__crash")
        assert crashed.status == "completed"
        assert crashed.text.startswith("error: ")
        assert "restarted" in crashed.text
        after = await call(store, "t__pid")
        assert after.text.isdigit()
        assert after.text != before.text
        (status,) = mcp.status()
        assert status.state == "ready"
        assert status.restarts == 1
        assert status.last_error


async def test_a_malformed_result_is_an_error_result() -> None:
    """A server whose call result is not an MCP result gives an error result."""
    async with agent_on([malformed_server()]) as (_, store):
        result = await call(store, "bad__broken")
        assert result.status == "completed"
        assert result.text == "error: MCP server 'bad' returned a malformed result for 'broken'"


async def test_stdio_servers_get_a_minimal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's variables do not reach a stdio server, except those named in
    env_from and those given in env."""
    monkeypatch.setenv("HOST_ONLY_SECRET", "s3cr3t")
    monkeypatch.setenv("PASSED_ON", "yes")
    server = stdio_server(approval="auto", env={"GIVEN": "g"}, env_from=("PASSED_ON",))
    async with agent_on([server]) as (_, store):
        assert (await call(store, "t__echo_env", name="HOST_ONLY_SECRET")).text == "<unset>"
        assert (await call(store, "t__echo_env", name="PASSED_ON")).text == "yes"
        assert (await call(store, "t__echo_env", name="GIVEN")).text == "g"


async def test_the_tool_list_follows_change_notices() -> None:
    """When the server announces a changed tool list, new tools appear in
    McpServers.tools, and a removed one called by an agent built earlier is refused."""
    async with agent_on([stdio_server(approval="auto")]) as (mcp, store):
        assert (await call(store, "t__rename")).text == "renamed"
        names = await _wait_for_tool(mcp, "t__multiply")
        assert "t__add" not in names
        gone = await call(store, "t__add", a=1, b=2)
        assert "no longer offered by MCP server 't'" in gone.text


async def _wait_for_tool(mcp: McpServers, name: str) -> set[str]:
    while name not in {t.name for t in mcp.tools}:
        await mcp.wait_for_listing()
    return {t.name for t in mcp.tools}


async def test_streamable_http_server(http_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A streamable-HTTP server on 127.0.0.1 serves the same tools, with headers taken
    from environment variables."""
    monkeypatch.setenv("TEST_MCP_TOKEN", "Bearer abc")
    server = HttpServer(
        name="web", url=http_url, approval="auto", headers_from_env={"Authorization": "TEST_MCP_TOKEN"},
        connect_timeout=30, restart=Restart(initial_delay=0.1, max_attempts=50),
    )
    async with agent_on([server]) as (mcp, store):
        assert "web__add" in {t.name for t in mcp.tools}
        result = await call(store, "web__add", a=4, b=5)
        assert result.text == "9"


async def test_missing_header_variable_fails_the_start() -> None:
    """A header whose environment variable is unset keeps the server from starting;
    open_mcp_servers says which server and why."""
    os.environ.pop("NOT_SET_ANYWHERE", None)
    server = HttpServer(
        name="web", url="http://127.0.0.1:9/mcp", headers_from_env={"Authorization": "NOT_SET_ANYWHERE"},
        restart=Restart(initial_delay=0.01, max_attempts=1),
    )
    with pytest.raises(ConfigError, match=r"mcp server 'web' could not be started.*NOT_SET_ANYWHERE"):
        async with open_mcp_servers([server]):
            pass


async def test_the_mcp_kit_declares_servers_in_the_store_options() -> None:
    """tools=["mcp"] with tool_options={"mcp": {...}} (what [tools.mcp] in harness.toml
    becomes) starts the servers and offers their tools through the run loop."""
    server = stdio_server(approval="auto")
    options = {"stdio": [{"name": "kit", "command": server.command, "args": list(server.args),
                          "tool_approvals": {"pid": "deny"}}]}
    async with create_session_store(
        agent=define_agent(name="kit-user", tools=["mcp"]),
        providers=[ScriptedProvider({"caller": caller})], default_model="scripted/caller",
        tool_options={"mcp": options},
    ) as store:
        result = await call(store, "kit__add", a=3, b=4)
        assert result.status == "waiting_approval"  # the kit's servers default to ask too
        session = await store.get_or_create("s")
        (pending,) = session.pending_approvals
        done = await session.approve(pending.approval_id)
        assert done.text == "7"
        denied = await call(store, "kit__pid")
        assert "not allowed" in denied.text


async def test_the_mcp_kit_reports_bad_options_with_their_path() -> None:
    """A kit option of the wrong shape fails the store's start naming its path."""
    with pytest.raises(ConfigError, match=r"stdio"):
        async with create_session_store(
            agent=define_agent(name="kit-user", tools=["mcp"]),
            providers=[ScriptedProvider({"caller": caller})], default_model="scripted/caller",
            tool_options={"mcp": {"stdio": [{"name": "x"}]}},
        ):
            pass
