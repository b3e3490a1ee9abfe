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

Then the decode cost per event (issue K15): 10,000 events of real turns as a backend
reads them (one JSON array of the stored rows), split into ``json.loads`` and
structuring (``codec.decode_event``), both with the garbage collector paused as the
backends pause it. "before" is the decoding of K7 (kept here as it was: a copy of each
event's dict for the schema check, ``converter.structure`` dispatching on the class
each time, a copy of each part's dict); "after" is the kernel's ``decode_event``. Both
are timed in the same run, interleaved, best of 7 rounds.
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio
from w1_turn_overhead import brain
from w2_persistence import AGENT, captured_turn, history

from harness_kernel import Event, codec, create_session_store
from harness_kernel._records import PAYLOAD_TYPES, Part, UnknownPayload
from harness_kernel.codec import converter, decode_event, dumps, encode_event, loads
from harness_kernel.storage import gc_paused
from harness_kernel.testing import ScriptedProvider

HISTORY = (10_000, 100_000)
HYDRATIONS = 3
TURNS = 10
SESSION = "w6-session"
DECODED = 10_000


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


def _decode_before(payload: Any) -> Event:
    """K7's ``decode_event``, for the before/after figure."""
    data = dict(payload)
    data.pop("schema_version", 1)
    kind = data["type"]
    cls = PAYLOAD_TYPES.get(kind)
    body = converter.structure(data["data"], cls) if cls else UnknownPayload(kind, data["data"])
    return Event(seq=int(data["seq"]), payload=body, at=float(data["at"]), run_id=data.get("run_id"))


def _structure_part_before(value: Any, _: Any) -> Any:
    data = dict(value)
    tag = data.pop("kind")
    return codec._PART_HOOKS[tag](data, codec._PART_BY_TAG[tag])


def decode_cost(turn: list[str]) -> None:
    rows = [dumps(encode_event(e)) for e in history(turn, DECODED)]
    text = "[" + ",".join(rows) + "]"
    best = {"loads": math.inf, "before": math.inf, "after": math.inf}
    with gc_paused(DECODED):
        payloads = loads(text)
        for _ in range(7):
            started = time.perf_counter()
            loads(text)
            best["loads"] = min(best["loads"], time.perf_counter() - started)
            with _parts_decoded_as_before():
                started = time.perf_counter()
                before = [_decode_before(p) for p in payloads]
                best["before"] = min(best["before"], time.perf_counter() - started)
            started = time.perf_counter()
            after = [decode_event(p) for p in payloads]
            best["after"] = min(best["after"], time.perf_counter() - started)
    assert before == after, "both decode the same events"
    per = {k: v / DECODED * 1e6 for k, v in best.items()}
    print(f"  decode cost per event ({DECODED:,} events, {len(text) / DECODED:.0f} bytes each as stored)")
    print(f"    {'':<8}  {'json.loads us':>13}  {'structure us':>12}  {'total us':>8}")
    for name in ("before", "after"):
        total = per["loads"] + per[name]
        print(f"    {name:<8}  {per['loads']:>13.2f}  {per[name]:>12.2f}  {total:>8.2f}")
    print(
        f"    structuring after/before = {per['after'] / per['before']:.2f}x; total after/before = "
        f"{(per['loads'] + per['after']) / (per['loads'] + per['before']):.2f}x"
        "  (target: lower; json.loads is the C json module either way)"
    )


@contextmanager
def _parts_decoded_as_before() -> Iterator[None]:
    converter.register_structure_hook(Part, _structure_part_before)
    converter.register_structure_hook_func(
        lambda cls: cls == tuple[Part, ...],
        lambda values, _: tuple(_structure_part_before(v, None) for v in values),
    )
    try:
        yield
    finally:
        converter.register_structure_hook(Part, codec._structure_part)
        converter.register_structure_hook_func(
            lambda cls: cls == tuple[Part, ...],
            lambda values, _: tuple(codec._structure_part(v, None) for v in values),
        )


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
    decode_cost(turn)


if __name__ == "__main__":
    if sys.argv[1:] == ["decode"]:  # only the decode figure
        decode_cost(trio.run(captured_turn))
    else:
        trio.run(main)
