"""The two apps of docs/web-hosts.md, run as real servers on 127.0.0.1 and driven by an
httpx client: FastAPI under uvicorn (harness_kernel.asyncio) and Starlette under
Hypercorn's trio worker (native). Each is the page's code block, written to a file as
it stands, so the documentation cannot drift from what is tested."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "web-hosts.md"
BLOCK = re.compile(r"<!-- tests/web: (\S+) -->\n<!-- not-run -->\n```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
LISTENING = re.compile(rb"(?:Uvicorn running on|Running on) http://127\.0\.0\.1:(\d+)")
TIMEOUT = 60.0  # guards against a hanging server, not speed assertions

SERVERS = {
    "fastapi-uvicorn": ("app_fastapi.py", ["-m", "uvicorn", "app_fastapi:app", "--host", "127.0.0.1", "--port", "0",
                                           "--timeout-graceful-shutdown", "5"]),
    "starlette-hypercorn-trio": ("app_starlette_trio.py", ["-m", "hypercorn", "--worker-class", "trio",
                                                           "--bind", "127.0.0.1:0", "app_starlette_trio:app"]),
}


def page_blocks() -> dict[str, str]:
    return {name: code for name, code in BLOCK.findall(PAGE.read_text(encoding="utf-8"))}


class Server:
    """One server process serving a docs app from ``folder``; restartable on the same
    database."""

    def __init__(self, folder: Path, argv: list[str]) -> None:
        self.folder = folder
        self.argv = argv
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.logs = b""
        self._reader = threading.Thread()

    def start(self) -> None:
        env = {**os.environ, "SHOP_DB": str(self.folder / "shop.db"), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-W", "error", *self.argv], cwd=self.folder, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:  # ends if the server dies before listening
            self.logs += line
            found = LISTENING.search(line)
            if found:
                self.url = f"http://127.0.0.1:{found.group(1).decode()}"
                # Keep reading its log, so a full pipe never blocks the server.
                self._reader = threading.Thread(target=self._read_logs, args=(self.process.stdout,), daemon=True)
                self._reader.start()
                return
        raise AssertionError(f"the server did not start:\n{self.logs.decode()}")

    def _read_logs(self, stream: Any) -> None:
        for line in stream:
            self.logs += line

    def stop(self) -> str:
        """Ctrl-C, as an operator would; returns everything the server logged."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=TIMEOUT)
        self._reader.join(timeout=TIMEOUT)
        assert self.process.stdout is not None
        self.process.stdout.close()
        assert self.process.returncode == 0, self.logs.decode()
        self.process = None
        return self.logs.decode()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            assert self.process.stdout is not None
            self.process.stdout.close()


@pytest.fixture(params=sorted(SERVERS))
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    filename, argv = SERVERS[request.param]
    code = page_blocks()[filename]
    (tmp_path / filename).write_text(code, encoding="utf-8")
    running = Server(tmp_path, argv)
    running.start()
    try:
        yield running
    finally:
        running.kill()


def client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=TIMEOUT)


def sse_events(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    event = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield event or "message", json.loads(line.removeprefix("data: "))


def test_the_page_has_both_apps() -> None:
    """docs/web-hosts.md carries the two apps the servers below run."""
    assert set(page_blocks()) == {filename for filename, _ in SERVERS.values()}


def test_send_stream_and_approvals(server: Server) -> None:
    """A JSON send, a streamed answer read as server-sent events, an approval and a
    denial, over real HTTP."""
    with client(server) as http:
        answer = http.post("/sessions/s1/messages", json={"text": "hello"}).json()
        assert (answer["status"], answer["text"]) == ("completed", "You said: hello")

        with http.stream("POST", "/sessions/s1/stream", json={"text": "one two three"}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = list(sse_events(response))
        deltas = [data["text"] for name, data in events if name == "delta"]
        assert len(deltas) > 1
        assert "".join(deltas) == "You said: one two three"
        assert events[-1][0] == "result"
        assert events[-1][1]["status"] == "completed"

        parked = http.post("/sessions/s1/messages", json={"text": "refund A-17"}).json()
        assert parked["status"] == "waiting_approval"
        [approval] = parked["approvals"]
        assert (approval["tool"], approval["arguments"]) == ("refund", {"order": "A-17"})
        done = http.post(f"/sessions/s1/approvals/{approval['id']}/approve").json()
        assert (done["status"], done["text"], done["run_id"]) == ("completed", "Done: refunded A-17", parked["run_id"])
        assert http.post(f"/sessions/s1/approvals/{approval['id']}/approve").status_code == 404

        parked = http.post("/sessions/s1/messages", json={"text": "refund B-2"}).json()
        [approval] = parked["approvals"]
        denied = http.post(f"/sessions/s1/approvals/{approval['id']}/deny", json={"reason": "already refunded"}).json()
        assert denied["text"] == "Done: the user denied this call: already refunded"
    assert "Traceback" not in server.stop()


def test_a_client_leaving_mid_stream_aborts_the_run(server: Server) -> None:
    """The client closes its connection after a few deltas of a slow answer: the run is
    recorded aborted with the text streamed so far, and the session takes the next
    message (which waits for the aborted run to record its end)."""
    with client(server) as http:
        with http.stream("POST", "/sessions/s2/stream", json={"text": "a story", "model": "scripted/story"}) as response:
            received = []
            for name, data in sse_events(response):
                assert name == "delta"
                received.append(data["text"])
                if len(received) == 3:
                    break
        after = http.post("/sessions/s2/messages", json={"text": "still there?"}).json()
        assert after["status"] == "completed"
        shown = http.get("/sessions/s2").json()
    assert [run["status"] for run in shown["runs"]] == ["aborted", "completed"]
    partial = shown["history"][1]
    assert partial["role"] == "assistant"
    assert partial["text"].startswith("".join(received))
    assert partial["text"].count("word") < 1000
    assert "Traceback" not in server.stop()


def test_shutdown_keeps_a_parked_run_parked_for_the_next_start(server: Server) -> None:
    """Ctrl-C with a run waiting for approval: the server stops cleanly; started again
    on the same database it lists the approval, and approving continues the run."""
    with client(server) as http:
        parked = http.post("/sessions/s3/messages", json={"text": "refund C-3"}).json()
        assert parked["status"] == "waiting_approval"
    logs = server.stop()
    assert "Traceback" not in logs
    server.start()
    with client(server) as http:
        shown = http.get("/sessions/s3").json()
        [approval] = shown["approvals"]
        assert approval["tool"] == "refund"
        done = http.post(f"/sessions/s3/approvals/{approval['id']}/approve").json()
        assert (done["status"], done["text"], done["run_id"]) == ("completed", "Done: refunded C-3", parked["run_id"])
    assert "Traceback" not in server.stop()
