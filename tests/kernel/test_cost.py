"""Cost from a price table, and budgets that end runs cleanly, through the kernel with the
scripted model and a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from harness_kernel import (
    Budget,
    ModelRequest,
    Price,
    SessionStore,
    ToolResultPart,
    Usage,
    create_session_store,
    define_agent,
    tool,
)
from harness_kernel.errors import ConfigError
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall
from harness_kernel_sqlite import SqliteStorage

GPT = Price(input=2.0, output=8.0, cached=0.5)
STEP = Usage(input_tokens=1000, output_tokens=200, cache_read_tokens=400)
STEP_COST = (600 * 2.0 + 400 * 0.5 + 200 * 8.0) / 1_000_000  # 0.003


class Counter:
    def __init__(self) -> None:
        self.tool_runs = 0
        self.model_calls = 0


def agent_for(counter: Counter) -> Any:
    @tool(approval="auto")
    async def dig(depth: int) -> str:
        """Dig one level deeper."""
        counter.tool_runs += 1
        return f"dug to {depth}"

    return define_agent(name="digger", tools=[dig])


def digging(counter: Counter, *, answer_after: int | None = None) -> Any:
    """A model that keeps calling ``dig`` (saying so), each step using ``STEP``; with
    ``answer_after``, it answers once it has seen that many tool results in the run."""

    def handler(request: ModelRequest) -> Reply:
        counter.model_calls += 1
        last = request.messages[-1]
        results = 0
        for message in reversed(request.messages):
            if message.role == "user":
                break
            results += sum(isinstance(p, ToolResultPart) for p in message.parts)
        if last.role == "user" and last.text == "just answer":
            return Reply(text="a plain answer", usage=STEP)
        if answer_after is not None and results >= answer_after:
            return Reply(text="done digging", usage=STEP)
        return Reply(text=f"digging, step {results + 1}", tool_calls=[ToolCall("dig", {"depth": results + 1})], usage=STEP)

    return handler


@asynccontextmanager
async def opened(path: Path, counter: Counter, handler: Any, **options: Any) -> AsyncIterator[SessionStore]:
    storage = SqliteStorage(str(path))
    try:
        async with create_session_store(
            agent=options.pop("agent", None) or agent_for(counter),
            providers=[ScriptedProvider({"gpt": handler})],
            default_model="scripted/gpt",
            storage=storage,
            autoload_plugins=False,
            **options,
        ) as store:
            yield store
    finally:
        await storage.aclose()


async def test_usage_carries_its_cost_on_the_result_the_session_and_after_a_restart(tmp_path: Path) -> None:
    """Each model call is priced at its model's rates (cached tokens at the cached rate);
    the run's result, its summary and the session sum the costs, and a store opened
    again on the same file reads the same figures."""
    counter = Counter()
    db = tmp_path / "cost.db"
    prices = {"scripted/gpt": GPT}
    async with opened(db, counter, digging(counter, answer_after=1), prices=prices) as store:
        first = await store.send("s1", "dig once")
        second = await store.send("s1", "just answer")
        session = store.get("s1")
        assert session is not None
        [summary, _] = await session.runs()
    assert first.status == second.status == "completed"
    assert first.usage.cost == pytest.approx(2 * STEP_COST)  # two model calls
    assert second.usage.cost == pytest.approx(STEP_COST)
    assert summary.usage.cost == pytest.approx(2 * STEP_COST)
    assert session.usage.cost == pytest.approx(3 * STEP_COST)
    assert session.usage.total_tokens == 3 * STEP.total_tokens
    async with opened(db, counter, digging(counter), prices=prices) as store:
        again = await store.get_or_create("s1")
        assert again.usage.cost == pytest.approx(3 * STEP_COST)
        record = await store.storage.load("s1")
        assert record is not None
        assert record.usage.cost == pytest.approx(3 * STEP_COST)


async def test_without_a_price_cost_is_unknown_and_a_providers_own_cost_is_kept(tmp_path: Path) -> None:
    """No price for the model: ``cost`` is None (not 0). A provider that reports a cost
    keeps it, whatever the table says."""
    counter = Counter()
    async with opened(tmp_path / "a.db", counter, digging(counter)) as store:
        result = await store.send("s1", "just answer")
    assert result.usage.cost is None
    assert result.usage.total_tokens == STEP.total_tokens

    reported = Usage(10, 10, cost=0.5)
    provider = ScriptedProvider({"gpt": lambda request: Reply(text="x", usage=reported)})
    async with create_session_store(
        agent=define_agent(name="a"),
        providers=[provider],
        default_model="scripted/gpt",
        prices={"scripted/gpt": {"input": 1000.0, "output": 1000.0}},
        autoload_plugins=False,
    ) as store:
        result = await store.send("s1", "hi")
    assert result.usage.cost == 0.5


async def test_a_run_over_its_token_budget_ends_cleanly_and_the_session_goes_on(tmp_path: Path) -> None:
    """max_run_tokens: the step that reaches it is recorded (its text is the result's),
    its tool call is answered without running, the run ends failed with
    ``budget.exceeded``; the next run of the session starts afresh and completes."""
    counter = Counter()
    budget = Budget(max_run_tokens=3 * STEP.total_tokens - 1)  # reached by the third step
    db = tmp_path / "run-budget.db"
    async with opened(db, counter, digging(counter), budget=budget) as store:
        result = await store.send("s1", "dig forever")
        assert result.status == "failed"
        assert result.error is not None
        assert result.error.code == "budget.exceeded"
        assert "max_run_tokens" in result.error.message
        assert not result.error.retryable
        assert counter.model_calls == 3
        assert counter.tool_runs == 2
        assert result.text == "digging, step 3"
        assert result.usage.total_tokens == 3 * STEP.total_tokens
        results = [p for m in result.messages for p in m.parts if isinstance(p, ToolResultPart)]
        assert [r.is_error for r in results] == [False, False, True]
        assert results[-1].content.startswith("not run:")

        after = await store.send("s1", "just answer")
        assert after.status == "completed"
        assert after.text == "a plain answer"
    async with opened(db, counter, digging(counter), budget=budget) as store:
        session = await store.get_or_create("s1")
        runs = await session.runs()
        assert [r.status for r in runs] == ["failed", "completed"]
        assert runs[0].error is not None
        assert runs[0].error.code == "budget.exceeded"
        history = await session.history()
        assert [m.role for m in history][-2:] == ["user", "assistant"]
        assert session.usage.total_tokens == 4 * STEP.total_tokens


async def test_a_session_over_its_budget_refuses_model_calls_until_the_budget_grows(tmp_path: Path) -> None:
    """max_session_tokens: once reached, a new run records the user's message and ends
    ``budget.exceeded`` without calling the model; a store with a larger budget carries
    on with the same session."""
    counter = Counter()
    db = tmp_path / "session-budget.db"
    small = {"max_session_tokens": 2 * STEP.total_tokens}
    async with opened(db, counter, digging(counter), budget=small) as store:
        first = await store.send("s1", "just answer")
        second = await store.send("s1", "just answer")
        assert (first.status, second.status) == ("completed", "completed")
        calls = counter.model_calls
        refused = await store.send("s1", "just answer")
        assert refused.status == "failed"
        assert refused.error is not None
        assert refused.error.code == "budget.exceeded"
        assert "session's token budget" in refused.error.message
        assert counter.model_calls == calls
        session = store.get("s1")
        assert session is not None
        assert not session.is_running
        assert [m.text for m in await session.history()][-1] == "just answer"
    async with opened(db, counter, digging(counter), budget={"max_session_tokens": 10 * STEP.total_tokens}) as store:
        more = await store.send("s1", "just answer")
        assert more.status == "completed"


async def test_a_cost_budget_counts_dollars_from_the_price_table(tmp_path: Path) -> None:
    """max_run_cost stops the run at the step whose cost reaches it."""
    counter = Counter()
    async with opened(
        tmp_path / "c.db",
        counter,
        digging(counter),
        prices={"scripted/gpt": GPT},
        budget={"max_run_cost": 2 * STEP_COST},
    ) as store:
        result = await store.send("s1", "dig")
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "budget.exceeded"
    assert "max_run_cost" in result.error.message
    assert counter.model_calls == 2
    assert counter.tool_runs == 1
    assert result.usage.cost == pytest.approx(2 * STEP_COST)


async def test_a_budget_is_counted_across_a_wait_for_approval(tmp_path: Path) -> None:
    """A run parked on an approval and continued is one run: its budget counts the
    steps before the wait."""
    calls = 0

    @tool(approval="ask")
    async def risky() -> str:
        """Do something risky."""
        return "done"

    def handler(request: ModelRequest) -> Reply:
        nonlocal calls
        calls += 1
        return Reply(text="again", tool_calls=[ToolCall("risky", {})], usage=STEP)

    async with opened(
        tmp_path / "approve.db",
        Counter(),
        handler,
        agent=define_agent(name="asker", tools=[risky]),
        budget={"max_run_tokens": 2 * STEP.total_tokens},
    ) as store:
        parked = await store.send("s1", "go")
        assert parked.status == "waiting_approval"
        [pending] = store.pending_approvals("s1")
        result = await store.approve("s1", pending.approval_id)
    assert result is not None
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "budget.exceeded"
    assert calls == 2


@pytest.mark.parametrize(
    ("prices", "budget", "expected"),
    [
        ({"scripted/gpt": {"input": "2", "output": 8}}, None, 'prices."scripted/gpt".input: expected float, got str'),
        ({"scripted/gpt": {"input": -1, "output": 8}}, None, 'prices."scripted/gpt".input: must be a non-negative number'),
        ({"scripted/gpt": {"output": 8}}, None, 'prices."scripted/gpt".input: required'),
        ({"scripted/gpt": {"input": 1, "output": 8, "cahced": 1}}, None, 'prices."scripted/gpt": unknown key(s): cahced (did you mean \'cached\'?)'),
        ({"gpt": {"input": 1, "output": 1}}, None, "prices.gpt: model ref 'gpt' must look like '<provider>/<model>'"),
        ({"scripted/gpt": 3}, None, 'prices."scripted/gpt": expected a table, got int'),
        (None, {"max_run_tokens": 0}, "budget.max_run_tokens: must be a positive number, got 0"),
        (None, {"max_run_tokens": 1.5}, "budget.max_run_tokens: expected int"),
        (None, {"max_run_cost": 1.0}, "budget.max_run_cost: default_model 'scripted/gpt' has no price"),
        (None, {"max_runs": 1}, "budget: unknown key(s): max_runs"),
    ],
)
async def test_bad_prices_and_budgets_are_config_errors_with_their_path(
    prices: Any, budget: Any, expected: str
) -> None:
    """Every problem names the field by its path; nothing starts."""
    with pytest.raises(ConfigError) as info:
        async with create_session_store(
            agent=define_agent(name="a"),
            providers=[ScriptedProvider({"gpt": lambda r: Reply(text="x")})],
            default_model="scripted/gpt",
            prices=prices,
            budget=budget,
            autoload_plugins=False,
        ):
            pass
    assert expected in str(info.value)
