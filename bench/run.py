"""`make bench`: run every workload script (bench/w<N>_*.py) and print its table.

Each workload is a standalone script that prints a small table and the figures the
issues ask for. `make bench BENCH_ARGS="w1 w3"` runs only the named workloads.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main(argv: list[str]) -> int:
    wanted = {a.lower() for a in argv}
    scripts = sorted(HERE.glob("w[0-9]*_*.py"), key=lambda p: int(p.name[1:].split("_")[0]))
    failed = 0
    for script in scripts:
        key = script.name.split("_")[0]
        if wanted and key not in wanted:
            continue
        print(f"== {script.stem} ==", flush=True)
        code = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        if code:
            print(f"{script.name} exited with {code}", flush=True)
            failed += 1
        print(flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
