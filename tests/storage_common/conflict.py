"""The kernel's reaction to a Conflict, end to end, on a real backend shared by two stores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness_kernel import create_session_store, define_agent


async def two_stores_one_session(storage: str, options: Mapping[str, Any]) -> None:
    """Store B loaded the session, then store A appended to it: B's next run catches up
    with A's events when it takes the session's lease (nothing forked, no conflict) and
    runs on the combined history. A third store sees exactly the same log."""
    agent = define_agent(name="notes", instructions="Be brief.")
    async with (
        create_session_store(agent=agent, storage=storage, storage_options=options) as a,
        create_session_store(agent=agent, storage=storage, storage_options=options) as b,
    ):
        assert (await a.send("shared", "one")).status == "completed"
        stale = await b.get_or_create("shared")
        assert (await a.send("shared", "two")).status == "completed"
        assert (await stale.send("three")).status == "completed"
        seen_by_b = [(m.role, m.text) for m in await stale.history()]
    assert [text for role, text in seen_by_b if role == "user"] == ["one", "two", "three"]
    async with create_session_store(agent=agent, storage=storage, storage_options=options) as c:
        fresh = await c.get_or_create("shared")
        assert [(m.role, m.text) for m in await fresh.history()] == seen_by_b
