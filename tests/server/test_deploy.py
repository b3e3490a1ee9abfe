"""Deployment: graceful shutdown, a restart on the same storage, and two ``serve``
processes sharing one storage (a sqlite file, and S3 served by moto)."""

from __future__ import annotations

import functools
import json
import logging
import secrets
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Server, sse_events, write_config

SSE = {"accept": "text/event-stream"}


def test_shutdown_aborts_running_runs_and_keeps_parked_ones(tmp_path: Path) -> None:
    """SIGTERM with a run streaming and another parked on an approval: the process
    exits 0, the streaming run is recorded aborted with its partial text, and after a
    restart the parked run's approval is still there and finishes the run."""
    config = write_config(tmp_path)
    first = Server(config).start()
    try:
        client = first.client()
        busy = client.post("/v1/sessions", json={"id": "busy"}).json()["id"]
        parked = client.post("/v1/sessions", json={"id": "parked"}).json()["id"]
        assert client.post(f"/v1/sessions/{parked}/messages", json={"text": "refund Z-9"}).json()["status"] == "waiting_approval"
        with client.stream(
            "POST", f"/v1/sessions/{busy}/messages", json={"text": "slow", "model": "shop/words"}, headers=SSE
        ) as response:
            seen: list[dict[str, Any]] = []
            items = sse_events(response)
            for item in items:
                seen.append(item)
                if sum(1 for i in seen if i["event"] == "text.delta") >= 3:
                    break
            first.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            # The stream ends with the aborted run's result, not with a cut connection.
            rest = list(items)
            assert rest[-1]["event"] == "result"
            assert rest[-1]["data"]["status"] == "aborted"
            assert first.stop() == 0
    finally:
        first.kill()

    second = Server(config).start()
    try:
        client = second.client()
        runs = client.get(f"/v1/sessions/{busy}/runs").json()["items"]
        assert runs[-1]["status"] == "aborted"
        history = client.get(f"/v1/sessions/{busy}/history").json()["items"]
        assert history[-1]["role"] == "assistant"
        assert history[-1]["parts"][0]["text"].startswith("slow0 slow1 slow2 ")
        approvals = client.get(f"/v1/sessions/{parked}/approvals").json()["items"]
        assert [a["tool"] for a in approvals] == ["refund"]
        done = client.post(f"/v1/sessions/{parked}/approvals/{approvals[0]['approval_id']}/approve", json={}).json()
        assert done["status"] == "completed"
        assert done["text"] == "Done: refunded Z-9"
    finally:
        second.kill()


def test_readiness_reports_stopping(tmp_path: Path) -> None:
    """/readyz answers 200 while serving (a stopped process answers nothing)."""
    running = Server(write_config(tmp_path)).start()
    try:
        assert running.client(None).get("/readyz").status_code == 200
        assert running.stop() == 0
    finally:
        running.kill()


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 for the serve processes. moto checks a conditional
    write and then writes without a lock, while S3 decides it atomically: PutObject and
    DeleteObject are serialised (as in tests/s3) so the test sees S3's semantics."""
    from moto.s3.responses import S3Response
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    lock = threading.Lock()

    def atomically(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return method(self, *args, **kwargs)

        return locked

    with pytest.MonkeyPatch.context() as patch:
        for name in ("put_object", "delete_object"):
            patch.setattr(S3Response, name, atomically(getattr(S3Response, name)))
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.mark.parametrize("backend", ["sqlite", "s3"])
def test_two_processes_share_one_storage(tmp_path: Path, request: pytest.FixtureRequest, backend: str) -> None:
    """A session created on one process is served by the other; an approval given on
    the second finishes the run the first parked, and the first reads the finished run
    back from storage."""
    env: dict[str, str] = {}
    if backend == "s3":
        import boto3

        endpoint = request.getfixturevalue("moto_endpoint")
        bucket = f"hk-serve-{secrets.token_hex(6)}"
        env = {**AWS, "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
        boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        ).create_bucket(Bucket=bucket)
        storage = (
            f'{{ plugin = "s3", options = {{ bucket = "{bucket}", endpoint_url = "{endpoint}", '
            'region = "us-east-1", base_delay_ms = 10 } }'
        )
    else:
        storage = f'{{ plugin = "sqlite", options = {{ path = {json.dumps(str(tmp_path / "shared.db"))} }} }}'
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = Server(write_config(tmp_path / "a", storage=storage), env=env).start()
    two = Server(write_config(tmp_path / "b", storage=storage), env=env).start()
    try:
        a, b = one.client(), two.client()
        session_id = a.post("/v1/sessions", json={"id": "shared-1"}).json()["id"]
        assert b.get(f"/v1/sessions/{session_id}").json()["labels"] == {"tenant_id": "acme"}
        assert b.post(f"/v1/sessions/{session_id}/messages", json={"text": "from b"}).json()["text"] == "You said: from b"
        assert session_id in {s["id"] for s in a.get("/v1/sessions").json()["items"]}

        other = a.post("/v1/sessions", json={"id": "shared-2"}).json()["id"]
        parked = a.post(f"/v1/sessions/{other}/messages", json={"text": "refund Q-1"}).json()
        assert parked["status"] == "waiting_approval"
        approvals = b.get(f"/v1/sessions/{other}/approvals").json()["items"]
        done = b.post(f"/v1/sessions/{other}/approvals/{approvals[0]['approval_id']}/approve", json={}).json()
        assert done["status"] == "completed"
        assert done["run_id"] == parked["run_id"]
        assert done["text"] == "Done: refunded Q-1"
        view = a.get(f"/v1/sessions/{other}").json()  # the first process sees what the second did
        assert (view["status"], view["pending_approvals"]) == ("idle", [])
        events = a.get(f"/v1/sessions/{other}/runs/{parked['run_id']}/events").json()["items"]
        assert events[-1]["type"] == "run.finished"
        assert events[-1]["data"]["status"] == "completed"
        # The bob key of one process is the bob key of the other: tenancy holds across them.
        assert two.client("bob").get(f"/v1/sessions/{session_id}").status_code == 404
        # Deleted on one, gone on the other (which had it loaded).
        assert b.delete(f"/v1/sessions/{session_id}").status_code == 204
        assert a.get(f"/v1/sessions/{session_id}").status_code == 404
    finally:
        one.kill()
        two.kill()


def test_a_run_one_process_drives_is_followed_on_the_other(tmp_path: Path) -> None:
    """A client that loses the process driving its run reconnects to another one: it
    gets the rest of the run's events from the shared storage, none twice."""
    database = tmp_path / "shared.db"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = Server(write_config(tmp_path / "a", db=database)).start()
    two = Server(write_config(tmp_path / "b", db=database)).start()
    try:
        a, b = one.client(), two.client()
        session_id = a.post("/v1/sessions", json={}).json()["id"]
        with a.stream("POST", f"/v1/sessions/{session_id}/messages", json={"text": "ticks 8"}, headers=SSE) as response:
            run_id = response.headers["harness-run-id"]
            first = []
            for item in sse_events(response):
                if item["id"] is not None:
                    first.append(item)
                    if len(first) == 2:
                        break
        url = f"/v1/sessions/{session_id}/runs/{run_id}/events"
        with b.stream("GET", url, headers={**SSE, "last-event-id": first[-1]["id"]}) as response:
            rest = [i for i in sse_events(response) if i["id"] is not None]
        stored = a.get(url).json()["items"]
        assert [int(i["id"]) for i in first + rest] == [e["seq"] for e in stored]
        assert rest[-1]["event"] == "run.finished"
    finally:
        one.kill()
        two.kill()
