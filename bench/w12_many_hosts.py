"""W12 (issue K11's "W6: many hosts"): 1, 2 and 4 host processes on one PostgreSQL.

A throwaway cluster is started on 127.0.0.1 (tests/postgres/cluster.py, as the tests
do). For each host count, every host process opens its own store on one schema and
creates 100 sessions; on a signal all of them run ``--turns`` W1 turns per session
(a user message, a model step calling ``lookup``, the tool, a model step answering,
against the scripted model), one turn per session at a time, the sessions of a host
concurrently. Figures:

- total turns/s: every host's turns over the wall time from the signal until the last
  host finished;
- delivery latency: a separate process (another host) subscribes to its store for the
  whole run; for every durable event it receives, the time from the event's
  ``append`` on the host that wrote it (the event's ``at``, taken just before the
  append) to its arrival at the subscriber, p50 and p99. It also counts the events it
  received against the events in storage (none may be missing).

A last line repeats the delivery figure without the load (2 hosts, one session each,
30 turns): under load the time is mostly an append waiting for the writing host's pool
(4 connections for 100 sessions) and the CPU the processes share.

Target (issue K11): delivery p99 under 50 ms. All processes share the machine (2 cores
here), so the figures include the CPU the hosts and PostgreSQL take from each other.

Usage: ``python bench/w12_many_hosts.py [--sessions 100] [--turns 2] [--hosts 1 2 4]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio
from w1_turn_overhead import brain, lookup, percentile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness_kernel import create_session_store, define_agent
from harness_kernel.testing import ScriptedProvider
from tests.postgres.cluster import Cluster, ClusterUnavailable

AGENT = define_agent(name="w12", tools=[lookup])
HERE = Path(__file__).resolve()


def open_store(dsn: str, schema: str) -> Any:
    return create_session_store(
        agent=AGENT, providers=[ScriptedProvider({"brain": brain})], default_model="scripted/brain",
        storage="postgres", storage_options={"dsn": dsn, "schema": schema, "pool_size": 4},
        autoload_plugins=True,
    )


async def host(dsn: str, schema: str, index: int, sessions: int, turns: int) -> None:
    """One host process: create the sessions, say ready, run on "go", report."""
    async with open_store(dsn, schema) as store:
        handles = [await store.create(f"h{index}-s{i}") for i in range(sessions)]
        print("ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)
        started = time.perf_counter()
        done = 0

        async def talk(session: Any) -> None:
            nonlocal done
            for turn in range(turns):
                result = await session.send(f"question {turn}")
                assert result.status == "completed", result
                done += 1

        async with trio.open_nursery() as nursery:
            for session in handles:
                nursery.start_soon(talk, session)
        print(json.dumps({"turns": done, "seconds": time.perf_counter() - started}), flush=True)


async def subscriber(dsn: str, schema: str) -> None:
    """Another host: receives every event the hosts append, until told to stop."""
    latencies: list[float] = []
    sessions: set[str] = set()
    async with open_store(dsn, schema) as store, store.subscribe() as events:
        print("ready", flush=True)
        async with trio.open_nursery() as nursery:

            async def until_stop() -> None:
                await trio.to_thread.run_sync(sys.stdin.readline)
                await trio.sleep(1.0)  # the last notices may still be on their way
                nursery.cancel_scope.cancel()

            nursery.start_soon(until_stop)
            async for item in events:
                if item.kind == "event":
                    latencies.append((time.time() - item.event.at) * 1000)
                    sessions.add(item.session_id)
        total = 0
        for sid in sessions:
            total += await store.storage.last_seq(sid)
    print(json.dumps({"latencies": latencies, "sessions": len(sessions), "stored": total}), flush=True)


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HERE), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=HERE.parents[1],
    )


def ready(child: subprocess.Popen[str]) -> None:
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError(f"a child did not start (it said {line!r})")


def signal(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None
    child.stdin.write("go\n")
    child.stdin.flush()


def last_json(child: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = child.communicate(timeout=900)
    if child.returncode:
        raise RuntimeError(f"a child exited with {child.returncode}")
    parsed: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return parsed


def run(dsn: str, hosts: int, sessions: int, turns: int) -> dict[str, Any]:
    schema = f"w12_{hosts}x{sessions}"
    watcher = spawn("--subscriber", "--dsn", dsn, "--schema", schema)
    children: list[subprocess.Popen[str]] = []
    try:
        ready(watcher)
        children = [
            spawn("--host", str(i), "--dsn", dsn, "--schema", schema, "--sessions", str(sessions), "--turns", str(turns))
            for i in range(hosts)
        ]
        for child in children:
            ready(child)
        started = time.perf_counter()
        for child in children:
            signal(child)
        reports = [last_json(child) for child in children]
        wall = time.perf_counter() - started
        signal(watcher)
        seen = last_json(watcher)
    finally:
        for child in [watcher, *children]:
            if child.poll() is None:
                child.kill()
                child.wait()
    latencies = sorted(seen["latencies"])
    done = sum(r["turns"] for r in reports)
    return {
        "turns": done,
        "turns_per_s": done / wall,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": percentile(latencies, 0.99) if latencies else float("nan"),
        "received": len(latencies),
        "stored": seen["stored"],
        "sessions": seen["sessions"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--host", type=int)
    parser.add_argument("--subscriber", action="store_true")
    parser.add_argument("--dsn")
    parser.add_argument("--schema")
    args = parser.parse_args()
    if args.host is not None:
        trio.run(host, args.dsn, args.schema, args.host, args.sessions, args.turns)
        return
    if args.subscriber:
        trio.run(subscriber, args.dsn, args.schema)
        return
    try:
        cluster = Cluster()
    except ClusterUnavailable as exc:
        print(f"  postgres: skipped ({exc})")
        return
    with cluster:
        print(f"  {args.sessions} sessions per host, {args.turns} W1 turns each, one turn per session at a time")
        print("  hosts   turns   turns/s   delivery p50 ms   p99 ms   events received/stored")
        for hosts in args.hosts:
            row = run(cluster.dsn, hosts, args.sessions, args.turns)
            print(
                f"  {hosts:5d}   {row['turns']:5d}   {row['turns_per_s']:7.1f}   {row['p50']:15.2f}   {row['p99']:6.2f}"
                f"   {row['received']}/{row['stored']}",
                flush=True,
            )
        # The same delivery path without the load: 2 hosts, one session each.
        row = run(cluster.dsn, 2, 1, 30)
        print(
            f"  quiet: 2 hosts x 1 session x 30 turns: delivery p50 {row['p50']:.2f} ms, p99 {row['p99']:.2f} ms"
            f"   {row['received']}/{row['stored']}",
            flush=True,
        )
    print("  target: delivery p99 < 50 ms (append on one host -> a subscriber on another)")


if __name__ == "__main__":
    main()
