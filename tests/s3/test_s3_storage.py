"""The S3 backend's own promises: fencing between hosts, retries, layout, ids, listing."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from harness_kernel import SessionRecord, create_session_store, define_agent
from harness_kernel.contracts import SessionFilter
from harness_kernel.errors import Conflict, InvalidSessionId, StorageError
from harness_kernel_s3 import S3Storage, encode_id
from tests.s3.faulty_proxy import Fault, faulty_proxy
from tests.storage_common.approval import approval_survives_a_restart
from tests.storage_common.backends import dump_spec
from tests.storage_common.conflict import two_stores_one_session
from tests.storage_common.events import message_event, message_text
from tests.storage_common.fencing import assert_fenced, race_two_processes

Make = Callable[..., S3Storage]


def _record(session_id: str, created_at: float = 1000.0, agent: str = "agent", **labels: str) -> SessionRecord:
    return SessionRecord(session_id, agent, labels, created_at, created_at)


def _keys(endpoint: str, bucket: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.mark.slow
async def test_two_processes_appending_to_one_session_never_fork_it(s3_options: dict[str, Any]) -> None:
    """500 appends from each of two processes, retried on Conflict, give 1,000 events 1..1000."""
    outcome = await race_two_processes(dump_spec("s3", **s3_options), "shared-1", env=dict(os.environ))
    assert_fenced(outcome)
    assert sum(outcome["conflicts"]) > 0, "the writers never raced: the test proved nothing"


async def test_a_host_with_a_stale_view_gets_conflict_and_then_catches_up(make_s3: Make) -> None:
    """Host B read the log before host A appended; B's append at the old seq is refused,
    nothing of B's is written, and B appends fine once it has reloaded."""
    host_a, host_b = make_s3(), make_s3()
    await host_a.create(_record("shared"))
    assert await host_b.read("shared") == []
    await host_a.append("shared", [message_event(1, "a1"), message_event(2, "a2")], 0)
    with pytest.raises(Conflict):
        await host_b.append("shared", [message_event(1, "b1")], 0)
    with pytest.raises(Conflict):  # inside A's batch: never a batch end, never writable
        await host_b.append("shared", [message_event(2, "b2")], 1)
    assert await host_b.last_seq("shared") == 2
    await host_b.append("shared", [message_event(3, "b3")], 2)
    assert [message_text(e) for e in await host_a.read("shared")] == ["a1", "a2", "b3"]


async def test_batches_are_objects_keyed_by_sequence(make_s3: Make, moto_endpoint: str, bucket: str) -> None:
    """Each append is one object named by its first seq; the record and index entries sit beside."""
    storage = make_s3(prefix="app/")
    await storage.create(_record("Customer-42", team="x"))
    await storage.append("Customer-42", [message_event(1, "a"), message_event(2, "b")], 0)
    await storage.append("Customer-42", [message_event(3, "c")], 2)
    keys = _keys(moto_endpoint, bucket)
    enc = encode_id("Customer-42")
    assert f"app/sessions/{enc}/record.json" in keys
    batches = sorted(k.rsplit("/", 1)[1] for k in keys if "/events/" in k)
    assert batches == ["00000000000000000001.json", "00000000000000000003.json"]
    assert len([k for k in keys if k.startswith("app/index/")]) == 3  # all, agent, one label
    assert all(k.startswith("app/") for k in keys)


async def test_reads_go_through_segments_and_stay_exact(make_s3: Make, moto_endpoint: str, bucket: str) -> None:
    """A long log is compacted into segment objects; windows read back exactly from a fresh host."""
    writer = make_s3(segment_events=8)
    await writer.create(_record("long"))
    for seq in range(1, 61):
        await writer.append("long", [message_event(seq, f"m{seq}")], seq - 1)
    assert len([k for k in _keys(moto_endpoint, bucket) if "/segments/" in k]) == 7
    reader = make_s3(segment_events=8)
    assert [e.seq for e in await reader.read("long")] == list(range(1, 61))
    assert [e.seq for e in await reader.read("long", after_seq=13, limit=5)] == list(range(14, 19))
    assert [e.seq for e in await reader.read("long", after_seq=57)] == [58, 59, 60]
    await reader.append("long", [message_event(61, "m61")], 60)
    assert await writer.last_seq("long") == 61


async def test_a_deleted_and_recreated_session_is_safe_from_stale_writers(make_s3: Make) -> None:
    """A host that knew the old session cannot write into the new one of the same id."""
    old_host, new_host = make_s3(), make_s3()
    await old_host.create(_record("reborn"))
    await old_host.append("reborn", [message_event(1, "old")], 0)
    assert await new_host.delete("reborn") is True
    await new_host.create(_record("reborn", 2000.0))
    with pytest.raises(Conflict):
        await old_host.append("reborn", [message_event(2, "stale")], 1)
    assert await new_host.read("reborn") == []
    await old_host.append("reborn", [message_event(1, "new")], 0)
    assert [message_text(e) for e in await new_host.read("reborn")] == ["new"]


async def test_throttling_and_server_errors_are_retried(make_s3: Make, moto_endpoint: str) -> None:
    """503 SlowDown and 500 answers are retried with backoff; the caller sees success."""
    with faulty_proxy(moto_endpoint) as proxy:
        storage = make_s3(endpoint_url=proxy.url)
        await storage.create(_record("bumpy"))
        proxy.faults += [
            Fault("PUT", "/events/", times=2),
            Fault("GET", "/events/", times=1, status=500, code="InternalError"),
            Fault("GET", "list-type=2", times=1, status=503, code="SlowDown"),
        ]
        await storage.append("bumpy", [message_event(1, "through")], 0)
        assert [message_text(e) for e in await make_s3(endpoint_url=proxy.url).read("bumpy")] == ["through"]
        assert [status for _, _, status in proxy.injected] == [503, 503, 503, 500]


async def test_a_write_whose_answer_was_lost_is_not_taken_for_a_conflict(make_s3: Make, moto_endpoint: str) -> None:
    """The batch landed but its 200 was lost; the retry meets its own object (412) and succeeds."""
    with faulty_proxy(moto_endpoint) as proxy:
        storage = make_s3(endpoint_url=proxy.url)
        await storage.create(_record("lost"))
        proxy.faults.append(Fault("PUT", "/events/", times=1, lost="response"))
        await storage.append("lost", [message_event(1, "once")], 0)
        assert proxy.injected
        assert [message_text(e) for e in await storage.read("lost")] == ["once"]
        await storage.append("lost", [message_event(2, "twice")], 1)


async def test_retries_give_up_with_a_storage_error(make_s3: Make, moto_endpoint: str) -> None:
    """An outage longer than max_attempts fails with StorageError naming the S3 code, no secret."""
    with faulty_proxy(moto_endpoint) as proxy:
        storage = make_s3(endpoint_url=proxy.url, max_attempts=3)
        await storage.create(_record("down"))
        proxy.faults.append(Fault("PUT", "/events/", times=10))
        with pytest.raises(StorageError, match="SlowDown") as caught:
            await storage.append("down", [message_event(1, "x")], 0)
        assert "testing" not in str(caught.value)
        assert len(proxy.injected) == 3


async def test_listing_pages_follow_the_contract_order_across_continuations(make_s3: Make) -> None:
    """Newest first, id descending on ties, filters by agent and labels, cursors continue exactly."""
    storage = make_s3()
    made = []
    for i in range(24):
        record = _record(f"s-{i:02d}", 1000.0 + i // 3, agent="a" if i % 2 else "b", team="x" if i % 4 else "y")
        await storage.create(record)
        made.append(record)

    async def walk(filter: SessionFilter, limit: int) -> list[str]:
        seen, cursor = [], None
        while True:
            page = await storage.list(filter, limit=limit, cursor=cursor)
            seen += [r.id for r in page.items]
            if page.next_cursor is None:
                return seen
            cursor = page.next_cursor

    def expected(keep: Callable[[SessionRecord], bool]) -> list[str]:
        return [r.id for r in sorted(made, key=lambda r: (r.created_at, r.id), reverse=True) if keep(r)]

    assert await walk(SessionFilter(), 5) == expected(lambda r: True)
    assert await walk(SessionFilter(agent="a", labels={"team": "x"}), 2) == expected(
        lambda r: r.agent == "a" and r.labels["team"] == "x"
    )
    assert await walk(SessionFilter(labels={"team": "y"}), 1) == expected(lambda r: r.labels["team"] == "y")
    with pytest.raises(ValueError, match="cursor"):
        await storage.list(SessionFilter(), cursor="not-a-cursor!")


@pytest.mark.parametrize("hostile", ["../x", "a/b", "/etc/passwd", "a\0b", "x" * 10_000, "", "a?b=c"])
async def test_hostile_ids_are_refused_and_write_nothing(
    make_s3: Make, moto_endpoint: str, bucket: str, hostile: str
) -> None:
    """Ids the kernel would refuse are refused by every method; no key is written."""
    storage = make_s3()
    for call in (
        storage.create(_record(hostile)),
        storage.load(hostile),
        storage.read(hostile),
        storage.last_seq(hostile),
        storage.append(hostile, [message_event(1, "x")], 0),
        storage.delete(hostile),
    ):
        with pytest.raises(InvalidSessionId):
            await call
    assert _keys(moto_endpoint, bucket) == []


async def test_ids_differing_only_in_case_are_distinct(make_s3: Make) -> None:
    """``Ab`` and ``aB`` are two sessions with two logs."""
    storage = make_s3()
    for session_id in ("Ab", "aB"):
        await storage.create(_record(session_id))
        await storage.append(session_id, [message_event(1, session_id)], 0)
    assert [message_text(e) for e in await make_s3().read("Ab")] == ["Ab"]
    assert [message_text(e) for e in await make_s3().read("aB")] == ["aB"]


async def test_delete_leaves_nothing_behind(make_s3: Make, moto_endpoint: str, bucket: str) -> None:
    """Record, log, segments and index entries are all removed."""
    storage = make_s3(segment_events=2)
    await storage.create(_record("bye", team="z"))
    for seq in range(1, 6):
        await storage.append("bye", [message_event(seq, "x")], seq - 1)
    assert await storage.delete("bye") is True
    assert _keys(moto_endpoint, bucket) == []
    assert await storage.delete("bye") is False


async def test_the_plugin_is_found_by_name_and_persists_across_stores(s3_options: dict[str, Any]) -> None:
    """``storage="s3"`` resolves through the entry point; a second store hydrates the session."""
    agent = define_agent(name="notes", instructions="Be brief.")
    async with create_session_store(agent=agent, storage="s3", storage_options=s3_options) as store:
        assert (await store.send("s-1", "hello")).status == "completed"
    async with create_session_store(agent=agent, storage="s3", storage_options=s3_options) as store:
        session = await store.get_or_create("s-1")
        assert next(m.text for m in await session.history()) == "hello"


async def test_a_stale_store_catches_up_before_it_runs(s3_options: dict[str, Any]) -> None:
    """Two stores on one bucket: the stale one catches up with the other's events before it runs."""
    await two_stores_one_session("s3", s3_options)


async def test_a_refused_request_among_concurrent_reads_is_one_storage_error(make_s3: Make, moto_endpoint: str) -> None:
    """A 403 on one of the GETs a read makes concurrently surfaces as a plain StorageError."""
    writer = make_s3()
    await writer.create(_record("guarded"))
    for seq in range(1, 6):
        await writer.append("guarded", [message_event(seq, "x")], seq - 1)
    with faulty_proxy(moto_endpoint) as proxy:
        proxy.faults.append(Fault("GET", "/events/00000000000000000003", times=1, status=403, code="AccessDenied"))
        with pytest.raises(StorageError, match="AccessDenied"):
            await make_s3(endpoint_url=proxy.url).read("guarded")


async def test_text_with_a_lone_surrogate_round_trips(make_s3: Make) -> None:
    """A str that is not valid UTF-8 (a lone surrogate) is stored and read back unchanged."""
    storage = make_s3()
    await storage.create(_record("odd", note="v\ud800"))
    await storage.append("odd", [message_event(1, "bad \ud800 text")], 0)
    fresh = make_s3()
    assert [message_text(e) for e in await fresh.read("odd")] == ["bad \ud800 text"]
    loaded = await fresh.load("odd")
    assert loaded is not None
    assert loaded.labels == {"note": "v\ud800"}
    assert [r.id for r in (await fresh.list(SessionFilter(labels={"note": "v\ud800"}))).items] == ["odd"]


async def test_a_run_waiting_for_approval_survives_a_restart(s3_options: dict[str, Any]) -> None:
    """Parked on an approval, the store closed and reopened: approving continues the run."""
    await approval_survives_a_restart("s3", s3_options)
