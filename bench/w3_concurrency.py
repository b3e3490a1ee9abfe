"""W3: concurrency over HTTP.

C concurrent sessions (C = 100, 500 and 2000), each one turn: the model calls a tool,
the kernel runs it, the model streams its answer. The model is a loopback
OpenAI-compatible server in a separate process (so it does not share the measured
event loop) that streams every response as 20 SSE chunks, 5 ms apart. Each
configuration runs in a fresh worker process:

- ``kernel send`` / ``kernel stream``: a harness-kernel store (memory storage) with the
  ``openai`` provider, C sessions at once through ``store.send`` (the result only) or
  ``store.stream`` (every event iterated by the caller);
- the baseline: the same two requests per turn made with a bare ``httpx.AsyncClient``
  on trio (read as SSE lines, JSON-decoded), no kernel, in two ways: ``raw done``
  stops reading at ``data: [DONE]`` and closes the response (so the connection is
  closed, never reused) and ``raw reuse`` reads every body to its end, keeping the
  connection alive for the next request. Both use a pool of 1000 connections (the
  kernel's default ``max_connections``) with at most 1000 requests in flight (a trio
  semaphore: requests queued inside httpcore's pool make it quadratic). The faster of
  the two at each C is the baseline the kernel is compared with.

Reported: wall time, turns per second, peak RSS, idle RSS (after a warm-up turn) and
memory per concurrent session above idle; then at each C the kernel's throughput over
the baseline's. Targets (issue K15): kernel turns/s at least 0.8x the fastest raw
baseline at every C, streamed and send, with keep-alive on; (issue K4) under 100 KB per
concurrent session. The machine may be shared: ratios compare runs of the same
invocation only.

Usage: ``python bench/w3_concurrency.py [--sessions 100,500,2000] [--repeat 1]`` (a few
minutes on 2 cores; ``--repeat N`` keeps the best of N runs of each configuration).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHUNKS = 20
CHUNK_DELAY = 0.005
POOL = 1000  # connections of the baseline's pool: the kernel's default max_connections
WORD = "structured-concurrency-benchmark-word-01234567890123"  # 64 bytes of JSON: 16 fragments of 4


# -- the model server (its own process) -----------------------------------------------------


def serve() -> None:
    sys.path.insert(0, str(ROOT))
    import trio

    from tests.providers_common.loopback import LoopbackServer
    from tests.providers_common.scripted import Call, Reply, ScriptedAPI

    def respond(body: Any) -> Reply:
        if any(m["role"] == "tool" for m in body["messages"]):
            return Reply("The word means " + "many things at once, " * 8, text_chunks=CHUNKS - 3)
        return Reply(calls=[Call("lookup", {"word": WORD}, fragments=CHUNKS - 4)])

    api = ScriptedAPI("openai", respond, chunk_delay=CHUNK_DELAY)
    for reply in (respond({"messages": []}), respond({"messages": [{"role": "tool"}]})):
        assert len(api.events(reply, 1)) == CHUNKS + 1, "20 data chunks, then [DONE]"

    async def main() -> None:
        server = LoopbackServer(api)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            print(server.url, flush=True)
            await trio.to_thread.run_sync(sys.stdin.read)  # runs until the parent closes stdin
            nursery.cancel_scope.cancel()

    trio.run(main)


# -- the measured clients (one process per configuration) ----------------------------------


def rss_kb() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def kernel_worker(url: str, sessions: int, streamed: bool) -> dict[str, Any]:
    import trio

    from harness_kernel import create_session_store, define_agent, tool
    from harness_kernel_openai import OpenAIProvider

    @tool
    async def lookup(word: str) -> str:
        """Look a word up."""
        return f"{word}: found"

    agent = define_agent(name="w3", instructions="Look words up.", tools=[lookup])
    provider = OpenAIProvider(base_url=f"{url}/v1", api_key="sk-bench-not-a-real-key-000000")
    results: list[Any] = []
    try:
        async with create_session_store(
            agent=agent, providers=[provider], default_model="openai/bench-model",
            error_policy={"retry": {"policy": "none"}},
        ) as store:
            warm = await store.send("warm-up", "go")
            assert warm.status == "completed", warm.error
            idle = rss_kb()

            async def turn(i: int) -> None:
                if not streamed:
                    results.append(await store.send(f"session-{i}", "What does the word mean?"))
                    return
                async with store.stream(f"session-{i}", "What does the word mean?") as events:
                    async for _ in events:
                        pass
                results.append(events.result)

            start = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for i in range(sessions):
                    nursery.start_soon(turn, i)
            wall = time.perf_counter() - start
    finally:
        await provider.aclose()
    failed = [
        r.error if r is not None else "no result" for r in results
        if r is None or r.status != "completed" or not r.text or len(r.tool_calls) != 1
    ]
    return {"wall": wall, "idle_kb": idle, "peak_kb": peak_rss_kb(), "failed": len(failed), "first_error": str(failed[:1])}


async def httpx_worker(url: str, sessions: int, reuse: bool) -> dict[str, Any]:
    import httpx
    import trio

    tools = [{"type": "function", "function": {
        "name": "lookup", "description": "Look a word up.",
        "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
    }}]
    client = httpx.AsyncClient(
        base_url=f"{url}/v1", headers={"authorization": "Bearer sk-bench-not-a-real-key-000000"},
        timeout=httpx.Timeout(None, connect=10.0),
        limits=httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL),
    )
    # Requests past the pool's size wait here, not in httpcore's queue: re-planned
    # against every connection each time one frees, that queue made a C=2000 run of
    # this baseline take minutes (and without a limit, 2000 connects time out).
    gate = trio.Semaphore(POOL)

    async def complete(messages: list[dict[str, Any]]) -> tuple[str, dict[int, dict[str, str]]]:
        body = {"model": "bench-model", "messages": messages, "stream": True,
                "stream_options": {"include_usage": True}, "tools": tools}
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        async with gate, client.stream("POST", "chat/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line == "data: [DONE]" and not reuse:
                    break  # leaving the block closes the response, and with it the connection
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                for choice in json.loads(line[6:]).get("choices") or ():
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        text.append(delta["content"])
                    for call in delta.get("tool_calls") or ():
                        entry = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
                        entry["id"] = call.get("id") or entry["id"]
                        function = call.get("function") or {}
                        entry["name"] = function.get("name") or entry["name"]
                        entry["arguments"] += function.get("arguments") or ""
        return "".join(text), calls

    async def one_turn() -> bool:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "Look words up."}, {"role": "user", "content": "What does the word mean?"},
        ]
        _, calls = await complete(messages)
        call = calls[0]
        result = f"{json.loads(call['arguments'])['word']}: found"
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}},
        ]})
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        text, _ = await complete(messages)
        return bool(text)

    ok: list[bool] = []
    try:
        assert await one_turn()
        idle = rss_kb()

        async def turn() -> None:
            ok.append(await one_turn())

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(sessions):
                nursery.start_soon(turn)
        wall = time.perf_counter() - start
    finally:
        await client.aclose()
    return {"wall": wall, "idle_kb": idle, "peak_kb": peak_rss_kb(), "failed": ok.count(False), "first_error": ""}


MODES = {
    "raw-done": ("raw done", lambda url, c: httpx_worker(url, c, reuse=False)),
    "raw-reuse": ("raw reuse", lambda url, c: httpx_worker(url, c, reuse=True)),
    "kernel-send": ("kernel send", lambda url, c: kernel_worker(url, c, streamed=False)),
    "kernel-stream": ("kernel stream", lambda url, c: kernel_worker(url, c, streamed=True)),
}


def worker(mode: str, url: str, sessions: int) -> None:
    import trio

    run = MODES[mode][1]
    print(json.dumps(trio.run(run, url, sessions)), flush=True)


# -- the driver --------------------------------------------------------------------------------


def measure(mode: str, url: str, sessions: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", mode, "--url", url, "--sessions", str(sessions)],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )
    if out.returncode != 0:
        raise SystemExit(f"{mode} worker failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(levels: list[int], repeat: int) -> int:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise SystemExit("the model server did not start")
        print(f"W3 concurrency over HTTP: loopback OpenAI-compatible server in its own process, "
              f"{CHUNKS} chunks per response {CHUNK_DELAY * 1000:g} ms apart; one turn = tool call + streamed text "
              f"(2 model calls); best of {repeat} runs, each in a fresh process")
        header = (f"{'C':>5}  {'client':<14} {'wall s':>8} {'turns/s':>9} {'vs base':>8} {'target':>7} "
                  f"{'peak RSS MB':>12} {'idle RSS MB':>12} {'KB/session':>11} {'failed':>7}")
        print(header)
        print("-" * len(header))
        summary: dict[int, dict[str, float]] = {}
        for sessions in levels:
            best: dict[str, dict[str, Any]] = {}
            for mode in MODES:
                runs = [measure(mode, url, sessions) for _ in range(repeat)]
                fastest = min(runs, key=lambda r: r["wall"])
                fastest["tps"] = sessions / fastest["wall"]
                fastest["per_session_kb"] = max(0, min(r["peak_kb"] - r["idle_kb"] for r in runs)) / sessions
                fastest["failed"] = sum(r["failed"] for r in runs)
                best[mode] = fastest
            base_mode = max(("raw-done", "raw-reuse"), key=lambda m: best[m]["tps"])
            base = best[base_mode]["tps"]
            for mode, run in best.items():
                label = MODES[mode][0]
                if mode == base_mode:
                    ratio, target = "baseline", ""
                elif mode.startswith("raw"):
                    ratio, target = f"{run['tps'] / base:.2f}x", ""
                else:
                    ratio, target = f"{run['tps'] / base:.2f}x", ">=0.8x"
                    summary.setdefault(sessions, {})[mode] = run["tps"] / base
                print(f"{sessions:>5}  {label:<14} {run['wall']:>8.3f} {run['tps']:>9.1f} {ratio:>8} {target:>7} "
                      f"{run['peak_kb'] / 1024:>12.1f} {run['idle_kb'] / 1024:>12.1f} "
                      f"{run['per_session_kb']:>11.1f} {run['failed']:>7}")
                if run["failed"]:
                    print(f"       first failure: {run['first_error']}")
            summary[sessions]["per_session_kb"] = best["kernel-send"]["per_session_kb"]
            summary[sessions]["baseline"] = 0 if base_mode == "raw-done" else 1
        print()
        for sessions, figures in summary.items():
            base_name = ("raw done", "raw reuse")[int(figures["baseline"])]
            verdicts = []
            for mode in ("kernel-send", "kernel-stream"):
                ratio = figures[mode]
                verdicts.append(f"{MODES[mode][0]} {ratio:.2f}x ({'met' if ratio >= 0.8 else 'NOT met'})")
            print(f"C={sessions}: over the fastest raw baseline ({base_name}): {', '.join(verdicts)}, target >= 0.8x; "
                  f"kernel memory {figures['per_session_kb']:.1f} KB per concurrent session above idle (target < 100 KB)")
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--sessions", default="100,500,2000")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    if args.serve:
        serve()
    elif args.worker:
        worker(args.worker, args.url, int(args.sessions))
    else:
        raise SystemExit(main([int(c) for c in args.sessions.split(",")], args.repeat))
