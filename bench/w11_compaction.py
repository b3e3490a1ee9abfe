"""W11 (issue K12, "W7" there): a 2,000-turn conversation with compaction on.

One session on SQLite talks for 2,000 turns (every 7th a tool round) to a scripted
model, under a ``CompactionPolicy`` of 2,000 tokens (trigger 0.8, keep 0.3) whose
summaries come from a scripted summarizing model (``scripted/summarize``). Reported:

- the largest model request in tokens (``estimate_tokens``; the budget beside it);
- the per-turn time around turn 100 and around turn 2,000 (median of the 50 turns
  ending there, turns that compacted excluded), and their ratio (target: within 1.3x);
- the compaction's own cost: how many compactions, the median turn that compacted
  minus the median turn that did not, and the summarizer's input tokens in total;
- for contrast, the same turns without compaction (the request grows with history),
  and with compaction on memory storage (the kernel alone, without SQLite's growth).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import trio

from harness_kernel import (
    CompactionPolicy,
    ModelRequest,
    Usage,
    create_session_store,
    define_agent,
    estimate_tokens,
    tool,
)
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall

TURNS = 2_000
BUDGET = 2_000
WINDOW = 50


@tool
async def lookup(q: str) -> str:
    """Look up a word."""
    return f"the definition of {q} is a fairly long sentence that takes some room"


class Model:
    def __init__(self) -> None:
        self.largest = 0
        self.summaries = 0
        self.summary_input = 0

    def answer(self, request: ModelRequest) -> Reply:
        self.largest = max(self.largest, estimate_tokens(request))
        last = request.messages[-1]
        if last.role == "user" and last.text.startswith("look up"):
            return Reply(tool_calls=[ToolCall("lookup", {"q": last.text.split()[-1]})])
        return Reply(text="noted, " * 12, usage=Usage(estimate_tokens(request), 20))

    def summarize(self, request: ModelRequest) -> Reply:
        self.summaries += 1
        size = estimate_tokens(request)
        self.summary_input += size
        return Reply(text=f"summary {self.summaries}: " + "the user noted many things; " * 6, usage=Usage(size, 50))


def _user(turn: int) -> str:
    return f"look up word{turn}" if turn % 7 == 0 else f"turn {turn}: please note this down for later"


async def talk(path: Path | None, compaction: bool) -> tuple[list[float], list[float], list[bool], Model]:
    model = Model()
    policy = CompactionPolicy(budget=BUDGET, trigger=0.8, keep=0.3, summarizer="scripted/summarize")
    agent = define_agent(name="w11", tools=[lookup], compaction=policy if compaction else None)
    provider = ScriptedProvider({"main": model.answer, "summarize": model.summarize})
    times: list[float] = []
    cpus: list[float] = []
    compacted: list[bool] = []
    async with create_session_store(
        agent=agent, providers=[provider], default_model="scripted/main",
        **({"storage": "sqlite", "storage_options": {"path": str(path)}} if path else {}),
    ) as store:
        session = await store.create("w11")
        for turn in range(TURNS):
            before = model.summaries
            started, cpu = time.perf_counter(), time.process_time()
            result = await session.send(_user(turn))
            times.append((time.perf_counter() - started) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
            compacted.append(model.summaries != before)
            assert result.status == "completed", result.error
        assert len(await session.history()) == 2 * TURNS + 2 * len(range(0, TURNS, 7))
    return times, cpus, compacted, model


def around(times: list[float], compacted: list[bool], turn: int) -> float:
    window = [t for t, c in zip(times[turn - WINDOW : turn], compacted[turn - WINDOW : turn], strict=True) if not c]
    return statistics.median(window)


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="w11-") as tmp:
        times, cpus, compacted, model = await talk(Path(tmp) / "on.db", True)
        plain_times, plain_cpus, plain_flags, plain = await talk(Path(tmp) / "off.db", False)
    memory_times, memory_cpus, memory_flags, _ = await talk(None, True)
    print(f"  {TURNS:,} turns, sqlite, budget {BUDGET:,} tokens (trigger 0.8, keep 0.3)")
    print(f"    {'':<24}{'compaction on':>15}{'off':>12}")
    print(f"    {'largest request, tokens':<24}{model.largest:>15,}{plain.largest:>12,}   (budget {BUDGET:,})")
    for label, on, off in (("wall", times, plain_times), ("cpu", cpus, plain_cpus)):
        at_100, at_2000 = around(on, compacted, 100), around(on, compacted, TURNS)
        off_100, off_2000 = around(off, plain_flags, 100), around(off, plain_flags, TURNS)
        print(f"    {f'turn {label} ms @100':<24}{at_100:>15.2f}{off_100:>12.2f}")
        print(f"    {f'turn {label} ms @2000':<24}{at_2000:>15.2f}{off_2000:>12.2f}")
        print(
            f"    {f'{label} @2000 / @100':<24}{at_2000 / at_100:>14.2f}x{off_2000 / off_100:>11.2f}x"
            "   (target: within 1.3x)"
        )
    print(f"  compactions: {model.summaries}, one per {TURNS / max(1, model.summaries):.1f} turns")
    for label, series in (("wall", times), ("cpu", cpus)):
        done = [t for t, c in zip(series, compacted, strict=True) if c]
        rest = [t for t, c in zip(series, compacted, strict=True) if not c]
        extra = statistics.median(done) - statistics.median(rest)
        print(
            f"  a turn that compacted ({label}): median {statistics.median(done):.2f} ms, "
            f"{extra:+.2f} ms over one that did not"
        )
    for label, series in (("wall", memory_times), ("cpu", memory_cpus)):
        at_100, at_2000 = around(series, memory_flags, 100), around(series, memory_flags, TURNS)
        print(
            f"  memory storage, compaction on, {label}: @100 {at_100:.2f} ms, @2000 {at_2000:.2f} ms, "
            f"{at_2000 / at_100:.2f}x"
        )
    print(
        f"  summarizer input: {model.summary_input:,} tokens in all "
        f"({model.summary_input / max(1, model.summaries):,.0f} per compaction)"
    )


if __name__ == "__main__":
    trio.run(main)
