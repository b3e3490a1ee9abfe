"""S3 that refuses to lie: servers that ignore or misread conditional writes (issue K8).

moto enforces ``If-None-Match`` and ``If-Match``; a loopback proxy in front of it plays
the servers that do not (it strips the headers), the one that sends no ETag, and Ceph
RGW 16 (a quoted ``If-Match`` ETag never matches). Each test is one reproduction of the
issue: on a storage without the check it loses data, raises ``KeyError`` or never saves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import attrs
import boto3
import pytest

from harness_kernel import SessionRecord, create_session_store, define_agent
from harness_kernel.errors import ConfigError, Conflict, SessionExists, StorageError
from harness_kernel_s3 import S3Storage
from tests.s3.faulty_proxy import Fault, faulty_proxy
from tests.storage_common.events import message_event, message_text

Make = Callable[..., S3Storage]

_BOTH = frozenset({"if-none-match", "if-match"})


def _record(session_id: str) -> SessionRecord:
    return SessionRecord(session_id, "agent", {}, 1000.0, 1000.0)


def _keys(endpoint: str, bucket: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.mark.parametrize(
    ("stripped", "named", "not_named"),
    [
        (frozenset({"if-none-match"}), ["If-None-Match"], "If-Match"),
        (frozenset({"if-match"}), ["If-Match"], "If-None-Match"),
        (_BOTH, ["If-None-Match", "If-Match"], None),
    ],
)
async def test_a_server_that_ignores_a_condition_is_refused_with_what_it_ignored(
    make_s3: Make, moto_endpoint: str, bucket: str, stripped: frozenset[str], named: list[str], not_named: str | None
) -> None:
    """The first request fails with a ConfigError naming exactly the ignored conditions,
    every later one too, and the probe leaves no object behind."""
    with faulty_proxy(moto_endpoint, strip_request_headers=stripped) as proxy:
        storage = make_s3(endpoint_url=proxy.url, prefix="app/")
        with pytest.raises(ConfigError) as refused:
            await storage.create(_record("first"))
        message = str(refused.value)
        for name in named:
            assert f"ignored {name}" in message or f"and {name}" in message
        if not_named is not None:
            assert f"{not_named} (" not in message
        assert "unsafe_skip_conditional_write_check" in message
        with pytest.raises(ConfigError):
            await storage.load("first")
        assert not any(header in stripped for header, _ in proxy.conditions_seen)  # really hidden
    assert _keys(moto_endpoint, bucket) == []


async def test_two_stores_on_a_server_ignoring_conditions_refuse_to_start(
    s3_options: dict[str, Any], moto_endpoint: str, bucket: str
) -> None:
    """Reproduction: two stores on such a server both answered ``completed`` and one message
    was overwritten. Now neither store runs anything and nothing is written."""
    agent = define_agent(name="notes", instructions="Be brief.")
    with faulty_proxy(moto_endpoint, strip_request_headers=_BOTH) as proxy:
        options = {**s3_options, "endpoint_url": proxy.url}
        async with (
            create_session_store(agent=agent, storage="s3", storage_options=options) as a,
            create_session_store(agent=agent, storage="s3", storage_options=options) as b,
        ):

            async def two_writers() -> None:
                assert (await a.send("shared", "one")).status == "completed"
                stale = await b.get_or_create("shared")
                assert (await a.send("shared", "two")).status == "completed"
                assert (await stale.send("three")).status == "completed"
                texts = [m.text for m in await (await a.get_or_create("shared")).history() if m.role == "user"]
                assert texts == ["one", "two", "three"], "an acknowledged message was lost"

            with pytest.raises(ConfigError, match="If-None-Match"):
                await two_writers()
            with pytest.raises(ConfigError, match="If-None-Match"):
                await b.get_or_create("shared")
    assert _keys(moto_endpoint, bucket) == []


async def test_creating_an_existing_id_on_a_server_ignoring_conditions_is_refused(
    make_s3: Make, moto_endpoint: str
) -> None:
    """Reproduction: ``create`` of an existing id replaced it with a new, empty log. Now the
    storage refuses before it writes anything."""
    with faulty_proxy(moto_endpoint, strip_request_headers=frozenset({"if-none-match"})) as proxy:
        storage = make_s3(endpoint_url=proxy.url)

        async def create_twice() -> None:
            await storage.create(_record("taken"))
            await storage.append("taken", [message_event(1, "kept")], 0)
            with pytest.raises(SessionExists):
                await storage.create(_record("taken"))
            assert [message_text(e) for e in await storage.read("taken")] == ["kept"]

        with pytest.raises(ConfigError, match="If-None-Match"):
            await create_twice()


async def test_skipping_the_check_is_possible_and_writes_no_probe(make_s3: Make, moto_endpoint: str) -> None:
    """``unsafe_skip_conditional_write_check`` opens the storage without asking the server."""
    with faulty_proxy(moto_endpoint, strip_request_headers=_BOTH) as proxy:
        storage = make_s3(endpoint_url=proxy.url, unsafe_skip_conditional_write_check=True)
        await storage.create(_record("trusted"))
        assert not any("/probe/" in path for _, path in proxy.requests)
        loaded = await storage.load("trusted")
        assert loaded is not None


async def test_the_check_runs_once_under_the_prefix_and_cleans_up(make_s3: Make, moto_endpoint: str, bucket: str) -> None:
    """On a server that enforces both conditions the probe asks each once, then never again."""
    with faulty_proxy(moto_endpoint) as proxy:
        storage = make_s3(endpoint_url=proxy.url, prefix="tenant/")
        await storage.check_server()
        assert _keys(moto_endpoint, bucket) == []
        await storage.create(_record("after-check"))
        await storage.append("after-check", [message_event(1, "x")], 0)
    probes = [path for _, path in proxy.requests if "/probe/" in path]
    assert len(set(probes)) == 1  # one key of its own, under the prefix
    assert "/tenant/probe/conditional-writes-" in probes[0]
    seen = [header for header, _ in proxy.conditions_seen]
    assert seen[:3] == ["if-none-match", "if-none-match", "if-match"]
    assert seen.count("if-match") == 1  # the probe's stale replace; nothing re-probed
    assert all(key.startswith("tenant/sessions/") for key in _keys(moto_endpoint, bucket) if "/index/" not in key)


async def test_on_a_server_wanting_unquoted_etags_saves_succeed(make_s3: Make, moto_endpoint: str) -> None:
    """Reproduction (Ceph RGW 16): every save conflicted, so the record stayed at revision 0
    and nothing was logged. Now a refused save whose record is unchanged is retried once
    with the ETag unquoted; a really stale save still conflicts."""
    with faulty_proxy(moto_endpoint, quoted_if_match_fails=True) as proxy:
        storage = make_s3(endpoint_url=proxy.url)
        await storage.create(_record("rgw"))
        first = attrs.evolve(_record("rgw"), revision=1, last_seq=1)
        await storage.save(first, expected_revision=0)
        await storage.save(attrs.evolve(first, revision=2, last_seq=2), expected_revision=1)
        loaded = await storage.load("rgw")
        assert loaded is not None
        assert (loaded.revision, loaded.last_seq) == (2, 2)
        with pytest.raises(Conflict):
            await storage.save(attrs.evolve(first, revision=2), expected_revision=1)
    tags = [value for header, value in proxy.conditions_seen if header == "if-match"]
    assert any(not tag.startswith('"') for tag in tags), "the unquoted retry never happened"


async def test_a_store_on_a_server_wanting_unquoted_etags_keeps_its_record_current(
    s3_options: dict[str, Any], moto_endpoint: str, make_s3: Make
) -> None:
    """End to end on the RGW stand-in: after a completed send the stored record is the
    session's snapshot (revision moved, last_seq at the log's end), as on S3."""
    agent = define_agent(name="notes", instructions="Be brief.")
    with faulty_proxy(moto_endpoint, quoted_if_match_fails=True) as proxy:
        options = {**s3_options, "endpoint_url": proxy.url}
        async with create_session_store(agent=agent, storage="s3", storage_options=options) as store:
            assert (await store.send("rgw-store", "hello")).status == "completed"
    direct = make_s3()
    record = await direct.load("rgw-store")
    assert record is not None
    assert record.revision > 0
    assert record.last_seq == await direct.last_seq("rgw-store")


async def test_a_server_without_etags_is_a_storage_error(make_s3: Make, moto_endpoint: str) -> None:
    """Reproduction: a server that sends no ETag made ``save`` raise a raw ``KeyError('ETag')``.
    Now the check refuses with a StorageError, and without the check ``save`` does."""
    with faulty_proxy(moto_endpoint, drop_etag=True) as proxy:
        checked = make_s3(endpoint_url=proxy.url)

        async def create_and_save() -> None:
            await checked.create(_record("no-etag"))
            await checked.save(attrs.evolve(_record("no-etag"), revision=1), expected_revision=0)

        with pytest.raises(StorageError, match="no ETag"):
            await create_and_save()
        unchecked = make_s3(endpoint_url=proxy.url, unsafe_skip_conditional_write_check=True)
        await unchecked.create(_record("no-etag"))
        assert await unchecked.load("no-etag") is not None  # reading needs no ETag
        with pytest.raises(StorageError, match="no ETag"):
            await unchecked.save(attrs.evolve(_record("no-etag"), revision=1), expected_revision=0)


async def test_a_save_that_gives_up_is_logged_at_warning_with_the_session_id(
    make_s3: Make, moto_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused although nothing changed (both ETag forms), and refused because another host
    saved first: each is a Conflict and a warning naming the session."""
    caplog.set_level(logging.WARNING, logger="harness_kernel_s3")
    with faulty_proxy(moto_endpoint) as proxy:
        storage = make_s3(endpoint_url=proxy.url)
        await storage.check_server()
        await storage.create(_record("refused-1"))
        proxy.faults.append(Fault("PUT", "/record.json", times=2, status=412, code="PreconditionFailed"))
        with pytest.raises(Conflict):
            await storage.save(attrs.evolve(_record("refused-1"), revision=1), expected_revision=0)
        assert len(proxy.injected) == 2  # the quoted try and the unquoted retry
    other, mine = make_s3(), make_s3()
    await other.create(_record("refused-2"))
    await other.save(attrs.evolve(_record("refused-2"), revision=1), expected_revision=0)
    with pytest.raises(Conflict):
        await mine.save(attrs.evolve(_record("refused-2"), revision=1), expected_revision=0)
    warned = [r for r in caplog.records if r.name == "harness_kernel_s3" and r.levelno == logging.WARNING]
    assert [getattr(r, "session_id", None) for r in warned] == ["refused-1", "refused-2"]
    assert "refused-1" in warned[0].getMessage()
    assert "unchanged" in warned[0].getMessage()
