"""W4: the kernel through harness_kernel.asyncio and harness_kernel.sync, beside trio.

Two workloads, each run natively under ``trio.run``, through ``harness_kernel.asyncio``
under ``asyncio.run`` (trio in guest mode) and through ``harness_kernel.sync`` from the
main thread (the kernel in its portal thread):

- turns: W1's turn (a user message, a model step calling ``lookup``, the tool, a model
  step answering), 200 sequential turns on one session after a warm-up; p50 ms/turn and
  what the host adds to native trio's p50;
- streaming: runs whose model streams 400 text deltas, read to the end through
  ``stream()``; deltas per second (median of the runs) and the ratio to native.

The hosts take turns for ``--rounds`` rounds and each keeps its best round, so a busy
machine slowing one of them does not decide the comparison.

Targets (issue K9): asyncio adds under 0.3 ms per turn; asyncio streaming throughput
within 10% of native.

Usage: ``python bench/w4_hosts.py [--turns 200] [--runs 30] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio
from w1_turn_overhead import brain, lookup, percentile  # a W4 turn is a W1 turn

import harness_kernel.asyncio as hk_asyncio
import harness_kernel.sync as hk_sync
from harness_kernel import Finish, ModelRequest, TextDelta, create_session_store, define_agent
from harness_kernel.testing import ScriptedProvider

DELTAS = 400


async def deltas(_request: ModelRequest) -> AsyncIterator[Any]:
    for _ in range(DELTAS):
        yield TextDelta("x ")
    yield Finish("stop")


def options() -> dict[str, Any]:
    return {
        "agent": define_agent(name="bench", tools=[lookup]),
        "providers": [ScriptedProvider({"brain": brain, "deltas": deltas})],
        "default_model": "scripted/brain",
        "autoload_plugins": False,
    }


class Figures:
    def __init__(self) -> None:
        self.turns: list[float] = []
        self.streams: list[float] = []

    def turn_p50_ms(self) -> float:
        return percentile(self.turns, 0.5) * 1000

    def delta_rate(self) -> float:
        return DELTAS / statistics.median(self.streams)


def timed(figures: list[float], start: float) -> None:
    figures.append(time.perf_counter() - start)


def count_deltas(seen: int, event: Any) -> int:
    return seen + (event.type == "text.delta")


async def on_trio(turns: int, runs: int) -> Figures:
    figures = Figures()
    async with create_session_store(**options()) as store:
        session = await store.create("w4")
        await session.send("warm-up")
        for i in range(turns):
            start = time.perf_counter()
            result = await session.send(f"question {i}")
            timed(figures.turns, start)
            assert result.status == "completed", result.error
        streaming = await store.create("w4-stream")
        for _ in range(runs + 1):
            start, seen = time.perf_counter(), 0
            async with streaming.stream("go", model="scripted/deltas") as events:
                async for event in events:
                    seen = count_deltas(seen, event)
            timed(figures.streams, start)
            assert seen == DELTAS
    figures.streams.pop(0)  # the warm-up run
    return figures


async def on_asyncio(turns: int, runs: int) -> Figures:
    figures = Figures()
    async with hk_asyncio.create_session_store(**options()) as store:
        session = await store.create("w4")
        await session.send("warm-up")
        for i in range(turns):
            start = time.perf_counter()
            result = await session.send(f"question {i}")
            timed(figures.turns, start)
            assert result.status == "completed", result.error
        streaming = await store.create("w4-stream")
        for _ in range(runs + 1):
            start, seen = time.perf_counter(), 0
            async with streaming.stream("go", model="scripted/deltas") as events:
                async for event in events:
                    seen = count_deltas(seen, event)
            timed(figures.streams, start)
            assert seen == DELTAS
    figures.streams.pop(0)
    return figures


def on_sync(turns: int, runs: int) -> Figures:
    figures = Figures()
    with hk_sync.create_session_store(**options()) as store:
        session = store.create("w4")
        session.send("warm-up")
        for i in range(turns):
            start = time.perf_counter()
            result = session.send(f"question {i}")
            timed(figures.turns, start)
            assert result.status == "completed", result.error
        streaming = store.create("w4-stream")
        for _ in range(runs + 1):
            start, seen = time.perf_counter(), 0
            with streaming.stream("go", model="scripted/deltas") as events:
                for event in events:
                    seen = count_deltas(seen, event)
            timed(figures.streams, start)
            assert seen == DELTAS
    figures.streams.pop(0)
    return figures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    hosts: dict[str, Callable[[], Figures]] = {
        "trio (native)": lambda: trio.run(on_trio, args.turns, args.runs),
        "asyncio (guest)": lambda: asyncio.run(on_asyncio(args.turns, args.runs)),
        "sync (portal)": lambda: on_sync(args.turns, args.runs),
    }
    p50s: dict[str, list[float]] = {name: [] for name in hosts}
    rates: dict[str, list[float]] = {name: [] for name in hosts}
    for _ in range(args.rounds):
        for name, run in hosts.items():
            figures = run()
            p50s[name].append(figures.turn_p50_ms())
            rates[name].append(figures.delta_rate())
    native_p50, native_rate = min(p50s["trio (native)"]), max(rates["trio (native)"])
    print(f"  {'host':<16}  {'p50 ms/turn':>11}  {'added ms':>8}  {'deltas/s':>9}  {'vs native':>9}")
    for name in hosts:
        p50, rate = min(p50s[name]), max(rates[name])
        print(f"  {name:<16}  {p50:>11.3f}  {p50 - native_p50:>8.3f}  {rate:>9.0f}  {rate / native_rate:>8.0%}")
    print(
        f"  best of {args.rounds} rounds; each {args.turns} turns and {args.runs} streamed runs "
        f"of {DELTAS} deltas"
    )
    print("  targets: asyncio adds < 0.3 ms/turn; asyncio deltas/s within 10% of native")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
