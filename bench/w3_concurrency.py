"""W3: concurrency over HTTP.

C concurrent sessions (C = 100 and 500), each one turn: the model calls a tool, the
kernel runs it, the model streams its answer. The model is a loopback
OpenAI-compatible server in a separate process (so it does not share the measured
event loop) that streams every response as 20 SSE chunks, 5 ms apart. Each
configuration runs in a fresh worker process:

- ``kernel``: a harness-kernel store (memory storage) with the ``openai`` provider,
  ``store.send`` for C sessions at once;
- ``httpx``: the baseline, the same two requests per turn made with a bare
  ``httpx.AsyncClient`` on trio (read as SSE lines, JSON-decoded), no kernel.

Reported: wall time, turns per second, peak RSS, idle RSS (after a warm-up turn) and
memory per concurrent session above idle. Targets (issue K4): kernel throughput at
least 80% of the baseline's at C=500; under 100 KB per concurrent session.

Usage: ``python bench/w3_concurrency.py [--sessions 100,500] [--repeat 2]``.
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


async def kernel_worker(url: str, sessions: int) -> dict[str, Any]:
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
                results.append(await store.send(f"session-{i}", "What does the word mean?"))

            start = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for i in range(sessions):
                    nursery.start_soon(turn, i)
            wall = time.perf_counter() - start
    finally:
        await provider.aclose()
    failed = [r.error for r in results if r.status != "completed" or not r.text or len(r.tool_calls) != 1]
    return {"wall": wall, "idle_kb": idle, "peak_kb": peak_rss_kb(), "failed": len(failed), "first_error": str(failed[:1])}


async def httpx_worker(url: str, sessions: int) -> dict[str, Any]:
    import httpx
    import trio

    tools = [{"type": "function", "function": {
        "name": "lookup", "description": "Look a word up.",
        "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
    }}]
    client = httpx.AsyncClient(
        base_url=f"{url}/v1", headers={"authorization": "Bearer sk-bench-not-a-real-key-000000"},
        timeout=httpx.Timeout(None, connect=10.0),
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
    )

    async def complete(messages: list[dict[str, Any]]) -> tuple[str, dict[int, dict[str, str]]]:
        body = {"model": "bench-model", "messages": messages, "stream": True,
                "stream_options": {"include_usage": True}, "tools": tools}
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        async with client.stream("POST", "chat/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
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


def worker(mode: str, url: str, sessions: int) -> None:
    import trio

    run = kernel_worker if mode == "kernel" else httpx_worker
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
        header = f"{'C':>5}  {'client':<16} {'wall s':>8} {'turns/s':>9} {'peak RSS MB':>12} {'idle RSS MB':>12} {'KB/session':>11} {'failed':>7}"
        print(header)
        print("-" * len(header))
        summary: dict[int, dict[str, dict[str, Any]]] = {}
        for sessions in levels:
            for mode, label in (("httpx", "httpx baseline"), ("kernel", "kernel + openai")):
                runs = [measure(mode, url, sessions) for _ in range(repeat)]
                best = min(runs, key=lambda r: r["wall"])
                best["tps"] = sessions / best["wall"]
                best["per_session_kb"] = max(0, min(r["peak_kb"] - r["idle_kb"] for r in runs)) / sessions
                best["failed"] = sum(r["failed"] for r in runs)
                summary.setdefault(sessions, {})[mode] = best
                print(f"{sessions:>5}  {label:<16} {best['wall']:>8.3f} {best['tps']:>9.1f} "
                      f"{best['peak_kb'] / 1024:>12.1f} {best['idle_kb'] / 1024:>12.1f} "
                      f"{best['per_session_kb']:>11.1f} {best['failed']:>7}")
                if best["failed"]:
                    print(f"       first failure: {best['first_error']}")
        print()
        for sessions, modes in summary.items():
            ratio = modes["kernel"]["tps"] / modes["httpx"]["tps"]
            per = modes["kernel"]["per_session_kb"]
            print(f"C={sessions}: kernel throughput {ratio:.0%} of baseline (target >= 80% at C=500); "
                  f"kernel memory {per:.1f} KB per concurrent session above idle (target < 100 KB)")
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
    parser.add_argument("--worker", choices=["kernel", "httpx"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--sessions", default="100,500")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    if args.serve:
        serve()
    elif args.worker:
        worker(args.worker, args.url, int(args.sessions))
    else:
        raise SystemExit(main([int(c) for c in args.sessions.split(",")], args.repeat))
