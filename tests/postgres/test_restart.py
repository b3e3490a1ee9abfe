"""The PostgreSQL server restarted in the middle of a run: nothing acknowledged is lost,
the run finishes, and the session goes on."""

from __future__ import annotations

from typing import Any

import trio

from harness_kernel import ModelRequest, ToolResultPart, create_session_store, define_agent, tool
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall
from harness_kernel_postgres import PostgresOptions, build
from tests.postgres.cluster import Cluster

started = trio.Event()
release = trio.Event()


@tool
async def wait_for_restart() -> str:
    """Runs while the test restarts the server."""
    started.set()
    await release.wait()
    return "after the restart"


def brain(request: ModelRequest) -> Reply:
    last = request.messages[-1]
    if any(isinstance(p, ToolResultPart) for p in last.parts):
        return Reply(text=f"tool said: {last.parts[0].content}")  # type: ignore[union-attr]
    if last.text == "restart":
        return Reply(tool_calls=[ToolCall("wait_for_restart", {})])
    return Reply(text=f"re: {last.text}")


async def test_a_server_restart_mid_run_loses_no_acknowledged_event(own_cluster: Cluster, schema: str) -> None:
    """While a tool runs, ``pg_ctl restart`` cuts every connection. The events stored
    before it are all there after it, in place; the run completes (its next appends
    retried on new connections); a second send on the session works."""
    global started, release
    started, release = trio.Event(), trio.Event()
    options: dict[str, Any] = {"dsn": own_cluster.dsn, "schema": schema, "retry_base_delay_ms": 20}
    async with create_session_store(
        agent=define_agent(name="restarts", tools=[wait_for_restart]),
        providers=[ScriptedProvider({"main": brain})], default_model="scripted/main",
        storage="postgres", storage_options=options,
    ) as store:
        session = await store.create("restart-1")
        results: list[Any] = []
        async with trio.open_nursery() as nursery:

            async def send() -> None:
                results.append(await session.send("restart"))

            nursery.start_soon(send)
            with trio.fail_after(60):
                await started.wait()
            reader = build(PostgresOptions(**options))
            try:
                before = await reader.read("restart-1")
            finally:
                await reader.aclose()
            assert [e.type for e in before][-1] == "tool.started"
            await trio.to_thread.run_sync(own_cluster.restart)
            release.set()
        [result] = results
        assert (result.status, result.text) == ("completed", "tool said: after the restart")
        again = await session.send("still there?")
        assert (again.status, again.text) == ("completed", "re: still there?")

    reader = build(PostgresOptions(**options))
    try:
        after = await reader.read("restart-1")
    finally:
        await reader.aclose()
    assert after[: len(before)] == before
    assert [e.seq for e in after] == list(range(1, len(after) + 1))
    assert [e.type for e in after].count("run.finished") == 2
