"""The kernel listens instead of polling where the storage can notify (Postgres)."""

from __future__ import annotations

from typing import Any

import trio

from harness_kernel import MemoryLogSink, create_session_store
from harness_kernel.testing import ScriptedProvider
from tests.storage_common import owners
from tests.storage_common.owners import AGENT, brain

# A poll interval far longer than the test may take: only notices can wake the owner.
SLOW_POLL = {"lease_ttl": 600.0, "poll_interval": 120.0}


def store(pg_options: dict[str, Any], **kwargs: Any) -> Any:
    return create_session_store(
        agent=AGENT, providers=[ScriptedProvider({"main": brain})], default_model="scripted/main",
        storage="postgres", storage_options=pg_options, autoload_plugins=True, **SLOW_POLL, **kwargs,
    )


async def test_an_owner_is_woken_by_a_notice_not_by_its_poll(pg_options: dict[str, Any], tmp_path: Any, monkeypatch: Any) -> None:
    """Another store's abort reaches the owner through LISTEN/NOTIFY: with a two-minute
    poll interval, the abort still ends the run within the test's bound."""
    monkeypatch.setenv("OWNERS_DIR", str(tmp_path))
    sink = MemoryLogSink()
    async with store(pg_options, logging={"sinks": [sink]}) as a, store(pg_options) as b:
        session_a = await a.create("watched")
        async with trio.open_nursery() as nursery:
            results: list[Any] = []

            async def run() -> None:
                results.append(await session_a.send("slow:w"))

            nursery.start_soon(run)
            with trio.fail_after(30):
                while not (tmp_path / "w.started").exists():  # noqa: ASYNC110 - the tool writes it
                    await trio.sleep(0.05)
                session_b = await b.get_or_create("watched")
                assert await session_b.abort() is True
        [result] = results
    assert result.status == "aborted"
    assert not any(r["event"] == "watch_unavailable" for r in sink.records)


async def test_a_subscriber_sees_events_another_host_appended(pg_options: dict[str, Any]) -> None:
    """Store A has the session loaded and idle; store B runs a turn in it. A's
    subscribers receive B's durable events, in order, without A doing anything."""
    async with store(pg_options) as a, store(pg_options) as b:
        await a.create("seen")
        async with a.subscribe() as events:
            result = await b.send("seen", "hello from b")
            assert result.status == "completed"
            seqs: list[int] = []
            with trio.fail_after(30):
                async for item in events:
                    if item.kind == "event" and item.session_id == "seen":
                        seqs.append(item.event.seq)
                        if item.event.type == "run.finished":
                            break
        assert seqs == list(range(seqs[0], seqs[-1] + 1))
        assert a.get("seen").last_seq == seqs[-1]


async def _events_of(events: Any, session_id: str, runs: int) -> list[Any]:
    """The durable events of ``session_id`` a subscription delivers, until ``runs`` runs finished."""
    seen: list[Any] = []
    with trio.fail_after(30):
        async for item in events:
            if item.kind == "event" and item.session_id == session_id:
                seen.append(item.event)
                if sum(e.type == "run.finished" for e in seen) == runs:
                    return seen
    raise AssertionError(f"the subscription ended after {seen}")


async def test_a_subscriber_sees_sessions_this_host_never_loaded(pg_options: dict[str, Any]) -> None:
    """Store B creates a session and runs two turns in it; store A never loads it. A's
    subscriber still receives every one of its events, once each, in order, and A has
    not loaded it."""
    async with store(pg_options) as a, store(pg_options) as b:
        async with a.subscribe() as events:
            for text in ("one", "two"):
                assert (await b.send("elsewhere", text)).status == "completed"
            seen = await _events_of(events, "elsewhere", runs=2)
        stored = await b.storage.read("elsewhere")
        assert [e.seq for e in seen] == [e.seq for e in stored] == list(range(1, len(stored) + 1))
        assert seen == stored
        assert a.get("elsewhere") is None


async def test_a_subscriber_that_arrives_late_starts_at_the_next_append(pg_options: dict[str, Any]) -> None:
    """A session another host ran before this store heard of it: a subscriber gets its
    next turn's events from that turn's first append on, none of the old ones."""
    async with store(pg_options) as a, store(pg_options) as b:
        await b.send("older", "before")
        before = await b.storage.last_seq("older")
        async with store(pg_options) as late, late.subscribe() as events:
            await b.send("older", "after")
            seen = await _events_of(events, "older", runs=1)
        stored = await b.storage.read("older", after_seq=before)
        assert seen == stored
        assert a.get("older") is None


async def test_another_process_s_run_is_tailed_here_before_and_after_loading_it(
    spec: dict[str, Any], tmp_path: Any
) -> None:
    """A child process runs a turn with a slow tool; this process subscribes before it
    starts, loads the session while the tool runs, then lets it finish. The subscriber
    receives every event of the session, from seq 1, once each, in order: those the
    child appended before the session was loaded here and those after."""
    async with owners.open_store(spec) as here, here.subscribe() as events:
        child = owners.Child(spec, tmp_path, "slow:t")
        try:
            await child.started("t")
            session = await here.get_or_create(owners.SESSION)
            assert session.last_seq > 0
            child.release("t")
            seen = await _events_of(events, owners.SESSION, runs=1)
            assert (await child.result())["status"] == "completed"
        finally:
            if child.process.poll() is None:
                child.kill()
        stored = await here.storage.read(owners.SESSION)
    assert [e.seq for e in seen] == list(range(1, len(stored) + 1))
    assert seen == stored


def _watch_connections(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'harness-kernel-watch'"
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_store_listens_on_one_connection_however_many_runs_wait(
    pg_options: dict[str, Any], tmp_path: Any, monkeypatch: Any
) -> None:
    """Runs and waiting callers share their store's watch: with ten sessions running a
    slow tool in store A and store B open beside it, the server sees two watch
    connections, one per store (not one per run), and the runs still end on B's aborts."""
    monkeypatch.setenv("OWNERS_DIR", str(tmp_path))
    before = await trio.to_thread.run_sync(_watch_connections, pg_options["dsn"])
    async with store(pg_options) as a, store(pg_options) as b:
        results: list[Any] = []
        async with trio.open_nursery() as nursery:
            for i in range(10):
                session = await a.create(f"many-{i}")

                async def run(session: Any = session, i: int = i) -> None:
                    results.append(await session.send(f"slow:m{i}"))

                nursery.start_soon(run)
            with trio.fail_after(30):
                while not all((tmp_path / f"m{i}.started").exists() for i in range(10)):  # noqa: ASYNC110 - the tools write them
                    await trio.sleep(0.05)
            during = await trio.to_thread.run_sync(_watch_connections, pg_options["dsn"])
            with trio.fail_after(30):
                for i in range(10):
                    assert await (await b.get_or_create(f"many-{i}")).abort() is True
        assert sorted(r.status for r in results) == ["aborted"] * 10
    assert during - before == 2
