"""The kernel listens instead of polling where the storage can notify (Postgres)."""

from __future__ import annotations

from typing import Any

import trio

from harness_kernel import MemoryLogSink, create_session_store
from harness_kernel.testing import ScriptedProvider
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
