"""W9: the W2 persistence figures on PostgreSQL, beside SQLite, and watch's notice latency.

For H in 10 and 10,000 (W2's method, its ``measure``): prefill one session to H events,
then hydrate (``get_or_create`` on a fresh store, median of 3), read the whole log (a
bare storage, median of 3), and time 20 W1 turns (median ms per turn), on a throwaway
PostgreSQL cluster this script starts on 127.0.0.1 (tests/postgres/cluster.py) and on a
SQLite file.

Watch: one storage appends 200 single events to a session, one at a time, while another
storage's ``watch`` follows it; the figure is the time from calling ``append`` to the
notice reaching the watcher (p50 and p99), both in this process.

Targets (issue K11): turn(H=10,000) within 1.3x of turn(H=10), as for W2; notice p99
under 50 ms.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from w2_persistence import TURNS, captured_turn, measure, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness_kernel import Event, SessionRecord
from harness_kernel.testing import sample_events
from tests.postgres.cluster import Cluster, ClusterUnavailable

HISTORY = (10, 10_000)
NOTICES = 200


async def backends(turn: list[str], dsn: str, workdir: Path) -> None:
    from harness_kernel_postgres import PostgresOptions, build
    from harness_kernel_sqlite import SqliteStorage

    rows = {}
    for size in HISTORY:
        options: dict[str, Any] = {"dsn": dsn, "schema": f"w9_{size}"}
        rows[size] = await measure("postgres", options, lambda o=options: build(PostgresOptions(**o)), size, turn)
    table("postgres (a local cluster on 127.0.0.1, pool_size 4)", rows)
    rows = {}
    for size in HISTORY:
        path = str(workdir / f"sqlite-{size}.db")
        rows[size] = await measure("sqlite", {"path": path}, lambda p=path: SqliteStorage(p), size, turn)
    table("sqlite (beside it)", rows)


async def notice_latency(dsn: str) -> None:
    from harness_kernel_postgres import PostgresOptions, build

    writer = build(PostgresOptions(dsn=dsn, schema="w9_watch"))
    watcher = build(PostgresOptions(dsn=dsn, schema="w9_watch"))
    event = sample_events()[1]
    try:
        await writer.create(SessionRecord("watched", "bench", {}, 1.0, 1.0))
        await writer.append("watched", [Event(1, event.payload, 1.0)], 0)  # warm the pool
        latencies = []
        async with watcher.watch(["watched"]) as notices:
            for seq in range(2, NOTICES + 2):
                started = time.perf_counter()
                await writer.append("watched", [Event(seq, event.payload, 1.0)], seq - 1)
                notice = await notices.receive()
                latencies.append((time.perf_counter() - started) * 1000)
                assert notice.last_seq == seq
    finally:
        await writer.aclose()
        await watcher.aclose()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"  watch: append called -> notice received, {NOTICES} appends, one storage each side")
    print(f"    p50 {statistics.median(latencies):.2f} ms   p99 {p99:.2f} ms   (target p99 < 50 ms)")


async def main() -> None:
    try:
        cluster = Cluster()
    except ClusterUnavailable as exc:
        print(f"  postgres: skipped ({exc})")
        return
    with cluster, tempfile.TemporaryDirectory(prefix="w9-") as workdir:
        turn = await captured_turn()
        print(f"  one W1 turn = {len(turn)} durable events; {TURNS} turns timed per history size")
        await backends(turn, cluster.dsn, Path(workdir))
        await notice_latency(cluster.dsn)
    print("  targets: turn(H=10,000) <= 1.3x turn(H=10); watch p99 < 50 ms")


if __name__ == "__main__":
    trio.run(main)
