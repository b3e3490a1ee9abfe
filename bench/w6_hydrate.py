"""W6 (issue K7): hydrating a long session from its record's snapshot.

Per backend (file, sqlite) and for H in 10,000 and 100,000: prefill one session to H
events (copies of a real W1 turn, appended through the storage), load it once through a
store (which folds the log and saves the record's snapshot), then

- hydrate: ``get_or_create`` on a fresh store (median of 3; each store first answers
  one ``list`` call, so client start-up is not counted), in wall and CPU milliseconds;
- first turn: the first ``send`` after hydrating (it reads the history the model needs,
  which hydration skipped), then the median of 10 later turns.

Targets (issue K7): hydrate under 10 ms, and H=100,000 within 1.5x of H=10,000; the
first turn after hydrating 10,000 events under 100 ms.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from w1_turn_overhead import brain
from w2_persistence import AGENT, captured_turn, history

from harness_kernel import create_session_store
from harness_kernel.testing import ScriptedProvider

HISTORY = (10_000, 100_000)
HYDRATIONS = 3
TURNS = 10
SESSION = "w6-session"


def store_for(name: str, options: dict[str, Any]) -> Any:
    return create_session_store(
        agent=AGENT, providers=[ScriptedProvider({"brain": brain})], default_model="scripted/brain",
        storage=name, storage_options=options,
    )


async def measure(name: str, options: dict[str, Any], size: int, turn: list[str]) -> dict[str, float]:
    async with store_for(name, options) as store:
        await store.create(SESSION)
        storage = store.storage
        events = history(turn, size)
        for start in range(0, len(events), 1000):
            await storage.append(SESSION, events[start : start + 1000], start)
        del events
    async with store_for(name, options) as store:
        await store.get_or_create(SESSION)  # the first load folds the log and saves the snapshot
    walls, cpus = [], []
    for attempt in range(HYDRATIONS):
        async with store_for(name, options) as store:
            await store.list(limit=1)
            started, cpu = time.perf_counter(), time.process_time()
            session = await store.get_or_create(SESSION)
            walls.append((time.perf_counter() - started) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
            assert session.last_seq == size
            if attempt < HYDRATIONS - 1:
                continue
            started = time.perf_counter()
            assert (await session.send("first question")).status == "completed"
            first = (time.perf_counter() - started) * 1000
            later = []
            for i in range(TURNS):
                started = time.perf_counter()
                assert (await session.send(f"question {i}")).status == "completed"
                later.append((time.perf_counter() - started) * 1000)
    return {
        "hydrate": statistics.median(walls), "hydrate_cpu": statistics.median(cpus),
        "first": first, "turn": statistics.median(later),
    }


async def main() -> None:
    turn = await captured_turn()
    print(f"  one W1 turn = {len(turn)} durable events; the session is hydrated from its snapshot")
    with tempfile.TemporaryDirectory(prefix="w6-") as tmp:
        for name in ("file", "sqlite"):
            print(f"  {name}")
            print(f"    {'H':>7}  {'hydrate ms':>10}  {'(cpu ms)':>8}  {'first turn ms':>13}  {'turn ms, median of 10':>21}")
            rows = {}
            for size in HISTORY:
                where = Path(tmp) / f"{name}-{size}"
                options = {"root": str(where)} if name == "file" else {"path": str(where / "sessions.db")}
                rows[size] = row = await measure(name, options, size, turn)
                print(
                    f"    {size:>7,}  {row['hydrate']:>10.2f}  {row['hydrate_cpu']:>8.2f}  {row['first']:>13.1f}"
                    f"  {row['turn']:>21.2f}"
                )
            ratio = rows[HISTORY[1]]["hydrate"] / rows[HISTORY[0]]["hydrate"]
            print(f"    hydrate(100,000) / hydrate(10,000) = {ratio:.2f}x")
            sys.stdout.flush()
    print("  targets: hydrate < 10 ms and 100,000 within 1.5x of 10,000; first turn after 10,000 < 100 ms")


if __name__ == "__main__":
    trio.run(main)
