"""Resumable streams: a client that drops the connection anywhere and reconnects with
Last-Event-ID reassembles exactly the run's durable events, no gap, no duplicate."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Server, sse_events

TICKS = 6
SSE = {"accept": "text/event-stream"}


def _read(response: httpx.Response, budget: int | None, into: list[dict[str, Any]]) -> bool:
    """Append durable events (those with an id) until ``budget`` of them were read or
    the stream ended; True if it ended on its own."""
    taken = 0
    for item in sse_events(response):
        if item["id"] is not None:
            into.append(item)
            taken += 1
            if budget is not None and taken >= budget:
                return item["event"] == "run.finished"
    return True


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=1, max_value=12), max_size=4))
def test_reconnecting_reassembles_exactly_the_runs_events(server: Server, cuts: list[int]) -> None:
    """Drop after each number of events in ``cuts``, reconnect with the last id seen;
    the ids received are the run's seqs as stored, once each, in order."""
    client = server.client()
    session_id = client.post("/v1/sessions", json={"id": f"r-{uuid.uuid4().hex[:10]}"}).json()["id"]
    received: list[dict[str, Any]] = []
    with client.stream(
        "POST", f"/v1/sessions/{session_id}/messages", json={"text": f"ticks {TICKS}"}, headers=SSE
    ) as response:
        run_id = response.headers["harness-run-id"]
        ended = _read(response, cuts[0] if cuts else None, received)
    for budget in [*cuts[1:], None]:
        if ended:
            break
        headers = {**SSE, "last-event-id": received[-1]["id"]}
        with client.stream("GET", f"/v1/sessions/{session_id}/runs/{run_id}/events", headers=headers) as response:
            assert response.status_code == 200
            ended = _read(response, budget, received)
    stored = client.get(f"/v1/sessions/{session_id}/runs/{run_id}/events").json()["items"]
    assert [int(item["id"]) for item in received] == [e["seq"] for e in stored]
    assert [item["data"] for item in received] == stored
    assert received[-1]["event"] == "run.finished"
    assert stored[-1]["data"]["status"] == "completed"


def test_a_follower_sees_a_run_live_and_the_deltas_are_marked(server: Server) -> None:
    """A follower that connects while the run works gets its later events as they
    happen, deltas among them without an id and marked stream-only."""
    client = server.client()
    session_id = client.post("/v1/sessions", json={}).json()["id"]
    with client.stream(
        "POST", f"/v1/sessions/{session_id}/messages", json={"text": "ticks 20"}, headers=SSE
    ) as response:
        run_id = response.headers["harness-run-id"]
        first: list[dict[str, Any]] = []
        _read(response, 2, first)
    with client.stream(
        "GET", f"/v1/sessions/{session_id}/runs/{run_id}/events", headers={**SSE, "last-event-id": first[-1]["id"]}
    ) as response:
        items = list(sse_events(response))
    durable = [i for i in items if i["id"] is not None]
    assert int(durable[0]["id"]) == int(first[-1]["id"]) + 1
    assert durable[-1]["event"] == "run.finished"
    assert all(i["data"].get("stream_only") for i in items if i["id"] is None)


def test_a_finished_run_replays_from_storage(server: Server) -> None:
    """After the run, the stream is read back from storage alone and ends by itself;
    Last-Event-ID skips what the client has."""
    client = server.client()
    session_id = client.post("/v1/sessions", json={}).json()["id"]
    result = client.post(f"/v1/sessions/{session_id}/messages", json={"text": "ticks 2"}).json()
    url = f"/v1/sessions/{session_id}/runs/{result['run_id']}/events"
    with client.stream("GET", url, headers=SSE) as response:
        everything = [i for i in sse_events(response) if i["id"] is not None]
    with client.stream("GET", url, headers={**SSE, "last-event-id": everything[2]["id"]}) as response:
        tail = [i for i in sse_events(response) if i["id"] is not None]
    assert tail == everything[3:]
    assert everything[-1]["event"] == "run.finished"
