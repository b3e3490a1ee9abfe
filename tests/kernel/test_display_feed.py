"""Display state on demand (K15): built only for someone who wants it, at most one
update per tick, and the last one always delivered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from harness_kernel import DisplayStateChanged, Finish, ModelRequest, TextDelta
from harness_kernel._fold import SessionFold
from tests.kernel.helpers import calls_then_answers, open_store

DELTAS = 40


async def burst(request: ModelRequest) -> AsyncIterator[Any]:
    """An answer whose 40 text deltas arrive together (one network read, say)."""
    for i in range(DELTAS):
        yield TextDelta(f"w{i} ")
    yield Finish("stop")


async def test_a_stream_gets_one_display_update_per_tick_and_the_final_state() -> None:
    """40 deltas in one tick make one display update, not 40; the stream's last display
    state is the session's final one (the run ended, nothing streaming)."""
    async with open_store({"burst": burst}, default_model="scripted/burst") as store:
        session = await store.create("s1")
        displays = []
        deltas = 0
        async with session.stream("go") as events:
            async for item in events:
                if isinstance(item, DisplayStateChanged):
                    displays.append(item.state)
                elif isinstance(item, TextDelta):
                    deltas += 1
        assert deltas == DELTAS
        assert 1 <= len(displays) <= 4, len(displays)
        assert displays[-1] == session.display_state
        assert displays[-1].open_run is None
        assert displays[-1].current_message == ""


async def test_a_subscriber_sees_the_final_display_state_of_each_turn() -> None:
    """Store subscribers get coalesced display updates too, ending with the idle state."""
    async with open_store({"tools": calls_then_answers()}, default_model="scripted/tools") as store:
        session = await store.create("s1")
        async with store.subscribe() as feed:
            for text in ("one", "two"):
                assert (await session.send(text)).status == "completed"
                await trio.testing.wait_all_tasks_blocked()
                displays = []
                while True:
                    try:
                        item = feed.receive_nowait()
                    except trio.WouldBlock:
                        break
                    if item.kind == "display_state_changed":
                        displays.append(item.display)
                # A turn is 4 commits and 2 model streams: fewer updates than changes.
                assert 1 <= len(displays) <= 6, len(displays)
                assert displays[-1] == session.display_state
                assert not displays[-1].is_running


@pytest.mark.parametrize("display", [False, True])
async def test_no_display_subscriber_means_the_display_state_is_never_built(
    display: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A turn watched only for its events (``subscribe(display=False)``) builds no display
    state at all; one subscriber that wants it gets it (so the count can fail)."""
    built = 0
    original = SessionFold.display

    def counting(self: SessionFold, *args: Any, **kwargs: Any) -> Any:
        nonlocal built
        built += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SessionFold, "display", counting)
    async with open_store({"tools": calls_then_answers()}, default_model="scripted/tools") as store:
        session = await store.create("s1")
        async with store.subscribe(display=display) as feed:
            assert (await session.send("go")).status == "completed"
            await trio.testing.wait_all_tasks_blocked()
            kinds = []
            while True:
                try:
                    kinds.append(feed.receive_nowait().kind)
                except trio.WouldBlock:
                    break
        assert "event" in kinds
        if display:
            assert built >= 1
            assert "display_state_changed" in kinds
        else:
            assert built == 0
            assert "display_state_changed" not in kinds
