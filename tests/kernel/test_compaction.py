"""Compaction: a long session's model context stays within its budget by appending
``context.compacted`` events; history, restarts and tool rounds are unaffected."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness_kernel import (
    CompactionInput,
    CompactionPolicy,
    ContextCompacted,
    MemoryStorage,
    Message,
    ModelRequest,
    ToolResultPart,
    Usage,
    define_agent,
    estimate_tokens,
    tool,
)
from harness_kernel.errors import ConfigError, InvalidArgument, ProviderUnavailable
from harness_kernel.testing import Reply, ToolCall
from tests.kernel.helpers import open_store

BUDGET = 1_200
TURNS = 2_000
RESTART_AT = 1_000


@tool
async def lookup(q: str) -> str:
    """Look up a word."""
    return f"the definition of {q} is a fairly long sentence that takes some room"


def _shape(request: ModelRequest) -> list[tuple[str, str, tuple[str, ...]]]:
    """A request's messages as role, text and tool call names (ids and times differ
    between two sessions saying the same things)."""
    return [(m.role, m.text, tuple(c.name for c in m.tool_calls)) for m in request.messages]


class Conversation:
    """A scripted model and summarizer that check the budget at every request and record
    what they saw."""

    def __init__(self) -> None:
        self.requests: list[ModelRequest] = []
        self.jobs: list[CompactionInput] = []
        self.largest = 0

    def model(self, request: ModelRequest) -> Reply:
        size = estimate_tokens(request)
        assert size <= BUDGET, f"request {len(self.requests)} has {size} tokens"
        self.largest = max(self.largest, size)
        self.requests.append(request)
        last = request.messages[-1]
        if last.role == "user" and last.text.startswith("look up"):
            return Reply(tool_calls=[ToolCall("lookup", {"q": last.text.split()[-1]})])
        return Reply(text=f"answer {len(self.requests)}: " + "noted, " * 6, usage=Usage(5, 5))

    def summarize(self, job: CompactionInput) -> str:
        self.jobs.append(job)
        return _digest(job)


def _digest(job: CompactionInput) -> str:
    earlier = (job.previous_summary or "")[-120:]
    return f"{earlier} | seqs {job.first_seq}-{job.last_seq}: {len(job.messages)} messages"


def _agent(conversation: Conversation) -> Any:
    policy = CompactionPolicy(budget={"scripted/main": BUDGET}, trigger=0.8, keep=0.3, summarizer=conversation.summarize)
    return define_agent(name="long", instructions="Keep notes.", tools=[lookup], compaction=policy)


def _user(turn: int) -> str:
    return f"look up word{turn}" if turn % 7 == 0 else f"turn {turn}: please note this down for later"


async def _talk(conversation: Conversation, storage: MemoryStorage, turns: range) -> None:
    async with open_store({"main": conversation.model}, agent=_agent(conversation), storage=storage) as store:
        for turn in turns:
            result = await store.send("long", _user(turn))
            assert result.status == "completed"


def _messages_of(events: list[Any]) -> dict[int, Message]:
    """The history by seq, read straight from storage."""
    found: dict[int, Message] = {}
    for event in events:
        payload = event.payload
        message = getattr(payload, "message", None)
        if message is not None and event.type == "message.added":
            found[event.seq] = message
        elif event.type == "tool.finished":
            found[event.seq] = Message("tool", (payload.result,), id=payload.message_id, created_at=event.at)
    return found


def _tool_rounds_whole(request: ModelRequest) -> None:
    calls = [c.call_id for m in request.messages for c in m.tool_calls]
    results = [p.call_id for m in request.messages for p in m.parts if isinstance(p, ToolResultPart)]
    assert set(results) <= set(calls), "a tool result without its call"
    assert set(calls) <= set(results), "a tool call without its result"


async def test_a_2000_turn_conversation_stays_in_budget_and_loses_nothing() -> None:
    """2,000 scripted turns (tool rounds among them) under a 1,200-token budget, with a
    restart half way: every request fits, no tool call is separated from its result,
    each summary covers exactly its seq range, history() has every message, and the
    restarted session sends exactly what an uninterrupted one sends."""
    straight, restarted = Conversation(), Conversation()
    await _talk(straight, MemoryStorage(), range(TURNS))
    storage = MemoryStorage()
    await _talk(restarted, storage, range(RESTART_AT))
    await _talk(restarted, storage, range(RESTART_AT, TURNS))

    assert len(restarted.requests) == len(straight.requests) > TURNS
    assert [_shape(r) for r in restarted.requests] == [_shape(r) for r in straight.requests]
    assert [(j.first_seq, j.last_seq) for j in restarted.jobs] == [(j.first_seq, j.last_seq) for j in straight.jobs]

    events = await storage.read("long")
    by_seq = _messages_of(events)
    compactions = [(e.seq, e.payload) for e in events if isinstance(e.payload, ContextCompacted)]
    assert len(compactions) == len(restarted.jobs) > 50
    previous: tuple[int, ContextCompacted] | None = None
    for (seq, event), job in zip(compactions, restarted.jobs, strict=True):
        assert event.first_seq == (previous[1].last_seq + 1 if previous else 1)
        assert event.previous_seq == (previous[0] if previous else None)
        assert event.last_seq < seq
        covered = [m for s, m in sorted(by_seq.items()) if event.first_seq <= s <= event.last_seq]
        assert list(job.messages) == covered
        assert job.previous_summary == (previous[1].summary if previous else None)
        assert event.summary == _digest(job)
        assert event.tokens_after < event.tokens_before
        previous = (seq, event)
    for request in restarted.requests:
        _tool_rounds_whole(request)

    async with open_store({"main": restarted.model}, agent=_agent(restarted), storage=storage) as store:
        session = await store.get_or_create("long")
        history = await session.history()
        assert len(history) == len(by_seq) == 2 * TURNS + 2 * len(range(0, TURNS, 7))
        assert history == [m for _, m in sorted(by_seq.items())]
        # The next request is the latest summary plus the messages after its range.
        await session.send("one more")
    seq, latest = compactions[-1]
    last_request = restarted.requests[-1]
    assert last_request.messages[0].text == f"[Summary of the earlier conversation]\n\n{latest.summary}"
    after = [m for s, m in sorted(by_seq.items()) if s > latest.last_seq]
    assert [m.id for m in last_request.messages[1:-1]] == [m.id for m in after]


def _long_session_model(requests: list[ModelRequest]) -> Callable[[ModelRequest], Reply]:
    def model(request: ModelRequest) -> Reply:
        requests.append(request)
        if request.system.startswith("You compact a conversation"):
            return Reply(text="They talked about ten things.", usage=Usage(300, 8))
        return Reply(text="ok " * 20)

    return model


async def test_compact_by_hand_with_the_agents_model_summarizes_all_but_the_newest() -> None:
    """session.compact() without a policy asks the session's model for the summary (its
    usage is recorded), keeps only the newest message, and the next request is the
    summary plus what came after it."""
    requests: list[ModelRequest] = []
    prices = {"scripted/main": {"input": 1.0, "output": 2.0}}
    async with open_store({"main": _long_session_model(requests)}, prices=prices) as store:
        session = await store.create("s1")
        for turn in range(5):
            await session.send(f"message {turn}")
        before = session.usage
        event = await session.compact()
        assert event is not None
        summary_call = requests[-1]
        assert summary_call.tools == ()
        assert summary_call.messages[0].text.startswith("user: message 0\nassistant: ok ok")
        assert summary_call.messages[0].text.endswith("user: message 4")
        assert (event.first_seq, event.summary, event.model) == (1, "They talked about ten things.", "scripted/main")
        assert session.usage.input_tokens == before.input_tokens + 300
        assert session.usage.cost is not None
        assert before.cost is not None
        assert session.usage.cost == pytest.approx(before.cost + (300 * 1.0 + 8 * 2.0) / 1_000_000)
        await session.send("and now?")
        history = await session.history()
    assert len(history) == 12
    assert _shape(requests[-1]) == [
        ("user", "[Summary of the earlier conversation]\n\nThey talked about ten things.", ()),
        ("assistant", "ok " * 20, ()),
        ("user", "and now?", ()),
    ]


async def test_nothing_to_compact_and_bad_arguments() -> None:
    """A session without messages has nothing to cut; bad policies and arguments are
    refused with clear errors."""
    async with open_store() as store:
        session = await store.create("s1")
        assert await session.compact() is None  # nothing yet
        with pytest.raises(InvalidArgument, match="keep_tokens"):
            await session.compact(keep_tokens=-1)
    with pytest.raises(ConfigError, match="budget must be a positive number"):
        CompactionPolicy(budget=0)
    with pytest.raises(ConfigError, match="trigger must be a ratio"):
        CompactionPolicy(budget=100, trigger=1.5)
    with pytest.raises(ConfigError, match="compaction must be a CompactionPolicy"):
        define_agent(name="x", compaction={"budget": 100})  # type: ignore[arg-type]
    assert CompactionPolicy(budget={"a/b": 10, "*": 5}).budget_for("c/d") == 5
    assert CompactionPolicy(budget={"a/b": 10}).budget_for("c/d") is None


async def test_a_tool_round_is_never_cut_through() -> None:
    """Whatever is kept, the cut falls before a user or assistant message with every
    earlier call answered: never between parallel calls and their results."""

    def model(request: ModelRequest) -> Reply:
        last = request.messages[-1]
        if last.role == "user" and last.text.startswith("use the tool"):
            return Reply(tool_calls=[ToolCall("lookup", {"q": "x"}), ToolCall("lookup", {"q": "y"})])
        return Reply(text="done")

    jobs: list[CompactionInput] = []

    def summarize(job: CompactionInput) -> str:
        jobs.append(job)
        return "s"

    cuts = set()
    async with open_store({"main": model}, agent=define_agent(name="t", tools=[lookup])) as store:
        for keep in range(0, 200, 5):
            session = await store.create(f"s{keep}")
            for turn in range(3):
                await session.send(f"use the tool {turn}")
            event = await session.compact(keep_tokens=keep, summarizer=summarize)
            assert event is not None
            history = await session.history()
            summarized = list(jobs[-1].messages)
            kept = history[len(summarized) :]
            assert summarized + kept == history
            assert kept[0].role != "tool"
            calls = {c.call_id for m in summarized for c in m.tool_calls}
            answered = {p.call_id for m in summarized for p in m.parts if isinstance(p, ToolResultPart)}
            assert calls == answered
            cuts.add(len(summarized))
    assert len(cuts) > 2  # the budget moved the cut


async def test_the_latest_compaction_survives_a_restart_from_the_snapshot() -> None:
    """A store that hydrates from the record's snapshot sends the summary, not the
    compacted messages."""
    storage = MemoryStorage()
    requests: list[ModelRequest] = []
    async with open_store({"main": _long_session_model(requests)}, storage=storage) as store:
        session = await store.create("s1")
        for turn in range(4):
            await session.send(f"message {turn}")
        await session.compact(summarizer=lambda job: "short")
    record = await storage.load("s1")
    assert record is not None
    assert record.snapshot is not None
    assert record.snapshot["compacted"]["event"]["summary"] == "short"
    async with open_store({"main": _long_session_model(requests)}, storage=storage) as store:
        await store.send("s1", "after the restart")
    assert [m.text for m in requests[-1].messages] == [
        "[Summary of the earlier conversation]\n\nshort",
        "ok " * 20,
        "after the restart",
    ]


async def test_the_providers_reported_tokens_trigger_compaction() -> None:
    """Short messages the estimator thinks small, but the provider reports 900 input
    tokens against a 1,000 budget: the next request is compacted."""
    requests: list[ModelRequest] = []

    def model(request: ModelRequest) -> Reply:
        requests.append(request)
        return Reply(text="ok", usage=Usage(900, 5))

    policy = CompactionPolicy(budget=1_000, summarizer=lambda job: "short")
    async with open_store({"main": model}, agent=define_agent(name="t", compaction=policy)) as store:
        session = await store.create("s1")
        await session.send("one")
        await session.send("two")
    assert estimate_tokens(requests[1]) < 100
    assert [m.text for m in requests[1].messages] == ["[Summary of the earlier conversation]\n\nshort", "ok", "two"]


async def test_a_failing_summarizer_model_leaves_the_request_whole() -> None:
    """The summarizing call fails: the run goes on with the whole context (a warning is
    logged), and nothing is appended as a compaction."""
    def model(request: ModelRequest) -> Reply:
        if request.system.startswith("You compact"):
            raise ProviderUnavailable("down")
        return Reply(text="ok " * 50)

    policy = CompactionPolicy(budget=60)
    async with open_store({"main": model}, agent=define_agent(name="t", compaction=policy)) as store:
        session = await store.create("s1")
        await session.send("one")
        result = await session.send("two")
        events = await store.storage.read("s1")
    assert result.status == "completed"
    assert not any(e.type == "context.compacted" for e in events)
