"""Child process of the fencing tests: append COUNT events to one session, racing a rival.

Usage: ``python -m tests.storage_common.appender SPEC SESSION_ID WRITER COUNT``. Prints
``ready``, waits for a line on stdin (so rivals start together), then appends one event
at a time at the last seq it knows, and on ``Conflict`` reloads ``last_seq`` and tries
again.
Each event's text is ``<writer>-<i>``. Prints ``done <conflicts>`` at the end.
"""

from __future__ import annotations

import json
import sys
import time

import trio

from harness_kernel import Event
from harness_kernel.errors import Conflict
from tests.storage_common.backends import make_storage
from tests.storage_common.events import user_message


async def main(spec: str, session_id: str, writer: str, count: int) -> None:
    storage = make_storage(json.loads(spec))
    print("ready", flush=True)
    await trio.to_thread.run_sync(sys.stdin.readline)
    conflicts = 0
    last = await storage.last_seq(session_id)
    try:
        for i in range(count):
            while True:
                try:
                    await storage.append(session_id, [Event(last + 1, user_message(f"{writer}-{i}"), time.time())], last)
                    last += 1
                    break
                except Conflict:
                    conflicts += 1
                    last = await storage.last_seq(session_id)
    finally:
        await storage.aclose()
    print(f"done {conflicts}", flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
