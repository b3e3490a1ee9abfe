"""W13 (issue K10's W4): the service's cost over the embedded kernel.

C = 500 concurrent clients, each one streamed turn: the model calls a tool, the kernel
runs it, the model streams its answer. The model is W3's loopback OpenAI-compatible
server in its own process (20 SSE chunks per response, 5 ms apart). Two
configurations, each in fresh processes, on memory storage:

- ``embedded``: one process holding a store with the ``openai`` provider, C
  ``session.stream`` calls at once;
- ``service``: a ``harness-kernel serve`` process from a config file, and a client
  process with C trio tasks sharing one ``httpx.AsyncClient``, each POSTing the message
  with ``Accept: text/event-stream`` and reading the events up to the result.

Sessions are created before the clock starts. Reported: wall time and turns per second;
time to first token (from sending the message to the first ``text.delta``: the first
word of the answer, after the tool ran) at p50 and p99; the peak RSS of the process
holding the store, and the CPU time it spent per turn (the service's client apart).
Targets (issue K10): the service's throughput at least 70% of the
embedded kernel's; the p99 time to first token the service adds under 20 ms.

At C = 500 the machine is saturated and time to first token is mostly queueing (the
model server, the host and, for the service, the client all want the CPU), so the
latency the service adds is also measured on a quiet machine: ``--probe`` turns one at
a time. The client shares the machine with the service, as the embedded host does not,
so the throughput ratio is a floor.

Usage: ``python bench/w13_service.py [--sessions 500] [--probe 50] [--repeat 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
W3 = ROOT / "bench" / "w3_concurrency.py"
KEY = "sk-bench-not-a-real-key-000000"
QUESTION = "What does the word mean?"
TIMEOUT = 600.0  # a hang guard

AGENT_MODULE = '''
from harness_kernel import define_agent, tool


@tool
async def lookup(word: str) -> str:
    """Look a word up."""
    return f"{word}: found"


agent = define_agent(name="w13", instructions="Look words up.", tools=[lookup])
'''


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (this one by default)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# -- embedded: the store in this process ---------------------------------------------------


async def embedded_worker(url: str, sessions: int, serial: bool) -> dict[str, Any]:
    import trio

    from harness_kernel import TextDelta, create_session_store
    from harness_kernel_openai import OpenAIProvider

    sys.path.insert(0, os.environ["W13_AGENT_DIR"])
    from w13_agent import agent  # type: ignore[import-not-found]

    provider = OpenAIProvider(base_url=f"{url}/v1", api_key=KEY)
    ttft: list[float] = []
    failed: list[str] = []
    try:
        async with create_session_store(
            agent=agent, providers=[provider], default_model="openai/bench-model",
            error_policy={"retry": {"policy": "none"}},
        ) as store:
            warm = await store.send("warm-up", "go")
            assert warm.status == "completed", warm.error
            opened = [await store.create(f"session-{i}") for i in range(sessions)]

            async def turn(session: Any) -> None:
                started = time.perf_counter()
                first: float | None = None
                async with session.stream(QUESTION) as events:
                    async for item in events:
                        if first is None and isinstance(item, TextDelta):
                            first = time.perf_counter() - started
                result = events.result
                if result is None or result.status != "completed" or len(result.tool_calls) != 1 or first is None:
                    failed.append(str(result.error if result else "no result"))
                else:
                    ttft.append(first)

            start, cpu = time.perf_counter(), cpu_seconds()
            async with trio.open_nursery() as nursery:
                for session in opened:
                    if serial:
                        await turn(session)
                    else:
                        nursery.start_soon(turn, session)
            wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    finally:
        await provider.aclose()
    return {"wall": wall, "ttft": ttft, "failed": len(failed), "first_error": failed[:1], "peak_kb": peak_rss_kb(),
            "cpu": cpu, "client_cpu": 0.0}


# -- service: harness-kernel serve, and a client process -----------------------------------


async def client_worker(service: str, sessions: int, serial: bool) -> dict[str, Any]:
    import httpx
    import trio

    client = httpx.AsyncClient(
        base_url=service, timeout=httpx.Timeout(TIMEOUT, connect=30.0),
        limits=httpx.Limits(max_connections=sessions + 10, max_keepalive_connections=sessions + 10),
    )
    ttft: list[float] = []
    failed: list[str] = []

    async def turn(session_id: str, record: bool = True) -> None:
        started = time.perf_counter()
        first: float | None = None
        result: dict[str, Any] | None = None
        event = ""
        async with client.stream(
            "POST", f"/v1/sessions/{session_id}/messages", json={"text": QUESTION},
            headers={"accept": "text/event-stream"},
        ) as response:
            if response.status_code != 200:
                failed.append(f"HTTP {response.status_code}")
                return
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                    if first is None and event == "text.delta":
                        first = time.perf_counter() - started
                elif line.startswith("data: ") and event == "result":
                    result = json.loads(line[6:])
        if result is None or result["status"] != "completed" or len(result["tool_calls"]) != 1 or first is None:
            failed.append(str(result and result.get("error")))
        elif record:
            ttft.append(first)

    try:
        ids = []
        for i in range(sessions + 1):
            response = await client.post("/v1/sessions", json={"id": f"session-{i}"})
            response.raise_for_status()
            ids.append(response.json()["id"])
        await turn(ids.pop(), record=False)  # warm-up
        server_pid = int(os.environ["W13_SERVER_PID"])
        start, cpu, mine = time.perf_counter(), cpu_seconds(server_pid), cpu_seconds()
        async with trio.open_nursery() as nursery:
            for session_id in ids:
                if serial:
                    await turn(session_id)
                else:
                    nursery.start_soon(turn, session_id)
        wall = time.perf_counter() - start
        cpu, mine = cpu_seconds(server_pid) - cpu, cpu_seconds() - mine
    finally:
        await client.aclose()
    return {"wall": wall, "ttft": ttft, "failed": len(failed), "first_error": failed[:1], "cpu": cpu, "client_cpu": mine}


def write_config(folder: Path, model_url: str) -> Path:
    (folder / "w13_agent.py").write_text(AGENT_MODULE, encoding="utf-8")
    config = folder / "harness.toml"
    config.write_text(
        f'''agent = "w13_agent:agent"
default_model = "openai/bench-model"
# storage: the default, memory (as the embedded store has)

[[providers]]
plugin = "openai"
options = {{ base_url = "{model_url}/v1", api_key = "{KEY}" }}

[error_policy.retry]
policy = "none"

[logging]
level = "warning"

[server]
rate_limit = 1000000000
''',
        encoding="utf-8",
    )
    return config


def vm_hwm_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run_worker(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False, cwd=ROOT,
        env={**os.environ, **(env or {})}, timeout=TIMEOUT,
    )
    if out.returncode != 0:
        raise SystemExit(f"worker {args[:2]} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure_service(model_url: str, flags: list[str], folder: Path) -> dict[str, Any]:
    config = write_config(folder, model_url)
    server = subprocess.Popen(
        [sys.executable, "-m", "harness_kernel.cli", "serve", "--config", str(config), "--port", "0"],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert server.stdout is not None
        url = ""
        for line in server.stdout:
            if "harness-kernel serving on " in line:
                url = line.rsplit(" ", 1)[1].strip()
                break
        if not url:
            raise SystemExit("the service did not start")
        # Keep reading what it prints, so a full pipe never holds the service up.
        threading.Thread(target=server.stdout.read, daemon=True).start()
        result = run_worker("--client", "--url", url, *flags, env={"W13_SERVER_PID": str(server.pid)})
        result["peak_kb"] = vm_hwm_kb(server.pid)
        return result
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def measure(mode: str, model_url: str, sessions: int, serial: bool, folder: Path) -> dict[str, Any]:
    flags = ["--sessions", str(sessions), *(["--serial"] if serial else [])]
    if mode == "embedded":
        return run_worker("--embedded", "--url", model_url, *flags, env={"W13_AGENT_DIR": str(folder)})
    return measure_service(model_url, flags, folder)


def main(sessions: int, repeat: int, probe: int) -> int:
    model = subprocess.Popen(
        [sys.executable, str(W3), "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        assert model.stdout is not None
        model_url = model.stdout.readline().strip()
        if not model_url.startswith("http://127.0.0.1:"):
            raise SystemExit("the model server did not start")
        print(f"W13 the service (K10 W4): one streamed turn per client (tool call + streamed answer) against W3's "
              f"loopback OpenAI-compatible server; memory storage; best of {repeat} runs, each in fresh processes")
        header = (f"{'phase':<14} {'configuration':<32} {'wall s':>8} {'turns/s':>9} {'TTFT p50 ms':>12} "
                  f"{'TTFT p99 ms':>12} {'peak RSS MB':>12} {'CPU ms/turn':>12} {'failed':>7}")
        print(header)
        print("-" * len(header))
        best: dict[tuple[str, str], dict[str, Any]] = {}
        phases = ((f"C={sessions}", sessions, False), (f"{probe} serial", probe, True))
        with tempfile.TemporaryDirectory(prefix="w13-") as tmp:
            folder = Path(tmp)
            write_config(folder, model_url)
            for phase, count, serial in phases:
                for mode, label in (("embedded", "embedded store (session.stream)"),
                                    ("service", "harness-kernel serve + SSE")):
                    runs = [measure(mode, model_url, count, serial, folder) for _ in range(repeat)]
                    chosen = min(runs, key=lambda r: r["wall"])
                    chosen["tps"] = count / chosen["wall"]
                    chosen["failed"] = sum(r["failed"] for r in runs)
                    best[(phase, mode)] = chosen
                    ttft = chosen["ttft"] or [float("nan")]
                    print(f"{phase:<14} {label:<32} {chosen['wall']:>8.3f} {chosen['tps']:>9.1f} "
                          f"{percentile(ttft, 0.50) * 1000:>12.1f} {percentile(ttft, 0.99) * 1000:>12.1f} "
                          f"{chosen['peak_kb'] / 1024:>12.1f} {chosen['cpu'] * 1000 / count:>12.1f} {chosen['failed']:>7}")
                    if chosen["failed"]:
                        print(f"    first failure: {chosen['first_error']}")
        loaded, quiet = phases[0][0], phases[1][0]
        ratio = best[(loaded, "service")]["tps"] / best[(loaded, "embedded")]["tps"]

        def added(phase: str) -> float:
            p99 = {mode: percentile(best[(phase, mode)]["ttft"], 0.99) for mode in ("service", "embedded")}
            return (p99["service"] - p99["embedded"]) * 1000

        print()
        print(f"throughput at C={sessions}: the service does {ratio:.0%} of the embedded kernel's turns/s "
              f"(target >= 70%: {'met' if ratio >= 0.70 else 'NOT met'})")
        service, embedded = best[(loaded, "service")], best[(loaded, "embedded")]
        print(f"CPU per turn at C={sessions}: embedded host {embedded['cpu'] * 1000 / sessions:.1f} ms; service process "
              f"{service['cpu'] * 1000 / sessions:.1f} ms (its client another {service['client_cpu'] * 1000 / sessions:.1f} ms): "
              f"per CPU second the service runs {embedded['cpu'] / service['cpu']:.0%} of the embedded turns")
        for phase in (loaded, quiet):
            extra = added(phase)
            print(f"time to first token added by the service at p99, {phase}: {extra:.1f} ms "
                  f"(target < 20 ms: {'met' if extra < 20 else 'NOT met'})")
        print(f"peak RSS at C={sessions}: service process {best[(loaded, 'service')]['peak_kb'] / 1024:.1f} MB, "
              f"embedded host {best[(loaded, 'embedded')]['peak_kb'] / 1024:.1f} MB (no target)")
    finally:
        if model.stdin is not None:
            model.stdin.close()
        try:
            model.wait(timeout=10)
        except subprocess.TimeoutExpired:
            model.kill()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedded", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--serial", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--probe", type=int, default=50, help="turns one at a time for the latency probe")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    if args.embedded or args.client:
        import trio

        work = embedded_worker if args.embedded else client_worker
        print(json.dumps(trio.run(work, args.url, args.sessions, args.serial)), flush=True)
    else:
        raise SystemExit(main(args.sessions, args.repeat, args.probe))
