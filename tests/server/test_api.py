"""Every endpoint of ``harness-kernel serve``, through httpx against the real process."""

from __future__ import annotations

import uuid

import httpx

from .conftest import Server, sse_events


def new_session(client: httpx.Client, **labels: str) -> str:
    session_id = f"s-{uuid.uuid4().hex[:12]}"
    response = client.post("/v1/sessions", json={"id": session_id, "labels": labels})
    assert response.status_code == 201, response.text
    return session_id


def test_health_and_readiness_need_no_key(server: Server) -> None:
    """A load balancer probes without a key."""
    anonymous = server.client(None)
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    assert anonymous.get("/readyz").json() == {"status": "ok"}


def test_sessions_are_created_listed_fetched_and_deleted(server: Server) -> None:
    """Create labels the session with the key's tenant; the listing pages with a cursor
    and filters on labels; delete removes it (a second get is a 404)."""
    client = server.client()
    ids = [new_session(client, team="red") for _ in range(3)]
    other = new_session(client, team="blue")
    detail = client.get(f"/v1/sessions/{ids[0]}").json()
    assert detail["labels"] == {"team": "red", "tenant_id": "acme"}
    assert detail["status"] == "idle"
    first = client.get("/v1/sessions", params={"limit": 2, "label": "team:red"}).json()
    assert len(first["items"]) == 2
    assert first["next_cursor"]
    rest = client.get("/v1/sessions", params={"limit": 2, "label": "team:red", "cursor": first["next_cursor"]}).json()
    listed = [s["id"] for s in first["items"] + rest["items"]]
    assert sorted(listed) == sorted(ids)
    assert other not in listed
    assert client.delete(f"/v1/sessions/{ids[0]}").status_code == 204
    gone = client.get(f"/v1/sessions/{ids[0]}")
    assert gone.status_code == 404
    assert gone.headers["content-type"] == "application/problem+json"
    assert gone.json()["code"] == "session.not_found"


def test_send_answers_with_the_run_result(server: Server) -> None:
    """POST messages runs the agent and answers with the RunResult as JSON."""
    client = server.client()
    session_id = new_session(client)
    result = client.post(f"/v1/sessions/{session_id}/messages", json={"text": "hello"}).json()
    assert result["status"] == "completed"
    assert result["text"] == "You said: hello"
    runs = client.get(f"/v1/sessions/{session_id}/runs").json()["items"]
    assert [r["run_id"] for r in runs] == [result["run_id"]]
    events = client.get(f"/v1/sessions/{session_id}/runs/{result['run_id']}/events").json()["items"]
    types = [e["type"] for e in events]
    assert (types[0], types[-1], types.count("message.added")) == ("run.started", "run.finished", 2)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    history = client.get(f"/v1/sessions/{session_id}/history").json()
    assert [m["role"] for m in history["items"]] == ["user", "assistant"]
    page = client.get(f"/v1/sessions/{session_id}/history", params={"limit": 1}).json()
    assert [m["role"] for m in page["items"]] == ["assistant"]
    older = client.get(f"/v1/sessions/{session_id}/history", params={"limit": 1, "before": page["next_before"]}).json()
    assert [m["role"] for m in older["items"]] == ["user"]
    display = client.get(f"/v1/sessions/{session_id}/display").json()
    assert display["open_run"] is None


def test_send_streams_events_with_their_seq(server: Server) -> None:
    """With Accept: text/event-stream, durable events carry id = seq, deltas carry no id
    and are marked stream-only, and the result comes last."""
    client = server.client()
    session_id = new_session(client)
    with client.stream(
        "POST", f"/v1/sessions/{session_id}/messages",
        json={"text": "count 3", "model": "shop/words"}, headers={"accept": "text/event-stream"},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        items = list(sse_events(response))
    assert items[0]["event"] == "run"
    durable = [i for i in items if i["id"] is not None]
    assert [int(i["id"]) for i in durable] == [i["data"]["seq"] for i in durable] == [1, 2, 3, 4]
    deltas = [i for i in items if i["event"] == "text.delta"]
    assert "".join(d["data"]["text"] for d in deltas) == "w0 w1 w2 "
    assert all(d["id"] is None and d["data"]["stream_only"] for d in deltas)
    assert items[-1]["event"] == "result"
    assert items[-1]["data"]["text"] == "w0 w1 w2 "


def test_approve_deny_and_remember(server: Server) -> None:
    """A tool call waits for approval; approving continues the run, remember=tool lets
    the next call run without asking, denying sends the reason to the model."""
    client = server.client()
    session_id = new_session(client)
    parked = client.post(f"/v1/sessions/{session_id}/messages", json={"text": "refund A-1"}).json()
    assert parked["status"] == "waiting_approval"
    approvals = client.get(f"/v1/sessions/{session_id}/approvals").json()["items"]
    assert [a["tool"] for a in approvals] == ["refund"]
    assert client.get(f"/v1/sessions/{session_id}").json()["status"] == "waiting_approval"
    done = client.post(
        f"/v1/sessions/{session_id}/approvals/{approvals[0]['approval_id']}/approve", json={"remember": "tool"}
    ).json()
    assert done["status"] == "completed"
    assert done["text"] == "Done: refunded A-1"
    assert client.get(f"/v1/sessions/{session_id}").json()["grants"] == ["tool:refund"]
    again = client.post(f"/v1/sessions/{session_id}/messages", json={"text": "refund A-2"}).json()
    assert again["text"] == "Done: refunded A-2"

    denied_session = new_session(client)
    client.post(f"/v1/sessions/{denied_session}/messages", json={"text": "refund B-1"})
    approval = client.get(f"/v1/sessions/{denied_session}/approvals").json()["items"][0]
    denied = client.post(
        f"/v1/sessions/{denied_session}/approvals/{approval['approval_id']}/deny", json={"reason": "not today"}
    ).json()
    assert denied["status"] == "completed"
    assert "not today" in denied["text"]
    twice = client.post(f"/v1/sessions/{denied_session}/approvals/{approval['approval_id']}/deny", json={})
    assert twice.status_code in (404, 409)
    assert twice.json()["code"].startswith("approval.")


def test_a_suspension_is_resumed_with_data(server: Server) -> None:
    """ask_user suspends the run; resume answers it and the run completes."""
    client = server.client()
    session_id = new_session(client)
    parked = client.post(f"/v1/sessions/{session_id}/messages", json={"text": "ask"}).json()
    assert parked["status"] == "suspended"
    suspension = client.get(f"/v1/sessions/{session_id}/suspensions").json()["items"][0]
    assert suspension["payload"]["question"] == "which colour?"
    done = client.post(f"/v1/sessions/{session_id}/suspensions/{suspension['call_id']}/resume", json={"data": "blue"})
    assert done.status_code == 200, done.text
    assert done.json()["text"] == "Done: blue"


def test_follow_up_steer_abort_and_btw(server: Server) -> None:
    """A follow-up is queued and runs; abort ends a run in progress with its partial
    text recorded; btw answers without recording anything."""
    client = server.client()
    session_id = new_session(client)
    with client.stream(
        "POST", f"/v1/sessions/{session_id}/messages",
        json={"text": "slow", "model": "shop/words"}, headers={"accept": "text/event-stream"},
    ) as response:
        items = sse_events(response)
        for item in items:
            if item["event"] == "text.delta":
                break
        queued = client.post(f"/v1/sessions/{session_id}/steer", json={"text": "steering"})
        assert queued.status_code == 202
        assert client.post(f"/v1/sessions/{session_id}/abort").json() == {"aborted": True}
        rest = list(items)
    assert rest[-1]["event"] == "result"
    assert rest[-1]["data"]["status"] == "aborted"
    assert rest[-1]["data"]["text"].startswith("slow0 ")
    assert client.post(f"/v1/sessions/{session_id}/follow-ups", json={"text": "later"}).status_code == 202

    # The steering message, queued when the run was aborted, became a run of its own;
    # btw is checked on a quiet session.
    quiet = new_session(client)
    client.post(f"/v1/sessions/{quiet}/messages", json={"text": "first"})
    before = client.get(f"/v1/sessions/{quiet}").json()["last_seq"]
    answer = client.post(f"/v1/sessions/{quiet}/btw", json={"question": "side"}).json()
    assert answer == {"answer": "You said: side"}
    assert client.get(f"/v1/sessions/{quiet}").json()["last_seq"] == before


def test_the_store_event_stream_carries_session_events(server: Server) -> None:
    """GET /v1/events streams the events of the caller's sessions as they happen."""
    client = server.client()
    session_id = new_session(client)
    with client.stream("GET", "/v1/events", headers={"accept": "text/event-stream"}) as response:
        client.post(f"/v1/sessions/{session_id}/messages", json={"text": "hi"})
        kinds = []
        for item in sse_events(response):
            if item["data"]["session_id"] == session_id and item["event"] == "event":
                kinds.append(item["data"]["event"]["type"])
                if kinds[-1] == "run.finished":
                    break
    assert kinds[0] == "run.started"


def test_bad_requests_are_problem_documents(server: Server) -> None:
    """Validation failures, bad JSON, unknown routes and bad ids answer
    application/problem+json with a code."""
    client = server.client()
    session_id = new_session(client)
    cases = [
        (client.post(f"/v1/sessions/{session_id}/messages", json={"txt": "x"}), 422, "request.invalid"),
        (client.post(f"/v1/sessions/{session_id}/messages", content=b"{nope"), 400, "request.invalid_json"),
        (client.post(f"/v1/sessions/{session_id}/messages", json={"text": "x", "model": "nope"}), 400, "model.unknown"),
        (client.get("/v1/nowhere"), 404, "request.no_route"),
        (client.get("/v1/sessions/bad%20id"), 400, "session.invalid_id"),
        (client.post("/v1/sessions", json={"id": session_id}), 409, "session.exists"),
        (client.get(f"/v1/sessions/{session_id}/runs/run_nope/events"), 404, "run.unknown"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == code


def test_the_openapi_document_lists_every_route(server: Server) -> None:
    """/v1/openapi.json is OpenAPI 3.1 with an operation for every route served."""
    document = server.client(None).get("/v1/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    operations = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert ("POST", "/v1/sessions/{session_id}/messages") in operations
    assert ("GET", "/v1/sessions/{session_id}/runs/{run_id}/events") in operations
    send = document["paths"]["/v1/sessions/{session_id}/messages"]["post"]
    body = send["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["text"]
    assert body["additionalProperties"] is False
    assert "RunResult" in document["components"]["schemas"]
