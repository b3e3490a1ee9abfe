"""The file backend's own promises: layout, torn tails, hostile ids, listing, plugin entry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from harness_kernel import SessionRecord, create_session_store, define_agent
from harness_kernel.codec import decode_event
from harness_kernel.contracts import SessionFilter
from harness_kernel.errors import ConfigError, InvalidSessionId, SessionNotFound, StorageError
from harness_kernel_file import FileStorage, decode_id, encode_id
from tests.storage_common.events import message_event, message_text


def _record(session_id: str, created_at: float = 1000.0, **labels: str) -> SessionRecord:
    return SessionRecord(session_id, "agent", labels, created_at, created_at)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


async def test_a_session_is_a_directory_with_a_record_and_a_json_lines_log(tmp_path: Path) -> None:
    """Each append is one fsynced line holding the batch, in the codec's JSON form."""
    storage = FileStorage(tmp_path)
    await storage.create(_record("Customer-42"))
    await storage.append("Customer-42", [message_event(1, "hi"), message_event(2, "there")], 0)
    await storage.append("Customer-42", [message_event(3, "again")], 2)
    directory = tmp_path / "sessions" / encode_id("Customer-42")
    assert sorted(p.name for p in directory.iterdir()) == [".lock", "events.jsonl", "record.json"]
    lines = (directory / "events.jsonl").read_bytes().splitlines()
    batches = [json.loads(line) for line in lines]
    assert [(b["first"], b["last"]) for b in batches] == [(1, 2), (3, 3)]
    assert [message_text(decode_event(e)) for b in batches for e in b["events"]] == ["hi", "there", "again"]
    assert json.loads((directory / "record.json").read_text())["id"] == "Customer-42"
    assert json.loads((tmp_path / "FORMAT").read_text()) == {"layout": "harness-kernel-file", "version": 1}


async def test_a_torn_last_line_is_cut_on_the_next_open_and_never_read_as_data(tmp_path: Path) -> None:
    """A batch cut short by a crash (no final newline) is dropped; the log goes on after it."""
    storage = FileStorage(tmp_path)
    await storage.create(_record("torn"))
    await storage.append("torn", [message_event(1, "kept")], 0)
    log = tmp_path / "sessions" / encode_id("torn") / "events.jsonl"
    whole = log.read_bytes()
    with log.open("ab") as f:
        f.write(b'{"first":2,"last":2,"events":[{"seq":2,"type":"message.ad')
    fresh = FileStorage(tmp_path)
    assert [message_text(e) for e in await fresh.read("torn")] == ["kept"]
    assert log.read_bytes() == whole
    assert await fresh.last_seq("torn") == 1
    await fresh.append("torn", [message_event(2, "next")], 1)
    assert [message_text(e) for e in await fresh.read("torn")] == ["kept", "next"]


async def test_a_corrupt_complete_line_is_an_error_not_silently_dropped(tmp_path: Path) -> None:
    """Only an unterminated tail is cut; damage inside the log raises StorageError."""
    storage = FileStorage(tmp_path)
    await storage.create(_record("bad"))
    await storage.append("bad", [message_event(1, "a")], 0)
    log = tmp_path / "sessions" / encode_id("bad") / "events.jsonl"
    log.write_bytes(log.read_bytes() + b"garbage\n")
    with pytest.raises(StorageError):
        await storage.read("bad")


async def test_reads_after_a_seq_skip_to_the_right_line(tmp_path: Path) -> None:
    """Windows deep in a long log come back exactly, also from a fresh process's storage."""
    storage = FileStorage(tmp_path)
    await storage.create(_record("long"))
    for seq in range(1, 301, 3):
        await storage.append("long", [message_event(s, f"m{s}") for s in range(seq, seq + 3)], seq - 1)
    for reader in (storage, FileStorage(tmp_path)):
        assert [e.seq for e in await reader.read("long", after_seq=250, limit=7)] == list(range(251, 258))
        assert [e.seq for e in await reader.read("long", after_seq=298)] == [299, 300]
        assert [e.seq for e in await reader.read("long", after_seq=100, limit=2)] == [101, 102]


@pytest.mark.parametrize(
    "hostile", ["../x", "a/b", "/etc/passwd", "..", "a\0b", "x" * 10_000, "", "C:\\x", "a\nb"]
)
async def test_hostile_ids_are_refused_and_touch_nothing(tmp_path: Path, hostile: str) -> None:
    """Ids the kernel would refuse are refused by every method; nothing is written anywhere."""
    root = tmp_path / "root"
    storage = FileStorage(root)
    await storage.create(_record("fine"))
    before = _files(tmp_path)
    with pytest.raises(InvalidSessionId):
        await storage.create(_record(hostile))
    for call in (
        storage.load(hostile),
        storage.read(hostile),
        storage.last_seq(hostile),
        storage.append(hostile, [message_event(1, "x")], 0),
        storage.delete(hostile),
    ):
        with pytest.raises(InvalidSessionId):
            await call
    assert _files(tmp_path) == before


async def test_ids_differing_only_in_case_get_different_lowercase_directories(tmp_path: Path) -> None:
    """``Ab`` and ``aB`` never share a directory, even on a case-insensitive filesystem."""
    storage = FileStorage(tmp_path)
    for session_id, text in (("Ab", "upper first"), ("aB", "lower first")):
        await storage.create(_record(session_id))
        await storage.append(session_id, [message_event(1, text)], 0)
    names = sorted(p.name for p in (tmp_path / "sessions").iterdir())
    assert len(names) == 2
    assert names[0].lower() != names[1].lower()
    assert all(name == name.lower() and name.isalnum() for name in names)
    assert sorted(decode_id(n) for n in names) == ["Ab", "aB"]
    assert [message_text(e) for e in await storage.read("Ab")] == ["upper first"]
    assert [message_text(e) for e in await storage.read("aB")] == ["lower first"]


async def test_every_valid_id_round_trips_through_its_directory_name() -> None:
    """The encoding is reversible and only uses [0-9a-v], whatever the id."""
    for session_id in ["a", "A" * 128, "x.y:z@w-v_u", "9" * 128, "a.b" * 42]:
        name = encode_id(session_id)
        assert decode_id(name) == session_id
        assert set(name) <= set("0123456789abcdefghijklmnopqrstuv")
        assert len(name) <= 205


async def test_listing_skips_index_entries_left_by_a_crash(tmp_path: Path) -> None:
    """An index entry whose session is gone, or was re-created later, is not listed."""
    storage = FileStorage(tmp_path)
    await storage.create(_record("keep", 2000.0, team="x"))
    await storage.create(_record("gone", 2001.0, team="x"))
    await storage.create(_record("renewed", 2002.0, team="x"))
    # A crash during delete leaves the record gone but its index entries in place.
    os.unlink(tmp_path / "sessions" / encode_id("gone") / "record.json")
    # A session deleted and created again has a newer entry; the old one must not count.
    (tmp_path / "index" / "all" / "0000000000000001-" f"{encode_id('renewed')}").touch()
    page = await storage.list(SessionFilter(), limit=10)
    assert [r.id for r in page.items] == ["renewed", "keep"]
    labelled = await storage.list(SessionFilter(labels={"team": "x"}), limit=1)
    assert [r.id for r in labelled.items] == ["renewed"]
    rest = await storage.list(SessionFilter(labels={"team": "x"}), limit=1, cursor=labelled.next_cursor)
    assert [r.id for r in rest.items] == ["keep"]
    assert rest.next_cursor is None


async def test_a_root_written_by_a_newer_layout_is_refused(tmp_path: Path) -> None:
    """Data from a newer harness-kernel-file is never misread."""
    (tmp_path / "FORMAT").write_text('{"layout": "harness-kernel-file", "version": 99}')
    with pytest.raises(StorageError, match="upgrade"):
        await FileStorage(tmp_path).load("x")


async def test_delete_removes_the_directory_and_a_missing_session_stays_missing(tmp_path: Path) -> None:
    """After delete nothing of the session is left; its operations raise SessionNotFound."""
    storage = FileStorage(tmp_path)
    await storage.create(_record("bye", team="y"))
    await storage.append("bye", [message_event(1, "x")], 0)
    assert await storage.delete("bye") is True
    assert list((tmp_path / "sessions").iterdir()) == []
    assert [list(d.iterdir()) for d in (tmp_path / "index").iterdir()] == [[], [], []]
    with pytest.raises(SessionNotFound):
        await storage.append("bye", [message_event(1, "x")], 0)


async def test_the_plugin_is_found_by_name_and_persists_across_stores(tmp_path: Path) -> None:
    """``storage="file"`` resolves through the entry point; a second store hydrates the session."""
    agent = define_agent(name="notes", instructions="Be brief.")
    options = {"root": str(tmp_path)}
    async with create_session_store(agent=agent, storage="file", storage_options=options) as store:
        result = await store.send("s-1", "hello")
        assert result.status == "completed"
    async with create_session_store(agent=agent, storage="file", storage_options=options) as store:
        session = await store.get_or_create("s-1")
        assert next(m.text for m in await session.history()) == "hello"


async def test_bad_options_are_refused_with_their_path(tmp_path: Path) -> None:
    """Unknown keys and wrong types in storage_options name the bad field."""
    agent = define_agent(name="notes", instructions="Be brief.")
    with pytest.raises(ConfigError, match=r"storage\.options"):
        async with create_session_store(agent=agent, storage="file", storage_options={"root": 5}):
            pass
    with pytest.raises(ConfigError, match=r"storage\.options"):
        async with create_session_store(agent=agent, storage="file", storage_options={"rooot": "x"}):
            pass


async def test_text_with_a_lone_surrogate_round_trips(tmp_path: Path) -> None:
    """A str that is not valid UTF-8 (a lone surrogate) is stored and read back unchanged."""
    storage = FileStorage(tmp_path)
    await storage.create(_record("odd", note="v\ud800"))
    await storage.append("odd", [message_event(1, "bad \ud800 text")], 0)
    fresh = FileStorage(tmp_path)
    assert [message_text(e) for e in await fresh.read("odd")] == ["bad \ud800 text"]
    loaded = await fresh.load("odd")
    assert loaded is not None
    assert loaded.labels == {"note": "v\ud800"}
    assert [r.id for r in (await fresh.list(SessionFilter(labels={"note": "v\ud800"}))).items] == ["odd"]


async def test_a_large_read_leaves_the_garbage_collector_as_it_was(tmp_path: Path) -> None:
    """The collector paused for a big decode is on again afterwards, and stays off if the host turned it off."""
    import gc

    storage = FileStorage(tmp_path)
    await storage.create(_record("big"))
    await storage.append("big", [message_event(s, "x") for s in range(1, 1501)], 0)
    assert gc.isenabled()
    assert len(await storage.read("big")) == 1500
    assert gc.isenabled()
    gc.disable()
    try:
        assert len(await storage.read("big")) == 1500
        assert not gc.isenabled()
    finally:
        gc.enable()


@settings(max_examples=30, deadline=None)
@given(batches=st.lists(st.integers(1, 10), min_size=1, max_size=8), data=st.data())
def test_a_fresh_storage_reads_any_tail_by_seeking_back_from_the_end(
    tmp_path_factory: pytest.TempPathFactory, batches: list[int], data: st.DataObject
) -> None:
    """A storage that has not read the log yet (a new process hydrating from a
    snapshot) reads ``after_seq`` from the end of the file, and gets exactly the tail."""
    root = tmp_path_factory.mktemp("tail")
    total = sum(batches)
    after = data.draw(st.integers(0, total))
    text = "x" * data.draw(st.integers(0, 70_000))  # lines longer than one backward chunk

    async def check() -> None:
        writer = FileStorage(root)
        await writer.create(_record("s"))
        seq = 0
        for size in batches:
            await writer.append("s", [message_event(seq + i + 1, f"{seq + i + 1}{text}") for i in range(size)], seq)
            seq += size
        await writer.aclose()
        fresh = FileStorage(root)
        tail = await fresh.read("s", after_seq=after)
        assert [e.seq for e in tail] == list(range(after + 1, total + 1))
        assert [message_text(e) for e in tail] == [f"{n}{text}" for n in range(after + 1, total + 1)]
        await fresh.aclose()

    trio.run(check)
