"""W1: turn overhead of the kernel itself.

One session, 200 sequential turns; each turn is a user message, a model step that calls
the tool lookup(q: str), the tool returning "result", and a model step answering text.
Scripted provider (instant), memory storage, history accumulating. Prints p50/p95 ms per
turn, the medians of the first and last 20 turns, and the peak RSS.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time

import trio

from harness_kernel import ModelRequest, ToolResultPart, create_session_store, define_agent, tool
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall

TURNS = 200


@tool
async def lookup(q: str) -> str:
    """Look something up."""
    return "result"


def brain(request: ModelRequest) -> Reply:
    last = request.messages[-1]
    if last.role == "user":
        return Reply(tool_calls=[ToolCall("lookup", {"q": last.text})])
    part = last.parts[0]
    assert isinstance(part, ToolResultPart)
    return Reply(text=f"The answer is {part.content}.")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main() -> None:
    agent = define_agent(name="bench", tools=[lookup])
    async with create_session_store(
        agent=agent, providers=[ScriptedProvider({"brain": brain})], default_model="scripted/brain",
        autoload_plugins=False,
    ) as store:
        session = await store.create("w1")
        await session.send("warm-up")
        timings = []
        for i in range(TURNS):
            start = time.perf_counter()
            result = await session.send(f"question {i}")
            timings.append((time.perf_counter() - start) * 1000)
            assert result.status == "completed", result.error
        events = session.last_seq
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    first, last = statistics.median(timings[:20]), statistics.median(timings[-20:])
    rows = [
        ("turns", f"{TURNS}"),
        ("events in the log at the end", f"{events}"),
        ("p50 ms/turn", f"{percentile(timings, 0.50):.3f}"),
        ("p95 ms/turn", f"{percentile(timings, 0.95):.3f}"),
        ("median first 20 (ms)", f"{first:.3f}"),
        ("median last 20 (ms)", f"{last:.3f}"),
        ("last20 / first20", f"{last / first:.2f}x"),
        ("peak RSS (MB)", f"{rss_mb:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    print("  targets: p50 < 1 ms; last20/first20 <= 1.5x")
    sys.stdout.flush()


if __name__ == "__main__":
    trio.run(main)
