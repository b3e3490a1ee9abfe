"""The run loop: tools, validation, policies, context, limits, abort and shutdown."""

from __future__ import annotations

import json
from typing import Literal

import attrs
import pytest
import trio
import trio.lowlevel

from harness_kernel import (
    ContextProvider,
    MemoryStorage,
    Message,
    Mode,
    ToolContext,
    ToolResultPart,
    context_provider,
    define_agent,
    tool,
)
from harness_kernel.errors import ConfigError, ToolError
from harness_kernel.testing import Reply, ToolCall

from .helpers import calls_then_answers, lookup, open_store, slow_stream


def tool_results(result) -> list[ToolResultPart]:
    return [p for m in result.messages for p in m.parts if isinstance(p, ToolResultPart)]


@attrs.frozen
class Filter:
    tag: str
    limit: int = 5


@tool(category="read")
async def search(
    ctx: ToolContext,
    query: str,
    kind: Literal["docs", "code"] = "docs",
    page: int | None = None,
    weight: float = 1.0,
    exact: bool = False,
    tags: list[str] | None = None,
    extra: dict[str, int] | None = None,
    filter: Filter | None = None,
) -> dict:
    """Search the corpus.

    Args:
        query: what to look for
        kind: where to look
    """
    return {"query": query, "kind": kind, "page": page, "weight": weight, "exact": exact,
            "tags": tags, "extra": extra, "filter": filter, "session": ctx.session_id}


def test_tool_schema_is_built_from_the_signature() -> None:
    """The JSON schema covers every supported type, defaults and docstring texts."""
    schema = search.parameters
    assert search.description == "Search the corpus."
    assert schema["required"] == ["query"]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["query"] == {"type": "string", "description": "what to look for"}
    assert props["kind"] == {"enum": ["docs", "code"], "type": "string", "description": "where to look", "default": "docs"}
    assert props["page"] == {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}
    assert props["weight"]["type"] == "number"
    assert props["exact"]["type"] == "boolean"
    assert props["tags"]["anyOf"][0] == {"type": "array", "items": {"type": "string"}}
    assert props["extra"]["anyOf"][0] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert props["filter"]["anyOf"][0] == {
        "type": "object", "properties": {"tag": {"type": "string"}, "limit": {"type": "integer"}},
        "required": ["tag"], "additionalProperties": False,
    }


def test_unsupported_signatures_are_refused_when_the_tool_is_defined() -> None:
    """A parameter the schema cannot express is an error at decoration time."""
    def untyped(x):
        return x

    with pytest.raises(ConfigError, match="parameter 'x' needs a type annotation"):
        tool(untyped)
    with pytest.raises(ConfigError, match="not supported"):

        @tool
        def bad(x: set[bytes]) -> str:
            return ""

    with pytest.raises(ConfigError, match="tool name"):
        tool(name="bad name")(lambda: "")


async def test_valid_arguments_are_structured_and_passed() -> None:
    """Model arguments arrive typed: attrs classes built, ints stay ints."""
    args = {"query": "q", "kind": "code", "page": 2, "weight": 2, "tags": ["a"], "extra": {"n": 1}, "filter": {"tag": "t"}}
    agent = define_agent(name="searcher", tools=[search])
    async with open_store({"main": calls_then_answers("search", args)}, agent=agent) as store:
        result = await store.send("s1", "go")
    payload = json.loads(tool_results(result)[0].content)
    assert payload == {"query": "q", "kind": "code", "page": 2, "weight": 2.0, "exact": False, "tags": ["a"],
                       "extra": {"n": 1}, "filter": {"tag": "t", "limit": 5}, "session": "s1"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "query: required field missing"),
        ({"query": 3}, "query: expected str, got int"),
        ({"query": "q", "kind": "web"}, "kind: expected one of 'docs', 'code'"),
        ({"query": "q", "page": "2"}, "page"),
        ({"query": "q", "exact": 1}, "exact: expected bool, got int"),
        ({"query": "q", "filter": {"tag": 1}}, "filter"),
        ({"query": "q", "surprise": True}, "unknown key(s): surprise"),
        ({"query": "q", "tags": "abc"}, "tags: expected a list, got str"),
        ({"query": "q", "tags": ["a", 2]}, "tags[1]: expected str, got int"),
        ("not json at all", "not a JSON object"),
    ],
)
async def test_invalid_arguments_become_an_error_result_and_the_run_completes(arguments, message: str) -> None:
    """The model sees what was wrong with its arguments; the tool never runs."""
    agent = define_agent(name="searcher", tools=[search])
    async with open_store({"main": calls_then_answers("search", arguments)}, agent=agent) as store:
        result = await store.send("s1", "go")
        events = await store.storage.read("s1")
    assert result.status == "completed"
    [error] = tool_results(result)
    assert error.is_error
    assert message in error.content
    finished = [e.payload for e in events if e.type == "tool.finished"]
    assert [f.outcome for f in finished] == ["invalid_arguments"]
    assert "tool.started" not in [e.type for e in events]


async def test_tool_exceptions_become_error_results() -> None:
    """ToolError messages reach the model verbatim; other exceptions are sanitized."""

    @tool
    def explode(mode: str) -> str:
        if mode == "tool":
            raise ToolError("the file is locked")
        raise RuntimeError("db password is hunter2")

    agent = define_agent(name="exploder", tools=[explode])
    async with open_store({"main": calls_then_answers("explode", {"mode": "tool"})}, agent=agent) as store:
        result = await store.send("s1", "go")
        assert result.status == "completed"
        assert tool_results(result)[0].content == "the file is locked"
    async with open_store({"main": calls_then_answers("explode", {"mode": "other"})}, agent=agent) as store:
        result = await store.send("s1", "go")
        assert tool_results(result)[0].content == "tool 'explode' failed: internal error"
    async with open_store(
        {"main": calls_then_answers("explode", {"mode": "other"})}, agent=agent,
        error_policy={"expose_internal_errors": True},
    ) as store:
        result = await store.send("s1", "go")
        assert tool_results(result)[0].content == "tool 'explode' failed: RuntimeError: db password is hunter2"


async def test_the_noop_sandbox_error_reaches_the_model_as_a_tool_error() -> None:
    """Without a sandbox, a file tool fails with a clear message the model can read."""

    @tool
    async def write_note(ctx: ToolContext, path: str, text: str) -> str:
        await ctx.sandbox.write_file(path, text)
        return "written"

    agent = define_agent(name="writer", tools=[write_note])
    async with open_store({"main": calls_then_answers("write_note", {"path": "a.txt", "text": "x"})}, agent=agent) as store:
        result = await store.send("s1", "go")
    assert result.status == "completed"
    assert "no sandbox is configured" in tool_results(result)[0].content


async def test_unknown_tools_are_reported_to_the_model() -> None:
    """A call to a tool the mode does not offer gets an error result naming what exists."""
    async with open_store({"main": calls_then_answers("teleport", {})}) as store:
        result = await store.send("s1", "go")
    assert tool_results(result)[0].content == "unknown tool 'teleport' (available: lookup)"


async def test_deny_policies_refuse_without_running() -> None:
    """approval='deny' on a tool, a mode override and deny rules all refuse the call."""
    ran: list[str] = []

    @tool(approval="deny")
    def forbidden() -> str:
        ran.append("forbidden")
        return "ran"

    @tool(category="edit")
    def edit() -> str:
        ran.append("edit")
        return "ran"

    @tool
    def fine() -> str:
        ran.append("fine")
        return "ran"

    agent = define_agent(name="guarded", tools=[forbidden, edit, fine], modes=[Mode("normal"), Mode("readonly", approval="deny")], deny=["category:edit"])
    handler = {"main": lambda r: Reply(tool_calls=[ToolCall("forbidden"), ToolCall("edit"), ToolCall("fine")]) if r.messages[-1].role == "user" else Reply(text="done")}
    async with open_store(handler, agent=agent) as store:
        session = await store.create("s1")
        result = await session.send("go")
        assert [p.content for p in tool_results(result)] == [
            "tool 'forbidden' is not allowed here (denied by policy)",
            "tool 'edit' is not allowed here (denied by policy)",
            "ran",
        ]
        await session.switch_mode("readonly")
        result = await session.send("again")
        assert all("denied by policy" in p.content for p in tool_results(result))
    assert ran == ["fine"]


async def test_max_steps_ends_a_run_that_never_answers() -> None:
    """A model that keeps calling tools is stopped after max_steps model calls."""
    agent = define_agent(name="looper", tools=[lookup], max_steps=3)
    calls = []

    def forever(request):
        calls.append(1)
        return Reply(tool_calls=[ToolCall("lookup", {"q": "again"})])

    async with open_store({"main": forever}, agent=agent) as store:
        result = await store.send("s1", "go")
        followup = await store.send("s1", "still there?", model="scripted/echo")
    assert (result.status, result.error.code) == ("failed", "run.max_steps")
    assert len(calls) == 3
    assert len(tool_results(result)) == 3  # every call answered: history stays valid
    assert followup.status == "completed"


async def test_context_providers_and_the_context_failure_policy() -> None:
    """Rendered context reaches the model; a failing optional provider is skipped only
    under skip_optional; a failing required provider always fails the run."""
    seen: list[str] = []

    @context_provider(required=False)
    def weather(ctx) -> str:
        raise RuntimeError("weather service down")

    @context_provider
    async def user_profile(ctx) -> str:
        return f"User of session {ctx.session_id} likes tea."

    def spy(request):
        seen.append(request.system)
        return Reply(text="ok")

    agent = define_agent(name="ctx", instructions=lambda ctx: f"Mode {ctx.mode}.", context_providers=[user_profile, weather])
    async with open_store({"main": spy}, agent=agent) as store:
        failed = await store.send("s1", "hi")
    assert (failed.status, failed.error.code, failed.error.message) == ("failed", "context.failed", "context provider 'weather' failed")
    async with open_store({"main": spy}, agent=agent, error_policy={"context_failure": "skip_optional"}) as store:
        ok = await store.send("s1", "hi")
    assert ok.status == "completed"
    assert seen == ["Mode default.\n\nUser of session s1 likes tea."]
    required = define_agent(name="ctx2", context_providers=[ContextProvider("broken", weather.render, required=True)])
    async with open_store({"main": spy}, agent=required, error_policy={"context_failure": "skip_optional"}) as store:
        assert (await store.send("s1", "hi")).status == "failed"


async def test_each_durable_event_is_appended_when_it_happens() -> None:
    """While a tool runs, storage already holds its tool.started (not written at run end)."""
    storage = MemoryStorage()
    seen_during_tool: list[list[str]] = []

    @tool
    async def peek(ctx: ToolContext) -> str:
        seen_during_tool.append([e.type for e in await storage.read(ctx.session_id)])
        return "peeked"

    agent = define_agent(name="peeker", tools=[peek])
    async with open_store({"main": calls_then_answers("peek", {})}, agent=agent, storage=storage) as store:
        await store.send("s1", "go")
    assert seen_during_tool == [["run.started", "message.added", "usage.recorded", "message.added", "tool.started"]]


async def test_sends_to_one_session_run_one_at_a_time_in_order() -> None:
    """Concurrent sends wait their turn; each run sees the previous one's messages."""
    async with open_store() as store:
        session = await store.create("s1")
        results = {}

        async def send(i: int) -> None:
            results[i] = await session.send(f"m{i}")

        async with trio.open_nursery() as nursery:
            for i in range(4):
                nursery.start_soon(send, i)
                await trio.lowlevel.checkpoint()
        texts = [m.text for m in await session.history() if m.role == "user"]
    assert texts == ["m0", "m1", "m2", "m3"]
    assert all(r.status == "completed" for r in results.values())


async def test_aborting_a_streaming_run_records_the_partial_text() -> None:
    """abort() during streaming ends the run aborted; the partial answer is kept."""
    async with open_store({"main": slow_stream("Once upon a ")}) as store:
        session = await store.create("s1")
        seen = []
        async with session.stream("tell me a story") as events:
            async for event in events:
                if event.type != "display_state_changed":
                    seen.append(event.type)
                if event.type == "text.delta":
                    assert session.is_running
                    await session.abort()
        result = events.result
        assert result.status == "aborted"
        assert result.text == "Once upon a "
        history = await session.history()
        assert [(m.role, m.text) for m in history] == [("user", "tell me a story"), ("assistant", "Once upon a ")]
        assert not session.is_running
        runs = await session.runs()
        assert [(r.status, r.error.code) for r in runs] == [("aborted", "run.aborted")]
        assert seen[-1] == "run.finished"
        again = await session.send("go on", model="scripted/echo")
        assert again.status == "completed"


async def test_leaving_a_stream_early_aborts_the_run() -> None:
    """Breaking out of a stream block aborts the run; the session is idle after it."""
    async with open_store({"main": slow_stream("Hello ")}) as store:
        session = await store.create("s1")
        async with session.stream("hi") as events:
            async for event in events:
                if event.type == "text.delta":
                    break
        assert not session.is_running
        assert [r.status for r in await session.runs()] == ["aborted"]


async def test_cancelling_a_sender_aborts_its_run() -> None:
    """If the task awaiting send() is cancelled, the run is aborted, not orphaned."""
    async with open_store({"main": slow_stream()}) as store:
        session = await store.create("s1")
        async with store.subscribe() as events:
            with trio.move_on_after(0.05):
                await session.send("hi")
            with trio.fail_after(5):  # a guard against hanging, not a timing assertion
                async for item in events:
                    if item.event is not None and item.event.type == "run.finished":
                        break
        assert [r.status for r in await session.runs()] == ["aborted"]


async def test_aborting_a_tool_mid_run_answers_its_call() -> None:
    """A tool cancelled by abort gets an error result, so the history stays valid."""
    started = trio.Event()

    @tool
    async def slow() -> str:
        started.set()
        await trio.sleep(3600)
        return "never"

    agent = define_agent(name="slowpoke", tools=[slow])
    async with open_store({"main": calls_then_answers("slow", {})}, agent=agent) as store:
        session = await store.create("s1")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.send, "go")
            await started.wait()
            await session.abort()
        events = await store.storage.read("s1")
    finished = [e.payload for e in events if e.type == "tool.finished"]
    assert [(f.outcome, f.result.content) for f in finished] == [("error", "cancelled: the run was aborted while this tool was running (its effects may be partial)")]
    assert events[-1].payload.status == "aborted"


async def test_aclose_with_runs_in_flight_returns_and_leaves_sessions_loadable() -> None:
    """Closing the store aborts every run, records it, and the sessions hydrate cleanly."""
    storage = MemoryStorage()
    async with trio.open_nursery() as senders, open_store({"main": slow_stream("half an ans")}, storage=storage) as store:
        for i in range(5):
            session = await store.create(f"s{i}")
            senders.start_soon(session.send, "hi")
        await trio.sleep(0.05)
        assert all(store.get(f"s{i}").is_running for i in range(5))
    async with open_store(storage=storage) as store:
        for i in range(5):
            session = await store.get_or_create(f"s{i}")
            assert [r.status for r in await session.runs()] == ["aborted"]
            assert [m.text for m in await session.history()] == ["hi", "half an ans"]
            assert (await session.send("next")).status == "completed"


async def test_a_stale_second_store_catches_up_before_it_runs() -> None:
    """Two stores writing one session in turn: the stale one catches up with the other's
    events when it takes the session's lease, so its run sees the whole history and
    nothing is forked."""
    storage = MemoryStorage()
    async with open_store(storage=storage) as a, open_store(storage=storage) as b:
        await a.send("shared", "from a")
        session_b = await b.get_or_create("shared")
        await a.send("shared", "a again")  # b is now stale
        result = await session_b.send("from b")
        assert result.status == "completed"
        assert [m.text for m in await session_b.history()] == [
            "from a", "from a", "a again", "a again", "from b", "from b",
        ]
    log = await storage.read("shared")
    assert [e.seq for e in log] == list(range(1, len(log) + 1))


async def test_a_dangling_run_from_a_crash_is_closed_with_in_doubt_results() -> None:
    """A run.started/tool.started without their ends (process died) is reported in doubt
    and never re-run; the next message works."""
    from harness_kernel._records import (
        Event,
        MessageAdded,
        RunStarted,
        TextPart,
        ToolCallPart,
        ToolStarted,
    )

    storage = MemoryStorage()
    ran: list[str] = []

    @tool
    def charge(amount: int) -> str:
        ran.append("charged")
        return "charged"

    agent = define_agent(name="payments", tools=[charge])
    async with open_store(agent=agent, storage=storage) as store:
        await store.create("s1")
    call = ToolCallPart("call_1", "charge", {"amount": 5})
    crashed = [
        RunStarted("scripted/echo", "default"),
        MessageAdded(Message.user("charge me")),
        MessageAdded(Message("assistant", (TextPart("charging"), call))),
        ToolStarted("call_1", "charge", {"amount": 5}),
    ]
    await storage.append("s1", [Event(i, p, run_id="run_crashed") for i, p in enumerate(crashed, 1)], expected_seq=0)
    async with open_store(agent=agent, storage=storage) as store:
        session = await store.get_or_create("s1")
        assert session.current_run.run_id == "run_crashed"
        result = await session.send("hello again")
        runs = await session.runs()
    assert ran == []
    assert [(r.run_id, r.status) for r in runs] == [("run_crashed", "failed"), (result.run_id, "completed")]
    assert runs[0].error.code == "run.interrupted"
    results = [p for m in await _history(storage) for p in m.parts if isinstance(p, ToolResultPart)]
    assert [r.content.startswith("in doubt") for r in results] == [True]


async def _history(storage: MemoryStorage) -> list[Message]:
    from harness_kernel._records import MessageAdded, ToolFinished

    out = []
    for event in await storage.read("s1"):
        if isinstance(event.payload, MessageAdded):
            out.append(event.payload.message)
        elif isinstance(event.payload, ToolFinished):
            out.append(Message("tool", (event.payload.result,)))
    return out
