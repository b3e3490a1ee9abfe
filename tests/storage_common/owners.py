"""Two OS processes, two stores, one session: the owner runs, the other acts through it.

The child (``python -m tests.storage_common.owners SPEC DIR MESSAGE``) opens a store on
the storage and sends ``MESSAGE`` to session ``shared``; its ``slow`` tool writes
``DIR/<label>.started`` and waits for ``DIR/<label>.go``. The parent opens its own store
on the same storage and sends, steers, aborts or approves while the child's tool runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from harness_kernel import ModelRequest, ToolResultPart, create_session_store, define_agent, tool
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall
from tests.storage_common.fencing import REPO

FAST = {"lease_ttl": 2.0, "poll_interval": 0.1}
SESSION = "shared"


@tool
async def slow(label: str) -> str:
    """Waits until the test lets it finish (a file appears)."""
    folder = Path(os.environ["OWNERS_DIR"])
    (folder / f"{label}.started").write_text("")
    with trio.fail_after(60):
        # Another process releases the tool: a file is what both can see.
        while not (folder / f"{label}.go").exists():  # noqa: ASYNC110
            await trio.sleep(0.02)
    return f"{label} done"


@tool(approval="ask")
async def guarded(label: str) -> str:
    """Asks first."""
    return f"{label} guarded"


AGENT = define_agent(name="owners", tools=[slow, guarded])


def brain(request: ModelRequest) -> Reply:
    """``slow:x`` and ``ask:x`` call tools, ``both:x`` calls guarded then slow; the
    answer names the user messages the model saw."""
    last = request.messages[-1]
    users = [m.text for m in request.messages if m.role == "user"]
    if any(isinstance(p, ToolResultPart) for p in last.parts):
        results = [p.content for m in request.messages[-3:] for p in m.parts if isinstance(p, ToolResultPart)]
        return Reply(text=f"after {' + '.join(results)}; saw {users}")
    text = last.text
    if text.startswith("slow:"):
        return Reply(tool_calls=[ToolCall("slow", {"label": text[5:]})])
    if text.startswith("both:"):
        return Reply(tool_calls=[ToolCall("guarded", {"label": text[5:]}), ToolCall("slow", {"label": text[5:]})])
    return Reply(text=f"re: {text}")


def open_store(spec: dict[str, Any]) -> Any:
    return create_session_store(
        agent=AGENT, providers=[ScriptedProvider({"main": brain})], default_model="scripted/main",
        storage=spec["plugin"], storage_options=spec["options"], autoload_plugins=True, **FAST,
    )


class Child:
    """The owner: a child process sending one message."""

    def __init__(self, spec: dict[str, Any], folder: Path, message: str, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.storage_common.owners", json.dumps(spec), str(folder), message],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {}), "OWNERS_DIR": str(folder)},
        )

    async def started(self, label: str) -> None:
        """Wait until the child's tool ``label`` runs."""
        with trio.fail_after(60):
            while not (self.folder / f"{label}.started").exists():
                if self.process.poll() is not None:
                    raise AssertionError(f"the child exited: {self.process.stderr.read() if self.process.stderr else ''}")
                await trio.sleep(0.02)

    def release(self, label: str) -> None:
        (self.folder / f"{label}.go").write_text("")

    async def result(self) -> dict[str, Any]:
        out, err = await trio.to_thread.run_sync(lambda: self.process.communicate(timeout=60))
        assert self.process.returncode == 0, err
        parsed: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return parsed

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.communicate(timeout=30)  # reap it and close its pipes


async def _child(spec: dict[str, Any], message: str) -> None:
    async with open_store(spec) as store:
        result = await store.send(SESSION, message)
    print(json.dumps({"status": result.status, "text": result.text, "run_id": result.run_id}), flush=True)


async def log_of(spec: dict[str, Any]) -> list[Any]:
    async with open_store(spec) as store:
        return list(await store.storage.read(SESSION))


async def send_through_the_owner(spec: dict[str, Any], folder: Path, env: dict[str, str] | None = None) -> None:
    """While the child runs a tool, the parent's send is run by the child after its own
    run, and the parent gets that run's result; the tool result is recorded once."""
    child = Child(spec, folder, "slow:a", env)
    await child.started("a")
    async with open_store(spec) as store:
        session = await store.get_or_create(SESSION)
        async with trio.open_nursery() as nursery:
            results: list[Any] = []

            async def send() -> None:
                results.append(await session.send("from the parent"))

            nursery.start_soon(send)
            await trio.sleep(0.5)
            child.release("a")
        [mine] = results
    theirs = await child.result()
    assert theirs["status"] == "completed"
    assert (mine.status, mine.text) == ("completed", "re: from the parent")
    events = await log_of(spec)
    assert [e.payload.outcome for e in events if e.type == "tool.finished"] == ["ok"]
    assert sorted(e.run_id for e in events if e.type == "run.finished") == sorted({theirs["run_id"], mine.run_id})


async def steer_and_abort_through_the_owner(spec: dict[str, Any], folder: Path, env: dict[str, str] | None = None) -> None:
    """The parent steers the child's run (its next model step sees the message), then
    aborts the child's next run; the child records the abort, once."""
    child = Child(spec, folder, "slow:b", env)
    await child.started("b")
    async with open_store(spec) as store:
        session = await store.get_or_create(SESSION)
        await session.steer("steered in")
        await trio.sleep(0.5)
        child.release("b")
        theirs = await child.result()
        assert theirs["text"] == "re: steered in"  # the same run's next model step saw it
        second = Child(spec, folder, "slow:c", env)
        await second.started("c")
        assert await session.abort() is True
        aborted = await second.result()
    assert aborted["status"] == "aborted"
    events = await log_of(spec)
    assert [e.payload.status for e in events if e.type == "run.finished"] == ["completed", "aborted"]
    assert not any(e.type == "tool.finished" and e.payload.outcome == "in_doubt" for e in events)


async def approve_through_the_owner(spec: dict[str, Any], folder: Path, env: dict[str, str] | None = None) -> None:
    """The child's run asks for an approval and runs another tool meanwhile; the
    parent approves, and the child runs the approved call in the same run."""
    child = Child(spec, folder, "both:d", env)
    await child.started("d")
    async with open_store(spec) as store:
        session = await store.get_or_create(SESSION)
        with trio.fail_after(30):
            while not session.pending_approvals:
                await trio.sleep(0.1)
                session = await _reload(store, session)
        async with trio.open_nursery() as nursery:
            outcome: list[Any] = []

            async def approve() -> None:
                outcome.append(await session.approve(session.pending_approvals[0].approval_id))

            nursery.start_soon(approve)
            await trio.sleep(0.5)
            child.release("d")
        theirs = await child.result()
    assert theirs["status"] == "completed"
    assert "d guarded" in theirs["text"]
    assert "d done" in theirs["text"]
    events = await log_of(spec)
    assert [e.type for e in events].count("approval.resolved") == 1
    assert [e.type for e in events].count("run.finished") == 1


async def _reload(store: Any, session: Any) -> Any:
    await store.close(SESSION)
    return await store.get_or_create(SESSION)


async def take_over_after_kill(spec: dict[str, Any], folder: Path, env: dict[str, str] | None = None) -> None:
    """kill -9 of the owner mid-tool: the parent's send waits for the lease to expire,
    then runs here; the killed tool is reported in doubt, never run again."""
    child = Child(spec, folder, "slow:e", env)
    await child.started("e")
    child.kill()
    async with open_store(spec) as store:
        session = await store.get_or_create(SESSION)
        with trio.fail_after(30):
            result = await session.send("still there?")
    assert (result.status, result.text) == ("completed", "re: still there?")
    events = await log_of(spec)
    assert [e.payload.outcome for e in events if e.type == "tool.finished"] == ["in_doubt"]


if __name__ == "__main__":
    trio.run(_child, json.loads(sys.argv[1]), sys.argv[3])
