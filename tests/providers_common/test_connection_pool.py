"""The providers' connection handling (``harness_kernel.http.ConnectionPool``), seen from a
real HTTP server on 127.0.0.1: how many connections it opens, which it reuses, what a
request waits for, and that cancelling never leaves the pool stuck."""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.lowlevel
import trio.testing

from harness_kernel import create_session_store, define_agent
from harness_kernel.errors import ProviderUnavailable
from harness_kernel.http import ConnectionPool
from harness_kernel_anthropic import AnthropicProvider
from harness_kernel_openai import OpenAIProvider, ResponsesProvider
from tests.providers_common.events import collect, request
from tests.providers_common.loopback import Exchange, LoopbackServer
from tests.providers_common.scripted import Reply, ScriptedAPI, Wire

KEY = "sk-pool-test-not-a-real-key-0000"


class Gate:
    """A handler whose requests all wait for ``open`` (or answer at once when it is set);
    it counts the requests being answered at the same time."""

    def __init__(self) -> None:
        self.open = trio.Event()
        self.arrived = 0
        self.active = 0
        self.most_active = 0
        self.any_arrived = trio.Event()

    async def __call__(self, exchange: Exchange) -> None:
        self.arrived += 1
        self.any_arrived.set()
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await exchange.start(200, [("content-type", "text/plain")])
            await self.open.wait()
            await exchange.write(b"hello ")
            await trio.lowlevel.checkpoint()
            await exchange.write(b"world")
            await exchange.end()
        finally:
            self.active -= 1


async def _get(client: httpx.AsyncClient, url: str) -> str:
    response = await client.post(url, json={"q": 1})
    response.raise_for_status()
    return response.text


async def test_a_burst_over_a_small_pool_all_succeeds_on_k_connections(loopback: LoopbackServer) -> None:
    """20 concurrent requests over a pool of 3: every one succeeds, the server never sees
    more than 3 at once, and it sees exactly 3 connections, each reused, never reopened."""
    gate = Gate()
    loopback.handler = gate
    pool = ConnectionPool(max_connections=3)
    texts: list[str] = []
    async with httpx.AsyncClient(transport=pool) as client:

        async def one() -> None:
            texts.append(await _get(client, f"{loopback.url}/x"))

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(one)
            await trio.testing.wait_all_tasks_blocked()
            assert (gate.active, pool.in_flight, pool.waiting) == (3, 3, 17)
            gate.open.set()
        assert (pool.in_flight, pool.waiting, pool.open_connections) == (0, 0, 3)
    assert texts == ["hello world"] * 20
    assert gate.most_active == 3
    assert len(loopback.connections) == 3
    assert all(c.requests >= 1 for c in loopback.connections)
    assert sum(c.requests for c in loopback.connections) == 20
    with trio.fail_after(10):
        for connection in loopback.connections:  # aclose closed the idle ones
            await connection.closed.wait()


async def test_every_connection_of_a_large_burst_is_kept_for_the_next(loopback: LoopbackServer) -> None:
    """Two bursts of 150 concurrent requests (more than the 100 idle connections httpx
    keeps by default): the second burst runs on the first burst's 150 connections."""
    gate = Gate()
    loopback.handler = gate
    async with httpx.AsyncClient(transport=ConnectionPool(max_connections=1000)) as client:
        for burst in range(2):
            gate.open = trio.Event()
            async with trio.open_nursery() as nursery:
                for _ in range(150):
                    nursery.start_soon(_get, client, f"{loopback.url}/x")
                await trio.testing.wait_all_tasks_blocked()
                assert gate.active == 150, burst
                gate.open.set()
    assert len(loopback.connections) == 150
    assert {c.requests for c in loopback.connections} == {2}


async def test_cancelled_waiters_leave_the_pool_consistent(loopback: LoopbackServer) -> None:
    """With one connection busy, two waiters are cancelled while they wait: the pool then
    serves the remaining waiter and later requests on that same connection; nothing hangs."""
    gate = Gate()
    loopback.handler = gate
    pool = ConnectionPool(max_connections=1)
    async with httpx.AsyncClient(transport=pool) as client:
        results: list[str] = []

        async def one() -> None:
            results.append(await _get(client, f"{loopback.url}/x"))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(one)
                await gate.any_arrived.wait()
                with trio.CancelScope() as doomed:
                    async with trio.open_nursery() as waiters:
                        waiters.start_soon(one)
                        waiters.start_soon(one)
                        await trio.testing.wait_all_tasks_blocked()
                        assert pool.waiting == 2
                        nursery.start_soon(one)  # a third waiter, behind the two
                        await trio.testing.wait_all_tasks_blocked()
                        doomed.cancel()
                assert pool.waiting == 1
                gate.open.set()
            assert results == ["hello world"] * 2
            assert await _get(client, f"{loopback.url}/x") == "hello world"
        assert (pool.in_flight, pool.waiting) == (0, 0)
    assert len(loopback.connections) == 1
    assert loopback.connections[0].requests == 3


async def test_a_response_cancelled_mid_body_closes_its_connection_and_frees_its_slot(
    loopback: LoopbackServer,
) -> None:
    """A streamed response abandoned half-read (its reader cancelled) closes that
    connection (its state is unknown) and the next request gets a new one."""
    gate = Gate()
    loopback.handler = gate
    pool = ConnectionPool(max_connections=1)
    async with httpx.AsyncClient(transport=pool) as client:
        with trio.move_on_after(0.5) as scope:  # the gate stays shut: the body never ends
            async with client.stream("POST", f"{loopback.url}/x", json={}) as response:
                async for _ in response.aiter_bytes():
                    pass
        assert scope.cancelled_caught
        with trio.fail_after(10):
            await loopback.connections[0].closed.wait()
            gate.open.set()
            assert await _get(client, f"{loopback.url}/x") == "hello world"
        assert (pool.in_flight, pool.open_connections) == (0, 1)
    assert [c.requests for c in loopback.connections] == [1, 1]


async def test_a_connection_the_server_closed_is_not_reused(loopback: LoopbackServer) -> None:
    """The server closes a keep-alive connection after a complete response: the next
    request quietly goes on a new connection instead of failing on the dead one."""

    async def answer_then_close(exchange: Exchange) -> None:
        await exchange.respond(200, b"ok")
        if exchange.connection.number == 1:
            await exchange.close()

    loopback.handler = answer_then_close
    async with httpx.AsyncClient(transport=ConnectionPool(max_connections=4)) as client:
        assert await _get(client, f"{loopback.url}/x") == "ok"
        with trio.fail_after(10):
            await loopback.connections[0].closed.wait()
        assert await _get(client, f"{loopback.url}/x") == "ok"
        assert await _get(client, f"{loopback.url}/x") == "ok"
    assert [c.requests for c in loopback.connections] == [1, 2]


async def test_idle_connections_count_against_the_limit_across_servers(nursery: trio.Nursery) -> None:
    """With max_connections=1, a request to a second server closes the idle connection to
    the first: open connections never exceed the limit, idle or not."""

    async def ok(exchange: Exchange) -> None:
        await exchange.respond(200, b"ok")

    first, second = LoopbackServer(ok), LoopbackServer(ok)
    await nursery.start(first.serve)
    await nursery.start(second.serve)
    pool = ConnectionPool(max_connections=1)
    async with httpx.AsyncClient(transport=pool) as client:
        assert await _get(client, f"{first.url}/x") == "ok"
        assert await _get(client, f"{second.url}/x") == "ok"
        with trio.fail_after(10):
            await first.connections[0].closed.wait()
        assert pool.open_connections == 1
        assert not second.connections[0].closed.is_set()


async def test_a_pool_timeout_is_httpx_pool_timeout(loopback: LoopbackServer, autojump_clock: trio.testing.MockClock) -> None:
    """httpx's pool timeout bounds the wait for a free connection (mock time)."""
    gate = Gate()
    loopback.handler = gate
    pool = ConnectionPool(max_connections=1)
    async with httpx.AsyncClient(transport=pool, timeout=httpx.Timeout(None, pool=2.0)) as client, trio.open_nursery() as nursery:
        nursery.start_soon(_get, client, f"{loopback.url}/x")
        await gate.any_arrived.wait()
        with pytest.raises(httpx.PoolTimeout):
            await _get(client, f"{loopback.url}/x")
        gate.open.set()
    assert len(loopback.requests) == 1


def test_max_connections_must_be_positive() -> None:
    """A pool of no connections is refused when it is built."""
    with pytest.raises(ValueError, match="max_connections must be at least 1"):
        ConnectionPool(max_connections=0)


# -- through the providers -----------------------------------------------------------------

PROVIDERS: list[tuple[Wire, type[OpenAIProvider] | type[AnthropicProvider], str]] = [
    ("openai", OpenAIProvider, "/v1"),
    ("responses", ResponsesProvider, "/v1"),
    ("anthropic", AnthropicProvider, ""),
]


@pytest.mark.parametrize(("wire", "provider_class", "prefix"), PROVIDERS, ids=[p[0] for p in PROVIDERS])
async def test_a_provider_streams_many_turns_at_once_over_max_connections(
    loopback: LoopbackServer,
    wire: Wire,
    provider_class: type[OpenAIProvider] | type[AnthropicProvider],
    prefix: str,
) -> None:
    """30 sessions at once on a provider with max_connections=4: every turn completes,
    the server sees at most 4 connections, each serving many requests (keep-alive)."""
    loopback.handler = ScriptedAPI(wire, lambda body: Reply("Hello from the pool."), chunk_delay=0.001)
    provider = provider_class(base_url=f"{loopback.url}{prefix}", api_key=KEY, max_connections=4)
    agent = define_agent(name="pool", instructions="Answer.")
    results = []
    async with create_session_store(
        agent=agent, providers=[provider], default_model=f"{provider.name}/model-x"
    ) as store:

        async def turn(i: int) -> None:
            results.append(await store.send(f"s{i}", "Hi"))

        async with trio.open_nursery() as nursery:
            for i in range(30):
                nursery.start_soon(turn, i)
    await provider.aclose()
    assert [(r.status, r.text) for r in results] == [("completed", "Hello from the pool.")] * 30
    assert 1 <= len(loopback.connections) <= 4
    assert sum(c.requests for c in loopback.connections) == 30


async def test_a_turn_waiting_for_a_connection_times_out_within_its_timeout(
    loopback: LoopbackServer, autojump_clock: trio.testing.MockClock
) -> None:
    """The wait for a free connection counts against the provider's ``timeout``: with
    the only connection held by a silent server, a second request fails after 30 s."""
    gate = Gate()
    loopback.handler = gate
    provider = OpenAIProvider(base_url=f"{loopback.url}/v1", api_key=KEY, max_connections=1, timeout=30.0)
    try:
        async with trio.open_nursery() as nursery:

            async def hold() -> None:
                with pytest.raises(ProviderUnavailable):
                    await collect(provider, request("m"))

            nursery.start_soon(hold)
            await gate.any_arrived.wait()
            start = trio.current_time()
            with pytest.raises(ProviderUnavailable, match="timed out after 30 s, before the response arrived"):
                await collect(provider, request("m"))
            assert trio.current_time() - start <= 30.0
    finally:
        await provider.aclose()
    assert len(loopback.requests) == 1

