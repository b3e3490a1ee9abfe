"""Session settings and history: persisted, validated, and back after hydrate."""

from __future__ import annotations

import attrs
import pytest

from harness_kernel import MemoryStorage, Mode, define_agent
from harness_kernel.errors import StateValidationError, UnknownMode, UnknownModel
from harness_kernel.testing import Reply

from .helpers import lookup, open_store


@attrs.define
class NotesState:
    count: int = 0
    tags: list[str] = attrs.Factory(list)
    owner: str | None = None


AGENT = define_agent(
    name="notes",
    tools=[lookup],
    modes=[Mode("build"), Mode("plan", tools=[], model="scripted/planner")],
    state=NotesState,
)
# The plan mode's model must be served for a store of AGENT to start.
PLANNER = {"planner": lambda r: Reply(text="plan")}


async def test_mode_model_state_and_usage_come_back_on_hydrate() -> None:
    """Everything a session remembers survives closing the store and reopening it."""
    storage = MemoryStorage()
    handlers = {"planner": lambda r: Reply(text="plan"), "other": lambda r: Reply(text="other")}
    async with open_store(handlers, agent=AGENT, storage=storage) as store:
        session = await store.create("s1")
        assert (session.mode, session.model, session.state) == ("build", "scripted/echo", NotesState())
        await session.send("hello")
        await session.switch_mode("plan")
        assert session.model == "scripted/planner"  # the mode's model
        await session.set_model("scripted/other")
        state = await session.update_state(count=3, tags=["a", "b"])
        assert state == NotesState(3, ["a", "b"])
        result = await session.send("go")
        assert result.text == "other"
        usage = session.usage
        assert usage.total_tokens > 0
    async with open_store(handlers, agent=AGENT, storage=storage) as store:
        session = await store.get_or_create("s1")
        assert session.mode == "plan"
        assert session.model == "scripted/other"
        assert session.model_override == "scripted/other"
        assert session.state == NotesState(3, ["a", "b"])
        assert session.usage == usage
        record = await store.storage.load("s1")
        assert (record.mode, record.model, record.state["count"], record.usage) == ("plan", "scripted/other", 3, usage)
        await session.set_model(None)
        assert session.model == "scripted/planner"


async def test_update_state_validates_against_the_state_class() -> None:
    """Unknown fields and wrong types are refused, naming each; nothing changes."""
    async with open_store(PLANNER, agent=AGENT) as store:
        session = await store.create("s1")
        with pytest.raises(StateValidationError) as info:
            await session.update_state(count="three", colour="red")
        assert "state.count: expected int, got str" in str(info.value)
        assert "state: unknown key(s): colour" in str(info.value)
        assert session.state == NotesState()
        assert [e.type for e in await store.storage.read("s1")] == []


async def test_state_without_a_state_class_is_a_json_dict() -> None:
    """Agents without a state class keep a free-form, JSON-only dict."""
    async with open_store() as store:
        session = await store.create("s1")
        assert await session.update_state(n=1, tags=["x"]) == {"n": 1, "tags": ["x"]}
        with pytest.raises(StateValidationError, match="JSON-serializable"):
            await session.update_state(bad=object())


async def test_unknown_modes_and_models_are_refused() -> None:
    """switch_mode and set_model reject names the agent and store do not know."""
    async with open_store(PLANNER, agent=AGENT) as store:
        session = await store.create("s1")
        with pytest.raises(UnknownMode, match="no mode 'fly' \\(modes: build, plan\\)"):
            await session.switch_mode("fly")
        with pytest.raises(UnknownModel, match="no configured provider serves 'gpt/4'"):
            await session.set_model("gpt/4")
        with pytest.raises(UnknownModel, match="provider 'scripted' does not serve model 'nope'"):
            await session.set_model("scripted/nope")
        with pytest.raises(UnknownModel, match="does not serve model 'nope'"):
            await session.send("hi", model="scripted/nope")
        with pytest.raises(UnknownModel, match="must look like '<provider>/<model>'"):
            await session.send("hi", model="no-slash")
        assert await session.runs() == []


async def test_a_mode_narrows_the_tools_the_model_sees() -> None:
    """The plan mode offers no tools; the build mode offers the agent's tools."""
    offered: list[list[str]] = []

    def spy(request):
        offered.append([t.name for t in request.tools])
        return Reply(text="ok")

    async with open_store({"main": spy, "planner": spy}, agent=AGENT) as store:
        session = await store.create("s1")
        await session.send("a", model="scripted/main")
        await session.switch_mode("plan")
        await session.send("b")
    assert offered == [["lookup"], []]


async def test_history_takes_limit_and_before() -> None:
    """history returns the last messages, optionally older than a given message."""
    async with open_store() as store:
        session = await store.create("s1")
        for word in ("one", "two", "three"):
            await session.send(word)
        everything = await session.history()
        assert [m.text for m in everything] == ["one", "one", "two", "two", "three", "three"]
        assert [m.text for m in await session.history(limit=2)] == ["three", "three"]
        before = everything[4].id
        assert [m.text for m in await session.history(limit=3, before=before)] == ["one", "two", "two"]
        with pytest.raises(KeyError):
            await session.history(before="msg_missing")


async def test_runs_and_run_events_are_rebuilt_from_the_log() -> None:
    """runs() and run_events() work the same after a hydrate as before it."""
    storage = MemoryStorage()
    async with open_store(storage=storage) as store:
        session = await store.create("s1")
        first = await session.send("one")
        await session.send("two")
        live = await session.runs()
        live_events = await session.run_events(first.run_id)
    async with open_store(storage=storage) as store:
        session = await store.get_or_create("s1")
        assert await session.runs() == live
        assert [r.status for r in live] == ["completed", "completed"]
        events = await session.run_events(first.run_id)
        assert events == live_events
        assert [e.type for e in events] == ["run.started", "message.added", "usage.recorded", "message.added", "run.finished"]
        assert {e.run_id for e in events} == {first.run_id}
        assert session.current_run is None
        with pytest.raises(KeyError):
            await session.run_events("run_missing")
