"""W2: persistence scaling of the storage backends (file, sqlite, s3 on a local server).

H counts messages, as other frameworks count history (a W1 turn is 4 messages and 9
durable events; the event count is shown beside). Per backend and for H in 10, 1,000
and 10,000 messages: prefill one session (whole W1 turns, appended through the storage,
then single user messages up to exactly H messages), then

- hydrate: ``get_or_create`` of the session on a fresh store (median of 3 fresh stores;
  each store first answers one ``list`` call, so client start-up is not counted);
- read: ``storage.read`` of the whole log on a fresh storage, after one ``load`` (the
  backend's share of hydrating; median of 3);
- both also in CPU milliseconds of this process (``time.process_time``, all threads),
  which a busy machine inflates less than wall time (for s3 it includes the local
  server's threads);
- turns: one untimed warm-up turn, then 20 more W1 turns on the hydrated session (user
  message, a model step calling ``lookup(q)``, the tool answering "result", a model step
  answering text; scripted provider), median ms per turn.

Then, per durable backend (sqlite with ``synchronous=FULL`` and ``NORMAL``, file), the
cost of durability (issue K15): the durable commits one turn makes (counted through a
storage wrapper: every ``append``, ``save`` and ``create``), and the turn's time over
the raw cost of those same commits, measured in the same run: the turn's commits
replayed with the same bytes straight on the medium (``sqlite3`` transactions with the
same pragmas; for file, the same line appends with ``fdatasync`` and record
replacements with ``fsync`` and rename), with no kernel, no threads and no JSON work.

A ``memory`` row (the builtin backend, nothing persisted) shows the kernel's own share.

Targets: turn cost at H=10,000 within 1.3x of H=10 and hydrating 10,000 events under
150 ms for sqlite and file (K3); 4 durable commits per one-tool turn, and turn time
under 3x the raw cost of its commits with ``synchronous=FULL`` (K15). S3 runs against
moto's server on 127.0.0.1 and is reported separately (its figures are the local
server's, not S3's).
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import trio
from w1_turn_overhead import brain, lookup  # a W2 turn is a W1 turn

from harness_kernel import (
    Event,
    MemoryStorage,
    SessionRecord,
    SessionStorage,
    create_session_store,
    define_agent,
)
from harness_kernel.codec import decode_event, dumps, encode_event, encode_record, loads
from harness_kernel.contracts import Page, SessionFilter
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


def _is_message(text: str) -> bool:
    return '"type":"message.added"' in text or '"type":"tool.finished"' in text


def history(turn: list[str], size: int, *, messages: bool = False) -> list[Event]:
    """``size`` events (or, with ``messages``, events holding ``size`` messages): copies
    of the captured turn with fresh ids, then user messages."""
    per_turn = sum(map(_is_message, turn)) if messages else len(turn)
    events: list[Event] = []
    count = copy = 0
    while count + per_turn <= size:
        copy += 1
        count += per_turn
        for text in turn:
            payload = loads(_ID.sub(lambda m, tag=copy: f'"{m.group(1)}_{tag}"', text))
            payload["seq"] = len(events) + 1
            events.append(decode_event(payload))
    user = next(t for t in turn if '"role":"user"' in t)
    while count < size:
        count += 1
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
    events = history(turn, size, messages=True)
    count = len(events)
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
        assert len(await reader.read(SESSION)) == count
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
            assert session.last_seq == count
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
        "events": count,
    }


def table(title: str, rows: dict[int, dict[str, float]]) -> None:
    print(f"  {title}")
    print(
        f"    {'H msgs':>7}  {'(events)':>8}  {'hydrate ms':>10}  {'(cpu ms)':>8}  {'read ms':>8}  {'(cpu ms)':>8}"
        f"  {'turn ms, median of 20':>21}  {'vs H=10':>7}"
    )
    base = rows[HISTORY[0]]["turn"]
    for size, row in rows.items():
        print(
            f"    {size:>7,}  {int(row['events']):>8,}  {row['hydrate']:>10.1f}  {row['hydrate_cpu']:>8.1f}"
            f"  {row['read']:>8.1f}  {row['read_cpu']:>8.1f}  {row['turn']:>21.2f}  {row['turn'] / base:>6.2f}x"
        )
    sys.stdout.flush()


class Counted(SessionStorage):
    """``inner`` with every write recorded as it went to the medium: the events' JSON
    texts and the record's, so the same commits can be replayed raw."""

    def __init__(self, inner: SessionStorage) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities  # type: ignore[misc]
        self.commits: list[tuple[str, list[str], str | None]] = []

    async def create(self, record: SessionRecord) -> None:
        await self.inner.create(record)
        self.commits.append(("create", [], dumps(encode_record(record))))

    async def load(self, session_id: str) -> SessionRecord | None:
        return await self.inner.load(session_id)

    async def save(self, record: SessionRecord, expected_revision: int) -> None:
        await self.inner.save(record, expected_revision)
        self.commits.append(("save", [], dumps(encode_record(record))))

    async def append(
        self, session_id: str, events: Sequence[Event], expected_seq: int, *,
        incarnation: str | None = None, record: SessionRecord | None = None,
    ) -> None:
        extra = {} if record is None else {"record": record}
        await self.inner.append(session_id, events, expected_seq, incarnation=incarnation, **extra)
        texts = [dumps(encode_event(e)) for e in events]
        self.commits.append(("append", texts, None if record is None else dumps(encode_record(record))))

    async def read(self, session_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        return await self.inner.read(session_id, after_seq, limit)

    async def last_seq(self, session_id: str) -> int:
        return await self.inner.last_seq(session_id)

    async def list(self, filter: SessionFilter, limit: int = 50, cursor: str | None = None) -> Page:
        return await self.inner.list(filter, limit, cursor)

    async def delete(self, session_id: str) -> bool:
        return await self.inner.delete(session_id)

    async def aclose(self) -> None:
        await self.inner.aclose()


Commit = tuple[str, list[str], "str | None"]
REPLAYS = 30


def raw_sqlite(path: Path, synchronous: str, commits: list[Commit]) -> float:
    """Median ms of ``commits`` replayed as plain sqlite3 transactions (WAL, same pragma)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("CREATE TABLE s (id TEXT PRIMARY KEY, head INTEGER, revision INTEGER, record TEXT)")
    conn.execute("CREATE TABLE e (sid TEXT, seq INTEGER, event TEXT, PRIMARY KEY (sid, seq))")
    conn.execute("INSERT INTO s VALUES ('raw', 0, 0, '')")
    head, times = 0, []
    for _ in range(REPLAYS):
        started = time.perf_counter()
        for _kind, texts, record in commits:
            conn.execute("BEGIN IMMEDIATE")
            if texts:
                conn.execute("UPDATE s SET head = ? WHERE id = 'raw' AND head = ?", (head + len(texts), head))
                conn.executemany("INSERT INTO e VALUES ('raw', ?, ?)", [(head + i, t) for i, t in enumerate(texts, 1)])
                head += len(texts)
            if record is not None:
                conn.execute("UPDATE s SET revision = revision + 1, record = ? WHERE id = 'raw'", (record,))
            conn.execute("COMMIT")
        times.append((time.perf_counter() - started) * 1000)
    conn.close()
    return statistics.median(times)


def raw_file(directory: Path, commits: list[Commit]) -> float:
    """Median ms of ``commits`` replayed as the file backend's writes: a line appended
    and fdatasynced per append; a record written to a temporary file, fsynced, renamed,
    and its directory fsynced per save."""
    directory.mkdir(parents=True)
    log = os.open(directory / "events.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    head, times = 0, []
    for _ in range(REPLAYS):
        started = time.perf_counter()
        for _kind, texts, record in commits:
            if texts:
                line = f'{{"first":{head + 1},"last":{head + len(texts)},"events":[{",".join(texts)}]}}\n'
                os.write(log, line.encode())
                os.fdatasync(log)
                head += len(texts)
            if record is not None:
                tmp = directory / "record.json.tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.write(fd, record.encode())
                os.fsync(fd)
                os.close(fd)
                os.replace(tmp, directory / "record.json")
                dirfd = os.open(directory, os.O_RDONLY)
                os.fsync(dirfd)
                os.close(dirfd)
        times.append((time.perf_counter() - started) * 1000)
    os.close(log)
    return statistics.median(times)


def _shape(commits: list[Commit]) -> str:
    names = [f"{kind}+record" if kind == "append" and record else kind for kind, _, record in commits]
    return ", ".join(names)


async def durability(workdir: Path) -> None:
    """Commits per turn and turn time over their raw cost (issue K15)."""
    from harness_kernel_file import FileStorage
    from harness_kernel_sqlite import SqliteStorage

    print("  durable commits per turn (one tool call), and the turn over the raw cost of those commits")
    print(f"    {'backend':<16}  {'commits':>7}  {'turn ms':>8}  {'raw ms':>7}  {'turn/raw':>8}  what the commits are")
    backends: list[tuple[str, Callable[[Path], SessionStorage], Callable[[Path, list[Commit]], float]]] = [
        ("sqlite FULL", lambda d: SqliteStorage(str(d / "s.db"), synchronous="full"),
         lambda d, c: raw_sqlite(d / "raw.db", "FULL", c)),
        ("sqlite NORMAL", lambda d: SqliteStorage(str(d / "s.db"), synchronous="normal"),
         lambda d, c: raw_sqlite(d / "raw.db", "NORMAL", c)),
        ("file", lambda d: FileStorage(d / "root"), lambda d, c: raw_file(d / "raw", c)),
    ]
    for label, open_storage, raw in backends:
        where = workdir / f"durability-{label.replace(' ', '-')}"
        where.mkdir()
        counted = Counted(open_storage(where))
        async with store_for(counted, None) as store:
            session = await store.create("durable")
            assert (await session.send("warm-up")).status == "completed"
            timings, per_turn = [], []
            for i in range(TURNS):
                before = len(counted.commits)
                started = time.perf_counter()
                assert (await session.send(f"question {i}")).status == "completed"
                timings.append((time.perf_counter() - started) * 1000)
                per_turn.append(counted.commits[before:])
        commits = per_turn[-1]
        assert all(len(t) == len(commits) for t in per_turn), "every turn makes the same commits"
        turn_ms, raw_ms = statistics.median(timings), raw(where, commits)
        print(
            f"    {label:<16}  {len(commits):>7}  {turn_ms:>8.2f}  {raw_ms:>7.2f}  {turn_ms / raw_ms:>7.2f}x  {_shape(commits)}"
        )
        sys.stdout.flush()
    print("    targets: 4 commits per turn (file: 6, no record with an append); turn/raw < 3x with sqlite FULL")


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
    print(
        f"  one W1 turn = {sum(map(_is_message, turn))} messages, {len(turn)} durable events;"
        f" H counts messages; {TURNS} turns timed per history size"
    )
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="w2-")))
        await durability(workdir)
        await local_backends(turn, workdir)
    await s3_backend(turn)
    print("  targets: turn(H=10,000) <= 1.3x turn(H=10); hydrate(10,000 events) < 150 ms for file and sqlite")


async def durability_only() -> None:
    with tempfile.TemporaryDirectory(prefix="w2-") as tmp:
        await durability(Path(tmp))


if __name__ == "__main__":
    # ``durability``: only the commits table (to compare kernels back to back).
    trio.run(durability_only if sys.argv[1:] == ["durability"] else main)
