"""harness_kernel.sync: the store and session API from plain threads, the scenarios the
trio tests use, Ctrl-C aborting a run, and a clean shutdown at interpreter exit."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from harness_kernel import HarnessError, MemoryStorage, tool
from harness_kernel.errors import SessionClosed, SessionExists, StoreClosed, UnknownApproval
from harness_kernel.sync import RunStream, Session, SessionStore, create_session_store
from tests.asyncio.scenario import GATES, store_options

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60  # a guard against a hanging child, not a speed assertion


def wait_for(feed: Any, event_type: str, count: int = 1) -> None:
    for item in feed:
        if item.kind == "event" and item.event.type == event_type:
            count -= 1
            if count == 0:
                return
    raise AssertionError(f"the subscription ended before {event_type}")


def test_send_stream_and_plain_state() -> None:
    """send blocks for the RunResult; stream is a plain iterator of the run's events."""
    with create_session_store(**store_options()) as store:
        assert isinstance(store, SessionStore)
        result = store.send("s1", "hello there", tenant_id="t1")
        assert (result.status, result.text) == ("completed", "hello there")
        session = store.get("s1")
        assert isinstance(session, Session)
        assert store.get("s1") is session
        assert (session.id, dict(session.labels), session.mode, session.is_running) == (
            "s1", {"tenant_id": "t1"}, "default", False,
        )
        with session.stream("one two three") as events:
            assert isinstance(events, RunStream)
            seen = list(events)
        deltas = [e.text for e in seen if e.type == "text.delta"]
        assert len(deltas) > 1
        assert "".join(deltas) == "one two three"
        assert events.result is not None
        assert events.result.text == "one two three"
        assert [m.text for m in session.history()] == ["hello there"] * 2 + ["one two three"] * 2
        assert [r.status for r in session.runs()] == ["completed", "completed"]
        assert [record.id for record in store.list(tenant_id="t1").items] == ["s1"]
        assert session.btw("side") == "side"
        assert session.usage.output_tokens > 0
    assert store.closed


def test_many_threads_share_one_store() -> None:
    """Calls from several threads at once each get their own answer."""
    with create_session_store(**store_options()) as store:
        answers: dict[int, str] = {}

        def talk(i: int) -> None:
            answers[i] = store.send(f"s{i}", f"message {i}").text

        threads = [threading.Thread(target=talk, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers == {i: f"message {i}" for i in range(8)}


def test_approvals_in_process_and_after_a_restart() -> None:
    """Approve and deny; a run parked when the store closed is approved from a new one."""
    storage = MemoryStorage()
    with create_session_store(**store_options(storage=storage)) as store:
        session = store.create("s1")
        parked = session.send("write:a.txt")
        assert parked.status == "waiting_approval"
        [pending] = session.pending_approvals
        assert store.pending_approvals() == [pending]
        done = session.approve(pending.approval_id)
        assert done is not None
        assert done.text == "tool said: wrote a.txt"
        with pytest.raises(UnknownApproval):
            session.deny(pending.approval_id + "-nope")
        session.send("write:b.txt")
        [pending] = session.pending_approvals
        done = store.deny("s1", pending.approval_id, reason="not now")
        assert done is not None
        assert done.text == "tool said: the user denied this call: not now"
        assert session.send("write:c.txt").status == "waiting_approval"
    with create_session_store(**store_options(storage=storage)) as store:
        session = store.get_or_create("s1")
        [pending] = session.pending_approvals
        done = store.approve("s1", pending.approval_id)
        assert done is not None
        assert done.text == "tool said: wrote c.txt"


def test_abort_from_another_thread_follow_up_and_steer() -> None:
    """abort (from another thread) ends a stalled stream aborted with its partial text;
    a follow-up runs after the current run; steering joins the run in its tool."""
    with create_session_store(**store_options()) as store:
        session = store.create("s1")
        with session.stream("go", model="scripted/slow") as events:
            for event in events:
                if event.type == "text.delta":
                    threading.Thread(target=session.abort).start()
        assert events.result is not None
        assert (events.result.status, events.result.text) == ("aborted", "partial ")

        with store.subscribe() as feed:
            results = []
            running = threading.Thread(target=lambda: results.append(session.send("wait:sync-gate")))
            running.start()
            wait_for(feed, "tool.started")
            session.follow_up("after it")
            session.steer("also this")
            assert [m.text for m in session.queued_follow_ups] == ["after it", "also this"]
            GATES.open("sync-gate")
            running.join()
            wait_for(feed, "run.finished", count=2)
        [result] = results
        assert (result.status, result.text) == ("completed", "also this")
        assert [r.status for r in session.runs()] == ["aborted", "completed", "completed"]


def test_errors_are_the_kernels() -> None:
    """The facade raises the kernel's HarnessError types."""
    with create_session_store(**store_options()) as store:
        session = store.create("s1")
        with pytest.raises(SessionExists):
            store.create("s1")
        store.close("s1")
        with pytest.raises(SessionClosed):
            session.send("hi")
    with pytest.raises(StoreClosed):
        store.create("s2")


@tool
async def calls_the_sync_api() -> str:
    """An async tool that (wrongly) calls the blocking API from the kernel's thread."""
    with create_session_store(**store_options()):
        return "unreachable"


def test_calling_the_sync_api_from_the_kernels_thread_is_refused() -> None:
    """An async tool (running in the kernel's thread) that calls the blocking API gets
    a HarnessError, shown in its tool result, instead of waiting for itself forever."""
    from harness_kernel import define_agent
    from harness_kernel.testing import Reply, ScriptedProvider, ToolCall

    def model(request: Any) -> Reply:
        last = request.messages[-1]
        if last.role == "tool":
            return Reply(text=last.parts[0].content)
        return Reply(tool_calls=[ToolCall("calls_the_sync_api", {})])

    agent = define_agent(name="nested", tools=[calls_the_sync_api])
    options = store_options(agent=agent, providers=[ScriptedProvider({"m": model})], default_model="scripted/m")
    with create_session_store(**options) as store:
        result = store.send("s1", "go")
    assert "harness_kernel.sync was called from inside the kernel" in result.text


def start_child(code: str, tmp_path: Path) -> subprocess.Popen[str]:
    """Run ``code`` in a fresh interpreter (warnings are errors there too)."""
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.Popen(
        [sys.executable, "-W", "error", str(script)], cwd=tmp_path, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def read_line(child: subprocess.Popen[str]) -> str:
    """The child's next line, or a failure naming what it printed to stderr if it wrote
    none within TIMEOUT (a hung child fails the test instead of hanging the suite)."""
    assert child.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(child.stdout.readline()), daemon=True).start()  # type: ignore[union-attr]
    try:
        return lines.get(timeout=TIMEOUT)
    except queue.Empty:
        child.kill()
        _, err = child.communicate()
        raise AssertionError(f"the child printed nothing for {TIMEOUT} s; stderr: {err}") from None


def test_ctrl_c_aborts_a_blocking_send_and_a_stream(tmp_path: Path) -> None:
    """Ctrl-C while send or a stream waits aborts the run (recorded, partial text kept)
    and KeyboardInterrupt goes on to the caller."""
    code = """
        import threading
        from harness_kernel.sync import create_session_store
        from tests.asyncio.scenario import store_options

        with create_session_store(**store_options()) as store:
            session = store.create("s1")
            try:
                with session.stream("go", model="scripted/slow") as events:
                    for event in events:
                        if event.type == "text.delta":
                            print("streaming", flush=True)
            except KeyboardInterrupt:
                print("interrupted stream", flush=True)
            subscribed = threading.Event()

            def announce_the_run():  # so the parent interrupts a send that waits
                with store.subscribe() as feed:
                    subscribed.set()
                    for item in feed:
                        if item.kind == "event" and item.event.type == "run.started":
                            print("sending", flush=True)
                            return

            threading.Thread(target=announce_the_run).start()
            subscribed.wait()
            try:
                session.send("again", model="scripted/slow")
            except KeyboardInterrupt:
                print("interrupted send", flush=True)
            session.send("after")  # waits for the aborted run to record its end
            print([r.status for r in session.runs()], [m.text for m in session.history()][:2], flush=True)
    """
    child = start_child(code, tmp_path)
    assert child.stdout is not None
    assert read_line(child) == "streaming\n"
    child.send_signal(signal.SIGINT)
    assert read_line(child) == "interrupted stream\n"
    assert read_line(child) == "sending\n"
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=TIMEOUT)
    assert (child.returncode, err) == (0, "")
    assert out.splitlines() == ["interrupted send", "['aborted', 'aborted', 'completed'] ['go', 'partial ']"]


def test_stores_left_open_close_at_exit(tmp_path: Path) -> None:
    """A script that exits with a store open (a run streaming in a thread, another
    parked) shuts down cleanly: the streaming run is recorded aborted, the parked run
    stays parked for the next process."""
    db = tmp_path / "sessions.db"
    code = f"""
        import threading
        from harness_kernel.sync import create_session_store
        from tests.asyncio.scenario import store_options

        opener = create_session_store(
            **store_options(storage="sqlite", storage_options={{"path": {str(db)!r}}}, autoload_plugins=True)
        )
        store = opener.__enter__()
        assert store.send("parked", "write:x").status == "waiting_approval"
        started = threading.Event()

        def stream():
            with store.stream("streaming", "go", model="scripted/slow") as events:
                for _ in events:
                    started.set()

        threading.Thread(target=stream, daemon=True).start()
        started.wait()
        print("leaving", flush=True)
    """
    child = start_child(code, tmp_path)
    out, err = child.communicate(timeout=TIMEOUT)
    assert (child.returncode, err, out) == (0, "", "leaving\n")
    with create_session_store(
        **store_options(storage="sqlite", storage_options={"path": str(db)}, autoload_plugins=True)
    ) as store:
        assert [r.status for r in store.get_or_create("streaming").runs()] == ["aborted"]
        parked = store.get_or_create("parked")
        [pending] = parked.pending_approvals
        done = parked.approve(pending.approval_id)
        assert done is not None
        assert done.text == "tool said: wrote x"


def test_the_trio_api_from_a_thread_names_the_sync_module() -> None:
    """Driving the trio API's coroutine by hand (no loop) names harness_kernel.sync."""
    import harness_kernel

    opening = harness_kernel.create_session_store(**store_options()).__aenter__()
    with pytest.raises(HarnessError, match=r"harness_kernel\.sync\.create_session_store"):
        opening.send(None)
    opening.close()


def test_metadata_through_the_thread_facade() -> None:
    """A thread host renames, tags and pins as a trio host does, and lists by them."""
    with create_session_store(**store_options()) as store:
        store.send("s1", "first question")
        store.send("s2", "second question")
        session = store.get("s1")
        assert session is not None
        assert session.title == "first question"
        session.set_metadata(title="Billing", tags=["vip"], pinned=True)
        assert (session.title, session.tags, session.pinned) == ("Billing", ("vip",), True)
        assert [r.id for r in store.list(tags=["vip"]).items] == ["s1"]
        assert [r.id for r in store.list(pinned=False).items] == ["s2"]
