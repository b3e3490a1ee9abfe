"""Structured output through the kernel with the scripted provider (no JSON-schema mode,
so the answer comes as a call of the final_answer tool): valid, repaired, refused past
the limit, per-send types, persisted across a restart, resumed after an approval."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest

from harness_kernel import ModelRequest, ToolResultPart, define_agent, tool
from harness_kernel.errors import ConfigError, InvalidArgument
from harness_kernel.testing import Reply, ToolCall
from harness_kernel_sqlite import SqliteStorage
from tests.kernel.helpers import open_store


@attrs.frozen
class City:
    name: str
    population: int
    tags: list[str] = attrs.field(factory=list)


@attrs.frozen
class Verdict:
    ok: bool


def answers(*arguments: Any) -> Any:
    """A scripted model calling final_answer with each of ``arguments`` in turn; it
    records the requests it got."""
    requests: list[ModelRequest] = []

    def handler(request: ModelRequest) -> Reply:
        requests.append(request)
        item = arguments[len(requests) - 1]
        if isinstance(item, Reply):
            return item
        return Reply(tool_calls=[ToolCall("final_answer", item, call_id=f"call_{len(requests)}")])

    handler.requests = requests  # type: ignore[attr-defined]
    return handler


async def test_a_valid_answer_is_the_runs_typed_output() -> None:
    """The model sees a final_answer tool whose schema is the type's; its call becomes
    RunResult.output as a City, and the call gets a result so the history stays valid."""
    model = answers({"name": "Rome", "population": 2800000})
    agent = define_agent(name="geo", output_type=City)
    async with open_store({"main": model}, agent=agent) as store:
        result = await store.send("s1", "Biggest city of Italy?")
        history = await (await store.get_or_create("s1")).history()
    assert result.status == "completed"
    assert result.output == City("Rome", 2800000)
    [request] = model.requests
    [spec] = request.tools
    assert spec.name == "final_answer"
    assert spec.parameters == {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "population": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "population"],
        "additionalProperties": False,
    }
    assert request.output is not None
    assert request.output.tool == "final_answer"
    assert [m.role for m in history] == ["user", "assistant", "tool"]
    assert history[-1].parts == (ToolResultPart("call_1", "accepted", False),)


async def test_an_invalid_answer_goes_back_and_the_repaired_one_is_kept() -> None:
    """A wrong type and an unknown key are reported to the model by path (the same
    strict path as tool arguments); its second answer is the output."""
    model = answers(
        {"name": "Rome", "population": "lots", "size": 3},
        {"name": "Rome", "population": 2800000, "tags": ["capital"]},
    )
    async with open_store({"main": model}, agent=define_agent(name="geo", output_type=City)) as store:
        result = await store.send("s1", "Biggest city of Italy?")
    assert (result.status, result.output) == ("completed", City("Rome", 2800000, ["capital"]))
    feedback = model.requests[1].messages[-1].parts[0]
    assert isinstance(feedback, ToolResultPart)
    assert feedback.is_error
    assert feedback.content == (
        "the answer does not match City: population: expected int, got str; unknown key(s): size; call it again"
    )


async def test_text_instead_of_the_tool_is_sent_back_as_a_user_message() -> None:
    """Plain text is no answer: the model is told to call final_answer."""
    model = answers(Reply(text="It is Rome."), {"name": "Rome", "population": 1})
    async with open_store({"main": model}, agent=define_agent(name="geo", output_type=City)) as store:
        result = await store.send("s1", "Biggest city?")
    assert result.output == City("Rome", 1)
    last = model.requests[1].messages[-1]
    assert last.role == "user"
    assert last.text == "The answer does not match City: no answer was given. Call 'final_answer' with the answer."


async def test_past_the_allowed_repairs_the_run_fails_clearly() -> None:
    """output_retries=1: the second invalid answer fails the run with OutputInvalid's
    message; the history still has a result for every call."""
    model = answers({"name": 1, "population": 1}, {"name": "Rome"})
    agent = define_agent(name="geo", output_type=City, output_retries=1)
    async with open_store({"main": model}, agent=agent) as store:
        result = await store.send("s1", "Biggest city?")
        history = await (await store.get_or_create("s1")).history()
    assert result.status == "failed"
    assert result.output is None
    assert result.error is not None
    assert result.error.code == "run.output_invalid"
    assert result.error.message == "the answer does not match City: population: required field missing (after 1 repair)"
    assert len(model.requests) == 2
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant", "tool"]


async def test_send_output_type_overrides_the_agent_and_other_tools_still_run() -> None:
    """send(output_type=...) asks one run for another type; the model may use tools
    before it answers; the next send without one is plain text again."""

    @tool
    async def check(q: str) -> str:
        """Check something."""
        return f"checked {q}"

    seen: list[ModelRequest] = []

    def model(request: ModelRequest) -> Reply:
        seen.append(request)
        if request.output is None:
            return Reply(text="plain")
        if not isinstance(request.messages[-1].parts[0], ToolResultPart):
            return Reply(tool_calls=[ToolCall("check", {"q": "x"})])
        return Reply(tool_calls=[ToolCall("final_answer", {"ok": True})])

    async with open_store({"main": model}, agent=define_agent(name="geo", tools=[check])) as store:
        typed = await store.send("s1", "Is it ok?", output_type=Verdict)
        plain = await store.send("s1", "And now?")
    assert typed.output == Verdict(True)
    assert [c.name for c in typed.tool_calls] == ["check", "final_answer"]
    assert [t.name for t in seen[0].tools] == ["check", "final_answer"]
    assert (plain.output, plain.text, seen[-1].tools[-1].name) == (None, "plain", "check")


async def test_the_output_is_persisted_and_a_restarted_store_returns_it(tmp_path: Path) -> None:
    """The answer is stored with run.finished (through the codec, in SQLite): a new
    store lists it with the run, as JSON data."""
    model = answers({"name": "Rome", "population": 5})
    agent = define_agent(name="geo", output_type=City)
    path = str(tmp_path / "out.db")
    async with open_store({"main": model}, agent=agent, storage=SqliteStorage(path)) as store:
        result = await store.send("s1", "Biggest city?")
    async with open_store({"main": model}, agent=agent, storage=SqliteStorage(path)) as store:
        runs = await (await store.get_or_create("s1")).runs()
    assert runs[-1].run_id == result.run_id
    assert runs[-1].output == {"name": "Rome", "population": 5, "tags": []}


@tool(approval="ask")
async def publish(q: str) -> str:
    """Publish."""
    return "published"


async def test_a_run_parked_on_an_approval_resumes_with_its_send_output_type(tmp_path: Path) -> None:
    """A run that asked for Verdict with send() parks on an approval; a new store
    approves it and the resumed run still asks for (and returns) a Verdict."""

    def model(request: ModelRequest) -> Reply:
        if len(request.messages) == 1:
            return Reply(tool_calls=[ToolCall("publish", {"q": "x"})])
        assert request.output is not None
        assert request.output.name == "Verdict"
        return Reply(tool_calls=[ToolCall("final_answer", {"ok": True})])

    agent = define_agent(name="geo", tools=[publish])
    path = str(tmp_path / "park.db")
    async with open_store({"main": model}, agent=agent, storage=SqliteStorage(path)) as store:
        parked = await store.send("s1", "Publish it", output_type=Verdict)
    assert parked.status == "waiting_approval"
    async with open_store({"main": model}, agent=agent, storage=SqliteStorage(path)) as store:
        session = await store.get_or_create("s1")
        result = await session.approve(session.pending_approvals[0].approval_id)
    assert result is not None
    assert (result.status, result.output) == ("completed", Verdict(True))


async def test_output_types_must_be_attrs_classes() -> None:
    """A bad output_type is refused before anything runs, where it was given."""
    with pytest.raises(ConfigError, match="output_type must be an attrs class"):
        define_agent(name="geo", output_type=dict)
    with pytest.raises(ConfigError, match="output_retries"):
        define_agent(name="geo", output_type=City, output_retries=-1)
    async with open_store() as store:
        with pytest.raises(InvalidArgument, match="output_type must be an attrs class"):
            await store.send("s1", "hi", output_type=str)
