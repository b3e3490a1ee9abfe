"""watch across hosts: notices in order, none missed across a dropped LISTEN connection."""

from __future__ import annotations

from typing import Any

import psycopg
import trio

from harness_kernel import Event, SessionRecord
from harness_kernel_postgres import PostgresOptions, build
from harness_kernel_postgres._watch import WATCH_APPLICATION
from tests.postgres.cluster import Cluster
from tests.storage_common.events import message_text, user_message

PATIENCE = 60.0  # a hang guard, not a timing


def _terminate_watches(cluster: Cluster) -> int:
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
            (WATCH_APPLICATION,),
        ).fetchone()
        assert row is not None
        return int(row[0])


async def _follow(pg_cluster: Cluster, pg_options: dict[str, Any], session_ids: list[str] | None) -> None:
    """A writer (its own storage, its own pool) appends 40 events one at a time; the
    watcher's LISTEN connection is killed after the 10th and the 25th, and the writer
    appends while it is down. Following the notices with ``read(after_seq=...)`` the
    watcher reads all 40 events, in order, each once; last_seq only grows."""
    writer = build(PostgresOptions(**pg_options))
    watcher = build(PostgresOptions(**pg_options))
    try:
        await writer.create(SessionRecord("watched", "a", {}, 1.0, 1.0))
        await writer.create(SessionRecord("noise", "a", {}, 1.0, 1.0))
        got: list[str] = []
        notices: list[int] = []
        async with watcher.watch(session_ids, after_seq={"watched": 0}) as channel:
            with trio.fail_after(PATIENCE):
                for i in range(40):
                    await writer.append("watched", [Event(i + 1, user_message(f"m{i}"), 1.0)], i)
                    await writer.append("noise", [Event(i + 1, user_message("n"), 1.0)], i)
                    if i in (9, 24):
                        # After the first drop the watcher may still be reconnecting.
                        # The server is another process: polling is the only way to see it.
                        while await trio.to_thread.run_sync(_terminate_watches, pg_cluster) == 0:  # noqa: ASYNC110
                            await trio.sleep(0.01)
                async for notice in channel:
                    if notice.session_id != "watched":
                        continue
                    notices.append(notice.last_seq)
                    events = await watcher.read("watched", after_seq=len(got))
                    got += [message_text(e) for e in events]
                    if notice.last_seq == 40:
                        break
        assert got == [f"m{i}" for i in range(40)]
        assert notices == sorted(set(notices)), notices
        assert notices[-1] == 40
    finally:
        await writer.aclose()
        await watcher.aclose()


async def test_a_watcher_of_one_session_misses_nothing_across_dropped_connections(
    pg_cluster: Cluster, pg_options: dict[str, Any]
) -> None:
    await _follow(pg_cluster, pg_options, ["watched"])


async def test_a_watcher_of_every_session_misses_nothing_across_dropped_connections(
    pg_cluster: Cluster, pg_options: dict[str, Any]
) -> None:
    await _follow(pg_cluster, pg_options, None)


async def test_notices_arrive_while_the_watcher_waits(pg_options: dict[str, Any]) -> None:
    """A watcher already waiting is woken by each append of another storage, one notice
    per append when it keeps up: 1, 2, 3."""
    writer = build(PostgresOptions(**pg_options))
    watcher = build(PostgresOptions(**pg_options))
    try:
        await writer.create(SessionRecord("live", "a", {}, 1.0, 1.0))
        async with watcher.watch(["live"]) as channel:
            seen = []
            with trio.fail_after(PATIENCE):
                for i in range(3):
                    await writer.append("live", [Event(i + 1, user_message("x"), 1.0)], i)
                    notice = await channel.receive()
                    seen.append(tuple(notice))
        assert seen == [("live", 1), ("live", 2), ("live", 3)]
    finally:
        await writer.aclose()
        await watcher.aclose()
