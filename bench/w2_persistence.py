"""W2: persistence scaling of the storage backends (file, sqlite, s3 on a local server).

Per backend and for H in 10, 1,000 and 10,000: prefill one session to H events (whole
W1 turns, appended through the storage, then single user messages up to exactly H),
then

- hydrate: ``get_or_create`` of the session on a fresh store (median of 3 fresh stores;
  each store first answers one ``list`` call, so client start-up is not counted);
- read: ``storage.read`` of the whole log on a fresh storage, after one ``load`` (the
  backend's share of hydrating; median of 3);
- both also in CPU milliseconds of this process (``time.process_time``, all threads),
  which a busy machine inflates less than wall time (for s3 it includes the local
  server's threads);
- turns: one untimed warm-up turn, then 20 more W1 turns on the hydrated session (user message, a model step calling
  ``lookup(q)``, the tool answering "result", a model step answering text; scripted
  provider), median ms per turn.

A ``memory`` row (the builtin backend, nothing persisted) shows the kernel's own share.

Targets (issue K3): turn cost at H=10,000 within 1.3x of H=10; hydrating 10,000 events
under 150 ms for sqlite and file. S3 runs against moto's server on 127.0.0.1 and is
reported separately (its figures are the local server's, not S3's).
"""

from __future__ import annotations

import logging
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import trio
from w1_turn_overhead import brain, lookup  # a W2 turn is a W1 turn

from harness_kernel import (
    Event,
    MemoryStorage,
    SessionStorage,
    create_session_store,
    define_agent,
)
from harness_kernel.codec import decode_event, dumps, encode_event, loads
from harness_kernel.testing import ScriptedProvider

HISTORY = (10, 1_000, 10_000)
TURNS = 20
HYDRATIONS = 3
SESSION = "w2-session"
_ID = re.compile(r'"((?:run|msg|call)_[0-9a-f]+_[0-9a-f]+)"')


AGENT = define_agent(name="bench", tools=[lookup])


def store_for(storage: str | SessionStorage, options: dict[str, Any] | None) -> Any:
    return create_session_store(
        agent=AGENT, providers=[ScriptedProvider({"brain": brain})], default_model="scripted/brain",
        storage=storage, storage_options=options,
    )


async def captured_turn() -> list[str]:
    """The durable events of one real W1 turn, as JSON texts."""
    memory = MemoryStorage()
    async with create_session_store(
        agent=AGENT, providers=[ScriptedProvider({"brain": brain})], default_model="scripted/brain",
        storage=memory, autoload_plugins=False,
    ) as store:
        session = await store.create("capture")
        await session.send("question")
    return [dumps(encode_event(e)) for e in await memory.read("capture")]


def history(turn: list[str], size: int) -> list[Event]:
    """``size`` events: copies of the captured turn with fresh ids, then user messages."""
    events: list[Event] = []
    copy = 0
    while len(events) + len(turn) <= size:
        copy += 1
        for text in turn:
            payload = loads(_ID.sub(lambda m, tag=copy: f'"{m.group(1)}_{tag}"', text))
            payload["seq"] = len(events) + 1
            events.append(decode_event(payload))
    user = next(t for t in turn if '"role":"user"' in t)
    while len(events) < size:
        payload = loads(_ID.sub(lambda m: f'"{m.group(1)}_pad{len(events)}"', user))
        payload.update(seq=len(events) + 1, run_id=None)
        events.append(decode_event(payload))
    return events


async def measure(
    name: str | SessionStorage,
    options: dict[str, Any] | None,
    direct: Callable[[], SessionStorage],
    size: int,
    turn: list[str],
) -> dict[str, float]:
    """``name``/``options`` open stores (a plugin name, or one shared instance for the
    memory baseline); ``direct()`` opens the same data as a bare storage."""
    async with store_for(name, options) as store:
        await store.create(SESSION)
    storage = direct()
    events = history(turn, size)
    for start in range(0, len(events), 500):
        await storage.append(SESSION, events[start : start + 500], start)
    del events  # only the store under test should hold the history
    if storage is not name:
        await storage.aclose()

    reads, read_cpu = [], []
    for _ in range(HYDRATIONS):
        reader = direct()
        await reader.load(SESSION)  # client and connection start-up are not part of the read
        started, cpu = time.perf_counter(), time.process_time()
        assert len(await reader.read(SESSION)) == size
        reads.append((time.perf_counter() - started) * 1000)
        read_cpu.append((time.process_time() - cpu) * 1000)
        if reader is not name:
            await reader.aclose()

    hydrations, hydration_cpu = [], []
    for attempt in range(HYDRATIONS):
        async with store_for(name, options) as store:
            await store.list(limit=1)
            started, cpu = time.perf_counter(), time.process_time()
            session = await store.get_or_create(SESSION)
            hydrations.append((time.perf_counter() - started) * 1000)
            hydration_cpu.append((time.process_time() - cpu) * 1000)
            assert session.last_seq == size
            if attempt < HYDRATIONS - 1:
                continue
            assert (await session.send("warm-up")).status == "completed"
            timings = []
            for i in range(TURNS):
                started = time.perf_counter()
                result = await session.send(f"question {i}")
                timings.append((time.perf_counter() - started) * 1000)
                assert result.status == "completed", result.error
    return {
        "hydrate": statistics.median(hydrations),
        "hydrate_cpu": statistics.median(hydration_cpu),
        "read": statistics.median(reads),
        "read_cpu": statistics.median(read_cpu),
        "turn": statistics.median(timings),
    }


def table(title: str, rows: dict[int, dict[str, float]]) -> None:
    print(f"  {title}")
    print(
        f"    {'H':>7}  {'hydrate ms':>10}  {'(cpu ms)':>8}  {'read ms':>8}  {'(cpu ms)':>8}"
        f"  {'turn ms, median of 20':>21}  {'vs H=10':>7}"
    )
    base = rows[HISTORY[0]]["turn"]
    for size, row in rows.items():
        print(
            f"    {size:>7,}  {row['hydrate']:>10.1f}  {row['hydrate_cpu']:>8.1f}  {row['read']:>8.1f}"
            f"  {row['read_cpu']:>8.1f}  {row['turn']:>21.2f}  {row['turn'] / base:>6.2f}x"
        )
    sys.stdout.flush()


async def local_backends(turn: list[str], workdir: Path) -> None:
    from harness_kernel_file import FileStorage
    from harness_kernel_sqlite import SqliteStorage

    rows = {}
    for size in HISTORY:
        memory = MemoryStorage()
        rows[size] = await measure(memory, None, lambda memory=memory: memory, size, turn)
    table("memory (baseline: the kernel alone, no persistence)", rows)
    for name in ("file", "sqlite"):
        rows = {}
        for size in HISTORY:
            where = workdir / f"{name}-{size}"
            if name == "file":
                options: dict[str, Any] = {"root": str(where)}
                direct: Callable[[], SessionStorage] = lambda where=where: FileStorage(where)  # noqa: E731
            else:
                options = {"path": str(where / "sessions.db")}
                direct = lambda where=where: SqliteStorage(str(where / "sessions.db"))  # noqa: E731
            rows[size] = await measure(name, options, direct, size, turn)
        table(name, rows)


async def s3_backend(turn: list[str]) -> None:
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        print("  s3: skipped (install the dev extras: moto[server,s3] and boto3)")
        return
    from harness_kernel_s3 import S3Options, build

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        rows = {}
        for size in HISTORY:
            client.create_bucket(Bucket=f"w2-bench-{size}")  # one bucket each: moto lists by scanning
            options = {"bucket": f"w2-bench-{size}", "endpoint_url": endpoint, "region": "us-east-1"}
            rows[size] = await measure("s3", options, lambda o=options: build(S3Options(**o)), size, turn)
        table("s3 (moto server on 127.0.0.1, reported separately)", rows)
    finally:
        server.stop()


async def main() -> None:
    turn = await captured_turn()
    print(f"  one W1 turn = {len(turn)} durable events; {TURNS} turns timed per history size")
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="w2-")))
        await local_backends(turn, workdir)
    await s3_backend(turn)
    print("  targets: turn(H=10,000) <= 1.3x turn(H=10); hydrate(10,000) < 150 ms for file and sqlite")


if __name__ == "__main__":
    trio.run(main)
