"""The config-driven quickstart, run non-interactively (what `make demo` shows).

It drives the `harness-kernel` command against `harness.toml` next to this file, in
separate processes, the way an operator would:

1. `chat demo` with the user's lines piped in: the answer streams, the agent asks to
   save a note, the approval is answered "y" and the run continues;
2. a restart: new processes show the stored session, its runs, and answer a question
   that needs the history from before the restart.

Sessions and logs go to a temporary directory (`HARNESS_DATA`), removed at the end;
pass `--keep DIR` to keep them in DIR instead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "harness.toml"


def cli() -> list[str]:
    """The installed console script next to this interpreter, else the module."""
    script = Path(sys.executable).with_name("harness-kernel")
    return [str(script)] if script.exists() else [sys.executable, "-m", "harness_kernel.cli"]


def run(args: list[str], env: dict[str, str], stdin: str | None = None) -> None:
    shown = " ".join(a if " " not in a else repr(a) for a in args)
    print(f"\n$ harness-kernel {shown}", flush=True)
    completed = subprocess.run(
        [*cli(), "--config", str(CONFIG), *args], input=stdin, text=True, env=env, check=False
    )
    if completed.returncode != 0:
        sys.exit(f"harness-kernel {args[0]} exited with {completed.returncode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", metavar="DIR", help="keep sessions and logs in DIR")
    options = parser.parse_args()
    data = Path(options.keep) if options.keep else Path(tempfile.mkdtemp(prefix="harness-demo-"))
    env = {**os.environ, "HARNESS_DATA": str(data), "PYTHONUNBUFFERED": "1"}
    try:
        print("== harness.toml: model demo/notes, a scripted stand-in (notes_agent.py), no LLM, no API key ==")
        print("\n== one process: chat, with a tool call that needs approval ==")
        run(["chat", "demo"], env, stdin="Hello there\nRemember to water the plants on Friday\ny\n")

        print("\n== a restart: three new processes, each on the same storage ==")
        run(["sessions", "list"], env)
        run(["runs", "demo"], env)
        run(["send", "demo", "What do you have for me?"], env)
        log = data / "logs" / "harness.jsonl"
        if log.exists():
            lines = log.read_text(encoding="utf-8").splitlines()
            where = (
                f"in {log}" if options.keep
                else "in a temporary folder, removed now; run with --keep DIR to read them"
            )
            print(f"\n(the jsonl sink wrote {len(lines)} log records, {where})")
    finally:
        if not options.keep:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
