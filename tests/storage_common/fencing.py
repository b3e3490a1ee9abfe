"""The cross-process fencing scenario, shared by every backend's tests."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import trio

from harness_kernel import SessionRecord
from tests.storage_common.backends import make_storage
from tests.storage_common.events import message_text

REPO = Path(__file__).resolve().parents[2]


async def race_two_processes(spec: str, session_id: str, per_writer: int = 500, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Two OS processes append ``per_writer`` events each to one session at the same time.

    Returns what the log holds afterwards: ``texts`` in seq order, ``seqs``, and the
    number of conflicts each writer met (``conflicts``).
    """
    import json

    storage = make_storage(json.loads(spec))
    await storage.create(SessionRecord(session_id, "fencing", {}, 1000.0, 1000.0))
    await storage.aclose()

    def run() -> list[str]:
        children = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.storage_common.appender", spec, session_id, name, str(per_writer)],
                cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            )
            for name in ("a", "b")
        ]
        try:
            for child in children:
                assert child.stdout is not None
                assert child.stdout.readline().strip() == "ready"
            for child in children:
                assert child.stdin is not None
                child.stdin.write("go\n")
                child.stdin.flush()
            outputs = [child.communicate(timeout=300)[0] for child in children]
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        assert [child.returncode for child in children] == [0, 0], outputs
        return outputs

    outputs = await trio.to_thread.run_sync(run)
    storage = make_storage(json.loads(spec))
    try:
        events = await storage.read(session_id)
        last = await storage.last_seq(session_id)
    finally:
        await storage.aclose()
    conflicts = [int(out.split()[-1]) for out in outputs]
    return {
        "seqs": [e.seq for e in events],
        "texts": [message_text(e) for e in events],
        "last_seq": last,
        "conflicts": conflicts,
    }


def assert_fenced(outcome: dict[str, Any], per_writer: int = 500) -> None:
    """Exactly 2 * per_writer events, numbered 1..n, each writer's events once and in order."""
    total = 2 * per_writer
    assert outcome["seqs"] == list(range(1, total + 1))
    assert outcome["last_seq"] == total
    counts = Counter(outcome["texts"])
    assert len(counts) == total, "an event was lost"
    assert set(counts.values()) == {1}, "an event was duplicated"
    for writer in ("a", "b"):
        mine = [t for t in outcome["texts"] if t.startswith(f"{writer}-")]
        assert mine == [f"{writer}-{i}" for i in range(per_writer)]


__all__ = ["assert_fenced", "race_two_processes"]
