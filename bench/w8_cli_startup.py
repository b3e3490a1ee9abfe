"""W8 (issue K14): how long the `harness-kernel` command takes to start.

Runs the venv's console script (the one a user types) for `--help` and `plugins`, each
RUNS times after one warm-up run (so the page cache holds the files, as on any machine
after the first command), and prints the median and the slowest wall time of each.
The environment is the user's: entry points autoload, no config file.

Target (issue K14): median under 0.4 s for both.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 10
TARGET = 0.4
COMMANDS = (["--help"], ["plugins"])


def console_script() -> list[str]:
    """The installed `harness-kernel` next to this interpreter, else the module."""
    script = Path(sys.executable).with_name("harness-kernel")
    return [str(script)] if script.exists() else [sys.executable, "-m", "harness_kernel.cli"]


def wall_time(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited with {done.returncode}: {done.stderr.strip()}")
    return elapsed


def main() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_KERNEL_")}
    script = console_script()
    print(f"  {Path(script[0]).name} (the venv's console script), {RUNS} runs after a warm-up")
    worst = 0.0
    for args in COMMANDS:
        argv = [*script, *args]
        wall_time(argv, env)
        times = [wall_time(argv, env) for _ in range(RUNS)]
        median = statistics.median(times)
        worst = max(worst, median)
        label = f"harness-kernel {' '.join(args)}"
        print(f"    {label:<26} median {median * 1000:6.0f} ms   max {max(times) * 1000:6.0f} ms")
    verdict = "met" if worst < TARGET else "NOT met"
    print(f"  target: median under {TARGET * 1000:.0f} ms for each: {verdict}")


if __name__ == "__main__":
    main()
