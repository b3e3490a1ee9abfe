"""Fork server of the crash tests: pays the interpreter start once, forks an appender per kill.

Usage: ``python -m tests.storage_common.zygote SPEC SESSION_ID ACK_FD``. ``ACK_FD`` is the
write end of a pipe the test reads. Prints ``ready``, then reads commands on stdin, one
per line:

- ``run ACK_PATH``: fork a child that appends to the session in a loop, forever; after
  every append that returned it writes the new last seq as a line to ``ACK_PATH`` (the
  durable record the test checks the log against), then ``PID SEQ`` to the ack pipe (how
  the test knows an append got through, so it kills only after one did); prints the
  child's pid.
- ``reap PID``: wait for the child (killed by the test) and print ``reaped``.

The zygote only imports (the backend's implementation too, so a child only builds its
storage); it never starts trio or a thread, so forking it is safe.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

import trio

from harness_kernel import Event
from tests.storage_common.backends import make_storage, preload
from tests.storage_common.events import user_message


async def append_forever(spec: dict, session_id: str, ack_fd: int, pipe_fd: int) -> None:  # type: ignore[type-arg]
    storage = make_storage(spec)
    pid = os.getpid()
    rng = random.Random(os.getpid())
    while True:
        last = await storage.last_seq(session_id)
        size = rng.choice([1, 1, 1, 2, 3])
        # Now and then a large event, so a kill can land inside one write.
        texts = ["x" * rng.choice([10] * 12 + [5_000, 100_000]) for _ in range(size)]
        events = [Event(last + i, user_message(t), time.time()) for i, t in enumerate(texts, start=1)]
        await storage.append(session_id, events, last)
        os.write(ack_fd, f"{last + size}\n".encode())
        os.write(pipe_fd, f"{pid} {last + size}\n".encode())


def main() -> None:
    spec, session_id, pipe_fd = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    # The storage plugins import their implementation (and psycopg, boto3) only when a
    # storage is built: import it here, once, rather than in each of the forked children.
    preload(spec)
    print("ready", flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "run":
            pid = os.fork()
            if pid == 0:
                ack_fd = os.open(argument, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                try:
                    trio.run(append_forever, spec, session_id, ack_fd, pipe_fd)
                finally:
                    os._exit(1)
            print(pid, flush=True)
        elif command == "reap":
            os.waitpid(int(argument), 0)
            print("reaped", flush=True)


if __name__ == "__main__":
    main()
