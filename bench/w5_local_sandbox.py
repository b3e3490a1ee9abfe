"""W5: the local sandbox and the file/shell kits.

Per isolation level (bwrap only when it works on this host): the latency of running
`true` with the default limits (rlimits, a cgroup per command where the host allows,
the disk quota) against no limits at all, 200 runs each, interleaved so both see the
same machine; the target is under 1 ms added per exec. Then a 4 KiB write + read round
trip (200 runs), and the wall time of a command printing 100 MB (capped to 1 MiB per
stream). Then the `grep` tool over 500 files of 200 lines through the sandbox, and the
peak RSS of the whole script.
"""

from __future__ import annotations

import resource
import shutil
import statistics
import tempfile
import time

import trio

from harness_kernel import ToolContext
from harness_kernel.contracts import SessionInfo
from harness_kernel.errors import ConfigError
from harness_kernel_local_sandbox import CommandLimits, LocalSandbox, LocalSandboxOptions
from harness_kernel_tools import files_kit


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def timed(runs: int, action) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def level(isolation: str, rows: list[tuple[str, str]]) -> None:
    root = tempfile.mkdtemp(prefix="w5-")
    try:
        try:
            sandbox = LocalSandbox(LocalSandboxOptions(root=root, isolation=isolation))
        except ConfigError as exc:
            rows.append((f"{isolation}: unavailable", str(exc).split(":")[1].strip()[:60]))
            return
        box = await sandbox.open(SessionInfo("w5", "bench"))
        free = LocalSandbox(
            LocalSandboxOptions(
                root=root, isolation=isolation, limits=CommandLimits.unlimited(),
                disk_quota_bytes=None, cgroup="off",
            )
        )
        free_box = await free.open(SessionInfo("w5-free", "bench"))
        plain = LocalSandbox(LocalSandboxOptions(root=root, isolation=isolation, cgroup="off"))
        plain_box = await plain.open(SessionInfo("w5-rlimits", "bench"))
        for each in (box, free_box, plain_box):  # warm up
            await timed(10, lambda each=each: each.exec(["true"]))
        limited: list[float] = []
        unlimited: list[float] = []
        rlimited: list[float] = []
        for _ in range(200):
            limited += await timed(1, lambda: box.exec(["true"]))
            unlimited += await timed(1, lambda: free_box.exec(["true"]))
            rlimited += await timed(1, lambda: plain_box.exec(["true"]))
        mechanisms = sandbox.limit_mechanisms
        how = "cgroup" if sandbox.cgroups is not None else "rlimits only"
        rows.append((f"{isolation}: exec true, no limits, p50 / p95 ms", f"{statistics.median(unlimited):.2f} / {percentile(unlimited, 0.95):.2f}"))
        rows.append((f"{isolation}: exec true, limits on ({how}), p50 / p95 ms", f"{statistics.median(limited):.2f} / {percentile(limited, 0.95):.2f}"))
        rows.append((f"{isolation}: exec true, limits on (cgroup = off), p50 / p95 ms", f"{statistics.median(rlimited):.2f} / {percentile(rlimited, 0.95):.2f}"))
        for label, samples in ((how, limited), ("cgroup = off", rlimited)):
            added = statistics.median(samples) - statistics.median(unlimited)
            rows.append((f"{isolation}: added by limits ({label}), p50 ms (target < 1)", f"{added:.2f} {'ok' if added < 1 else 'OVER'}"))
        await plain.aclose()
        if isolation == "none":
            rows.append(("limits: memory / processes by", f"{mechanisms['memory'].split(' (')[0]} / {mechanisms['processes'].split(' (')[0]}"))
        await free.aclose()
        data = b"x" * 4096

        async def round_trip() -> None:
            await box.write_file("f.bin", data)
            assert await box.read_file("f.bin") == data

        files = await timed(200, round_trip)
        rows.append((f"{isolation}: 4 KiB write+read p50 / p95 ms", f"{statistics.median(files):.2f} / {percentile(files, 0.95):.2f}"))
        started = time.perf_counter()
        result = await box.exec("head -c 104857600 /dev/zero")
        elapsed = time.perf_counter() - started
        assert result.stdout_truncated
        rows.append((f"{isolation}: 100 MB of output, wall s (kept)", f"{elapsed:.2f} ({len(result.stdout)} chars)"))
        await sandbox.destroy("w5")
        await sandbox.aclose()
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def grep_bench(rows: list[tuple[str, str]]) -> None:
    root = tempfile.mkdtemp(prefix="w5-grep-")
    try:
        sandbox = LocalSandbox(LocalSandboxOptions(root=root))
        box = await sandbox.open(SessionInfo("grep", "bench"))
        line = "the quick brown fox jumps over the lazy dog\n"
        for index in range(500):
            extra = f"needle {index}\n" if index % 50 == 0 else ""
            await box.write_file(f"src/d{index % 10}/f{index}.txt", line * 199 + extra)
        grep = {t.name: t for t in files_kit()}["grep"]
        ctx = ToolContext(
            session_id="grep", run_id="r", call_id="c", tool_name="grep", sandbox=box,
            resources={}, labels={}, state=None, log=None,
        )
        started = time.perf_counter()
        output = await grep.invoke(ctx, grep.validate({"pattern": r"needle \d+"}))
        elapsed = time.perf_counter() - started
        rows.append(("grep tool: 500 files x 200 lines, ms (matches)", f"{elapsed * 1000:.0f} ({len(output.splitlines())})"))
        await sandbox.aclose()
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def main() -> None:
    rows: list[tuple[str, str]] = []
    for isolation in ("none", "bwrap"):
        await level(isolation, rows)
    await grep_bench(rows)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(("peak RSS of the script, MiB", f"{rss:.0f}"))
    width = max(len(name) for name, _ in rows)
    print(f"{'measure'.ljust(width)}  value")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


if __name__ == "__main__":
    trio.run(main)
