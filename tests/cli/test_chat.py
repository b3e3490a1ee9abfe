"""`harness-kernel chat` driven through a pseudo-terminal, as a person would use it.

The child runs with the terminal as its controlling tty, so the ^C written to it
arrives as SIGINT from the line discipline, exactly as from a keyboard.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.support import child_env, command, run_cli, write_deployment

CTRL_C = b"\x03"
CTRL_D = b"\x04"
SAFETY = 60.0
"""Seconds before a missing prompt fails the test instead of hanging it (not a timing
assertion: every expected output appears at once on an idle machine)."""


class Terminal:
    """The master side of a pseudo-terminal running the CLI."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        master, slave = os.openpty()
        # os.login_tty makes the terminal the child's controlling tty (setsid + TIOCSCTTY).
        bootstrap = "import os, sys; os.login_tty(0); os.execv(sys.argv[1], sys.argv[1:])"
        self.process = subprocess.Popen(
            [sys.executable, "-c", bootstrap, *args], stdin=slave, stdout=slave, stderr=slave, env=env,
        )
        os.close(slave)
        self.fd = master
        self.output = b""

    def expect(self, text: str) -> str:
        """Read until ``text`` appears; return everything up to and including it."""
        wanted = text.encode()
        deadline = time.monotonic() + SAFETY
        while wanted not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"never saw {text!r}; the terminal shows:\n{self.output.decode(errors='replace')}")
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"the terminal closed before {text!r}:\n{self.output.decode(errors='replace')}")
                self.output += chunk
        head, _, rest = self.output.partition(wanted)
        self.output = rest
        return (head + wanted).decode(errors="replace")

    def type(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self) -> int:
        try:
            # Drain so the child never blocks writing to a full terminal buffer.
            while True:
                ready, _, _ = select.select([self.fd], [], [], 0.1)
                if ready:
                    try:
                        if not os.read(self.fd, 4096):
                            break
                    except OSError:
                        break
                elif self.process.poll() is not None:
                    break
            return self.process.wait(timeout=SAFETY)
        finally:
            os.close(self.fd)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[tuple[Path, list[Terminal]]]:
    config = write_deployment(tmp_path / "deploy", module="chat_agent")
    opened: list[Terminal] = []
    yield config, opened
    for term in opened:
        if term.process.poll() is None:
            term.process.kill()
            term.process.wait()


def open_chat(config: Path, opened: list[Terminal], *args: str) -> Terminal:
    term = Terminal([*command(), "--config", str(config), "chat", *args], child_env(TERM="dumb"))
    opened.append(term)
    return term


def test_chat_streams_asks_for_approval_and_exits_cleanly(terminal: tuple[Path, list[Terminal]]) -> None:
    """In a terminal: a message gets a streamed answer; a tool needing approval asks
    yes / no / always; "always" approves it and the next call of that tool does not ask
    again; Ctrl-D at the prompt leaves with exit code 0 and the history is stored."""
    config, opened = terminal
    term = open_chat(config, opened, "s1")
    banner = term.expect("you> ")
    assert "session s1 | agent tester | model testmodel/main" in banner

    term.type(b"hello\n")
    assert "tester> You said: hello" in term.expect("you> ")

    term.type(b"note buy milk\n")
    asked = term.expect("[y]es / [n]o / [a]lways for this tool: ")
    assert "tester> Writing it." in asked
    assert '[approval needed] write_note {"text": "buy milk"}' in asked
    term.type(b"a\n")
    after = term.expect("you> ")
    assert "[approved] (always for this tool)" in after
    assert "[done] write_note: wrote 8 characters" in after
    assert "tester> tool said: wrote 8 characters" in after

    term.type(b"note call mom\n")
    again = term.expect("you> ")
    assert "approve" not in again.replace("[approved]", "")  # the grant answered for us
    assert "tester> tool said: wrote 8 characters" in again

    term.type(CTRL_D)
    assert term.wait() == 0

    shown = json.loads(run_cli("sessions", "show", "s1", "--json", config=config).stdout)
    texts = [m["parts"][0].get("text") for m in shown["messages"] if m["role"] == "user"]
    assert texts == ["hello", "note buy milk", "note call mom"]


def test_ctrl_c_aborts_the_run_and_a_second_ctrl_c_leaves(terminal: tuple[Path, list[Terminal]]) -> None:
    """Ctrl-C while an answer streams aborts that run (recorded as aborted, partial text
    kept) and returns to the prompt; Ctrl-C again leaves the chat with exit code 0. A
    question about an approval is ended the same way."""
    config, opened = terminal
    term = open_chat(config, opened, "s2")
    term.expect("you> ")
    term.type(b"slow\n")
    term.expect("tester> thinking")
    term.type(CTRL_C)
    aborted = term.expect("you> ")
    assert "aborting the run" in aborted
    assert "(run aborted)" in aborted

    term.type(b"note later\n")
    term.expect("[a]lways for this tool: ")
    term.type(CTRL_C)
    assert "(run aborted)" in term.expect("you> ")

    term.type(CTRL_C)
    assert term.wait() == 0

    runs = [json.loads(line) for line in run_cli("runs", "s2", "--json", config=config).stdout.splitlines()]
    assert [r["status"] for r in runs] == ["aborted", "aborted"]
    shown = json.loads(run_cli("sessions", "show", "s2", "--json", config=config).stdout)
    assert shown["messages"][1]["parts"][0]["text"] == "thinking "


def test_chat_asks_first_about_approvals_left_by_an_earlier_process(terminal: tuple[Path, list[Terminal]]) -> None:
    """A run parked by `send` in another process is picked up: resuming the session in
    the chat asks about its approval, and answering "y" finishes that run."""
    config, opened = terminal
    parked = run_cli("send", "s3", "note pay rent", config=config)
    assert "waiting for approval" in parked.stderr
    term = open_chat(config, opened, "s3")
    greeting = term.expect("[a]lways for this tool: ")
    assert "1 tool call from before wait for your approval:" in greeting
    assert 'approve write_note {"text": "pay rent"}?' in greeting
    term.type(b"y\n")
    assert "tester> tool said: wrote 8 characters" in term.expect("you> ")
    term.type(b"/exit\n")
    assert term.wait() == 0
    runs = [json.loads(line) for line in run_cli("runs", "s3", "--json", config=config).stdout.splitlines()]
    assert [r["status"] for r in runs] == ["completed"]


def test_ctrl_c_is_shown_once_not_echoed_twice(terminal: tuple[Path, list[Terminal]]) -> None:
    """The terminal does not echo its own ``^C`` on top of the chat's: aborting a run
    shows ``^C aborting the run``, leaving shows ``^C``, each once, never ``^C^C``."""
    config, opened = terminal
    term = open_chat(config, opened, "s4")
    term.expect("you> ")
    term.type(b"slow\n")
    term.expect("tester> thinking")
    term.type(CTRL_C)
    aborted = term.expect("you> ")
    assert "^C aborting the run" in aborted
    assert aborted.count("^C") == 1
    term.type(CTRL_C)
    left = term.expect("^C") + term.expect("\n")
    assert left.count("^C") == 1, left
    assert term.wait() == 0
