"""The kill -9 scenario for local backends: append in a child, SIGKILL it, check the log."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from harness_kernel import SessionRecord
from tests.storage_common.backends import make_storage
from tests.storage_common.fencing import REPO

Inspect = Callable[[], Awaitable[None]]


async def kill_loop(
    spec: str, session_id: str, workdir: Path, *, kills: int = 100, after_each: Inspect | None = None
) -> dict[str, int]:
    """SIGKILL an appending child ``kills`` times; after each kill check the session.

    Each child is killed only after it acknowledged at least one append of its own (it
    says so on a pipe), then after a random number of further acknowledged appends and a
    random instant within the next: random points of the append loop, none of them
    depending on how fast the machine is. After every kill a fresh storage opens the
    session and checks: the log reads back contiguous from seq 1, ``last_seq`` agrees
    with it, and every seq the child reported as appended (after ``append`` returned) is
    there. ``after_each`` adds backend-specific checks (nothing unparseable left).
    Returns ``{"events": ..., "acked": ..., "kills": ...}``.
    """
    storage = make_storage(json.loads(spec))
    await storage.create(SessionRecord(session_id, "crash", {}, 1000.0, 1000.0))
    await storage.aclose()
    ack_read, ack_write = os.pipe()
    zygote = await trio.to_thread.run_sync(
        lambda: subprocess.Popen(
            [sys.executable, "-m", "tests.storage_common.zygote", spec, session_id, str(ack_write)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, pass_fds=(ack_write,),
        )
    )
    os.close(ack_write)
    acks = AckPipe(ack_read)
    assert zygote.stdin is not None
    assert zygote.stdout is not None
    rng = random.Random(1234)
    acked = 0
    last = 0
    try:
        assert zygote.stdout.readline().strip() == "ready"
        for round_ in range(kills):
            ack_path = workdir / f"ack-{round_}"

            def one_child(ack_path: Path = ack_path) -> None:
                assert zygote.stdin is not None
                assert zygote.stdout is not None
                zygote.stdin.write(f"run {ack_path}\n")
                zygote.stdin.flush()
                pid = int(zygote.stdout.readline())
                acks.wait_for(pid, 1 + rng.randrange(4))
                time.sleep(rng.uniform(0, 0.002))  # somewhere in the next append, or the one after
                os.kill(pid, signal.SIGKILL)
                zygote.stdin.write(f"reap {pid}\n")
                zygote.stdin.flush()
                assert zygote.stdout.readline().strip() == "reaped"

            await trio.to_thread.run_sync(one_child)
            lines = ack_path.read_text().split("\n") if ack_path.exists() else []
            # The last line may be cut by the kill itself; complete lines were acknowledged.
            assert len(lines) >= 2, f"round {round_}: the child was killed before an acknowledged append"
            acked = max([acked, *(int(n) for n in lines[:-1])])
            storage = make_storage(json.loads(spec))
            try:
                seqs = [e.seq for e in await storage.read(session_id)]
                last = await storage.last_seq(session_id)
            finally:
                await storage.aclose()
            assert seqs == list(range(1, len(seqs) + 1)), f"round {round_}: the log is not contiguous"
            assert last == len(seqs), f"round {round_}: last_seq {last} but {len(seqs)} events"
            assert last >= acked, f"round {round_}: seq {acked} was acknowledged but the log ends at {last}"
            if after_each is not None:
                await after_each()
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=30)
        zygote.stdout.close()
        acks.close()
    return {"events": last, "acked": acked, "kills": kills}


HANG_GUARD = 120.0  # seconds without any acknowledged append: the child is stuck or dead


class AckPipe:
    """The read end of the pipe the children write ``PID SEQ`` lines to."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._pending = b""

    def wait_for(self, pid: int, count: int) -> None:
        """Block until child ``pid`` acknowledged ``count`` appends.

        Lines of children killed earlier, still in the pipe, are skipped. Fails only when
        nothing arrives for ``HANG_GUARD`` seconds (a hang guard, not a speed limit).
        """
        seen = 0
        while seen < count:
            while b"\n" not in self._pending:
                ready, _, _ = select.select([self.fd], [], [], HANG_GUARD)
                if not ready:
                    raise AssertionError(f"child {pid} acknowledged no append in {HANG_GUARD:g} s: stuck or dead")
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise AssertionError("the zygote closed the ack pipe")
                self._pending += chunk
            line, _, self._pending = self._pending.partition(b"\n")
            if int(line.split()[0]) == pid:
                seen += 1

    def close(self) -> None:
        os.close(self.fd)
