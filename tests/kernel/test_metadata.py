"""Session metadata for people: title, preview, tags and pinned, persisted in the record,
listed, filtered and sorted, kept when another writer saves the record too."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from harness_kernel import MemoryStorage, SessionRecord
from harness_kernel.codec import decode_record, encode_record
from harness_kernel.contracts import Page, SessionFilter
from harness_kernel.errors import InvalidArgument
from harness_kernel_sqlite import SqliteStorage

from .helpers import open_store


async def test_a_run_gives_the_session_a_title_and_a_preview(tmp_path: Path) -> None:
    """The first user message becomes the title, the last answer the preview, both
    saved in storage (a second store reads them from the file)."""
    path = tmp_path / "s.db"
    async with open_store(storage=SqliteStorage(path)) as store:
        session = await store.create("s1")
        await session.send("  Plan a   trip\nto Lyon for the weekend  ")
        assert session.title == "Plan a trip to Lyon for the weekend"
        assert session.preview == "Plan a trip to Lyon for the weekend"
        await session.send("and a longer one " + "word " * 100)
        assert session.title == "Plan a trip to Lyon for the weekend"  # the first message only
        assert session.preview.startswith("and a longer one word")
        assert len(session.preview) == 200
        assert session.preview.endswith("…")
    async with open_store(storage=SqliteStorage(path)) as store:
        (record,) = (await store.list()).items
        assert record.title == "Plan a trip to Lyon for the weekend"
        assert record.preview.startswith("and a longer one word")


async def test_set_metadata_renames_tags_and_pins_durably(tmp_path: Path) -> None:
    """What a host sets is saved at once and read back by another store; a host's title
    wins over the derived one, and clearing it derives it again."""
    path = tmp_path / "s.db"
    async with open_store(storage=SqliteStorage(path)) as store:
        session = await store.create("s1")
        await session.set_metadata(title="  Weekend in Lyon ", tags=["travel", "b", "travel"], pinned=True)
        assert (session.title, session.tags, session.pinned) == ("Weekend in Lyon", ("b", "travel"), True)
        await session.send("plan it")
        assert session.title == "Weekend in Lyon"
    async with open_store(storage=SqliteStorage(path)) as store:
        session = await store.get_or_create("s1")
        assert (session.title, session.tags, session.pinned) == ("Weekend in Lyon", ("b", "travel"), True)
        await session.set_metadata(tags=[])  # the other fields stay
        assert (session.title, session.tags, session.pinned) == ("Weekend in Lyon", (), True)
        await session.send("again")
        await session.set_metadata(title="")
        assert session.title == ""
        await session.send("third")
        assert session.title == "again"  # derived from the first user message this store saw


@pytest.mark.parametrize(
    "changes",
    [
        {"title": "x" * 201},
        {"title": "bell\x07"},
        {"title": 3},
        {"tags": "travel"},
        {"tags": [""]},
        {"tags": ["two words"]},
        {"tags": ["x" * 65]},
        {"tags": [f"t{i}" for i in range(33)]},
        {"tags": [1]},
        {"pinned": "yes"},
    ],
    ids=lambda c: repr(c)[:30],
)
async def test_bad_metadata_is_refused_and_nothing_is_saved(changes: dict[str, Any]) -> None:
    """A bad value raises InvalidArgument naming the field; the stored record is unchanged."""
    storage = MemoryStorage()
    async with open_store(storage=storage) as store:
        session = await store.create("s1")
        await session.set_metadata(title="kept", tags=["kept"])
        before = await storage.load("s1")
        with pytest.raises(InvalidArgument, match=next(iter(changes)).rstrip("s")):
            await session.set_metadata(**changes)
        assert await storage.load("s1") == before


async def test_metadata_set_elsewhere_survives_this_stores_run(tmp_path: Path) -> None:
    """Store B tags a session that store A has loaded; A's next run saves its record on
    top of B's (compare-and-swap), so the tags stay."""
    path = tmp_path / "s.db"
    async with open_store(storage=SqliteStorage(path)) as a, open_store(storage=SqliteStorage(path)) as b:
        session_a = await a.create("s1")
        await session_a.send("first")
        session_b = await b.get_or_create("s1")
        await session_b.set_metadata(tags=["from-b"], pinned=True)
        await session_a.send("second")
        assert session_a.tags == ("from-b",)
        assert session_a.pinned
        stored = await SqliteStorage(path).load("s1")
        assert stored is not None
        assert (stored.tags, stored.pinned, stored.title) == (("from-b",), True, "first")
        assert stored.preview == "second"


async def test_listing_filters_and_sorts_on_metadata() -> None:
    """store.list filters on tags (all of them) and pinned, and sorts by last update,
    each page continuing with the same order."""
    async with open_store() as store:
        for name in ("a", "b", "c", "d"):
            await store.create(name, tenant_id="t1")
        await store.create("other", tenant_id="t2")
        await (store.get("a")).set_metadata(tags=["x", "y"], pinned=True)  # type: ignore[union-attr]
        await (store.get("b")).set_metadata(tags=["x"])  # type: ignore[union-attr]
        await (store.get("other")).set_metadata(tags=["x"])  # type: ignore[union-attr]

        def ids(page: Page) -> list[str]:
            return [r.id for r in page.items]

        assert ids(await store.list(tenant_id="t1", tags=["x"])) == ["b", "a"]
        assert ids(await store.list(tenant_id="t1", tags=["x", "y"])) == ["a"]
        assert ids(await store.list(tenant_id="t1", pinned=True)) == ["a"]
        assert ids(await store.list(tenant_id="t1", pinned=False)) == ["d", "c", "b"]
        await store.send("c", "touch c last")
        seen: list[str] = []
        page = await store.list(1, tenant_id="t1", order="updated")
        while True:
            seen += ids(page)
            if page.next_cursor is None:
                break
            page = await store.list(1, page.next_cursor, tenant_id="t1", order="updated")
        assert seen == ["c", "b", "a", "d"]
        with pytest.raises(InvalidArgument, match="order"):
            await store.list(order="title")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="tag"):
            await store.list(tags=["two words"])


async def test_a_storage_without_orders_refuses_the_updated_order() -> None:
    """A backend written before ``order`` existed keeps working in creation order, and
    the store says plainly that it cannot sort by update."""

    class OldStorage(MemoryStorage):
        async def list(  # type: ignore[override]
            self, filter: SessionFilter, limit: int = 50, cursor: str | None = None
        ) -> Page:
            return await super().list(filter, limit, cursor)

    async with open_store(storage=OldStorage()) as store:
        await store.create("a")
        assert [r.id for r in (await store.list()).items] == ["a"]
        with pytest.raises(InvalidArgument, match="only by creation"):
            await store.list(order="updated")


def test_a_record_stored_before_metadata_existed_reads_as_untitled() -> None:
    """Stored records without the new keys decode with an empty title and preview, no
    tags, not pinned (no rewrite of stored data is needed)."""
    payload = encode_record(SessionRecord("s1", "agent", {"tenant_id": "t"}, 1.0, 2.0))
    for key in ("title", "preview", "tags", "pinned"):
        del payload[key]
    record = decode_record(json.loads(json.dumps(payload)))
    assert (record.title, record.preview, record.tags, record.pinned) == ("", "", (), False)


async def test_sqlite_lists_old_records_as_untagged_and_unpinned(tmp_path: Path) -> None:
    """An SQLite row written before metadata existed matches pinned=False, no tag filter,
    and sorts by update like the others."""
    path = tmp_path / "s.db"
    async with open_store(storage=SqliteStorage(path)) as store:
        await store.create("old")
        new = await store.create("new")
        await new.set_metadata(tags=["t"], pinned=True)
    with sqlite3.connect(path) as conn:
        (text,) = conn.execute("SELECT record FROM sessions WHERE id = 'old'").fetchone()
        payload = json.loads(text)
        for key in ("title", "preview", "tags", "pinned"):
            del payload[key]
        conn.execute("UPDATE sessions SET record = ? WHERE id = 'old'", (json.dumps(payload),))
    async with open_store(storage=SqliteStorage(path)) as store:
        assert [r.id for r in (await store.list(pinned=False)).items] == ["old"]
        assert [r.id for r in (await store.list(tags=["t"])).items] == ["new"]
        assert {r.id for r in (await store.list(order="updated")).items} == {"old", "new"}
