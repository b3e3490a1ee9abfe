"""W8 (issue K14): how long the `harness-kernel` command takes to start.

Runs the venv's console script (the one a user types) for `--help` and `plugins`, each
RUNS times after one warm-up run (so the page cache holds the files, as on any machine
after the first command), and prints the median and the slowest wall time of each, with
the target beside it, and the median CPU time (user + system) of the child: on a shared
machine the wall time also counts waiting for a core, the CPU time much less so.
The environment is the user's: entry points autoload (every plugin of the workspace is
installed), no config file, bytecode cached (``PYTHONDONTWRITEBYTECODE`` is dropped). `python -X importtime -m harness_kernel.cli plugins` shows
what each import costs.

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


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``argv``."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert child.stderr is not None
    errors = child.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited with {child.returncode}: {errors.strip()}")
    return elapsed, usage.ru_utime + usage.ru_stime


def main() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_KERNEL_")}
    # A user's Python caches bytecode: without the cache every start compiles every
    # source file again (attrs' generated methods aside, most of what is left). The
    # warm-up run writes the cache (__pycache__, git-ignored), as a user's first run does.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    script = console_script()
    print(f"  {Path(script[0]).name} (the venv's console script), {RUNS} runs after a warm-up")
    worst = 0.0
    for args in COMMANDS:
        argv = [*script, *args]
        timed(argv, env)
        runs = [timed(argv, env) for _ in range(RUNS)]
        times = [wall for wall, _ in runs]
        median = statistics.median(times)
        cpu = statistics.median(cpu for _, cpu in runs)
        worst = max(worst, median)
        label = f"harness-kernel {' '.join(args)}"
        mark = "met" if median < TARGET else "NOT met"
        print(
            f"    {label:<26} median {median * 1000:6.0f} ms   max {max(times) * 1000:6.0f} ms"
            f"   (target < {TARGET * 1000:.0f} ms: {mark})   cpu {cpu * 1000:5.0f} ms"
        )
    verdict = "met" if worst < TARGET else "NOT met"
    print(f"  target: median under {TARGET * 1000:.0f} ms for each: {verdict}")


if __name__ == "__main__":
    main()
