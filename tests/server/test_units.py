"""Pieces of the service that need no server: the rate limiter's arithmetic, the
request-body check against the generated schema, the event streams' outbox, and the
lazy import of the extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness_kernel.server._auth import Principal, RateLimiter
from harness_kernel.server._problems import Problem
from harness_kernel.server._schema import SchemaSet, parse_body
from harness_kernel.server._views import ApproveBody, CreateSessionBody, SendBody


def test_the_bucket_refills_at_the_limit_per_minute() -> None:
    """limit=6: six at once, then one more every ten seconds of the (injected) clock."""
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.take("k", 6) for _ in range(6)] == [0.0] * 6
    assert limiter.take("k", 6) == pytest.approx(10.0)
    now[0] = 5.0
    assert limiter.take("k", 6) == pytest.approx(5.0)
    now[0] = 10.0
    assert limiter.take("k", 6) == 0.0
    assert limiter.take("other", 6) == 0.0  # buckets are per key


def test_bodies_are_checked_against_the_schema_the_document_publishes() -> None:
    """Unknown keys, wrong types, missing fields and values outside an enum are 422s
    listing each problem; a valid body becomes the class."""
    schemas = SchemaSet()
    assert parse_body({"text": "hi"}, SendBody, schemas) == SendBody("hi")
    assert parse_body({}, CreateSessionBody, schemas) == CreateSessionBody()
    with pytest.raises(Problem) as raised:
        parse_body({"txt": "x", "model": 3}, SendBody, schemas)
    assert raised.value.status == 422
    assert set(raised.value.extra["errors"]) == {
        "body.text: required", "body.txt: unknown key", "body.model: does not match any allowed form",
    }
    with pytest.raises(Problem):
        parse_body({"remember": "forever"}, ApproveBody, schemas)
    with pytest.raises(Problem):
        parse_body({"labels": {"a": 1}}, CreateSessionBody, schemas)
    with pytest.raises(Problem):
        parse_body(["not", "an", "object"], SendBody, schemas)


def test_a_principal_sees_its_tenant_and_an_admin_sees_all() -> None:
    alice = Principal("alice", "k1", tenant="acme")
    carol = Principal("carol", "k2", tenant="acme", scope_principal=True)
    admin = Principal("root", "k3", admin=True)
    acme, carols = {"tenant_id": "acme"}, {"tenant_id": "acme", "principal": "carol"}
    assert alice.may_see(acme)
    assert alice.may_see(carols)
    assert not carol.may_see(acme)
    assert carol.may_see(carols)
    assert not alice.may_see({"tenant_id": "globex"})
    assert not alice.may_see({})
    assert admin.may_see({})
    assert admin.labels() == {}


def test_the_kernel_and_the_cli_do_not_import_the_extra() -> None:
    """import harness_kernel (and the CLI) never needs starlette or hypercorn."""
    code = (
        "import sys, harness_kernel, harness_kernel.cli\n"
        "assert not {'starlette', 'hypercorn'} & set(sys.modules), sorted(sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


async def test_events_written_during_a_send_go_out_together_in_order() -> None:
    """While the connection is busy sending, later events wait and then leave as one
    chunk; nothing is reordered, lost or sent twice, and closing sends the rest."""
    import trio
    import trio.testing

    from harness_kernel.server._service import _Outbox

    sent: list[bytes] = []
    release = trio.Event()

    async def send(chunk: bytes) -> None:
        sent.append(chunk)
        if len(sent) == 1:
            await release.wait()  # the first send blocks, as a busy socket would

    outbox = _Outbox(send)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbox.run)
        await outbox.write(b"a")
        await trio.testing.wait_all_tasks_blocked()
        for chunk in (b"b", b"c", b"d"):
            await outbox.write(chunk)
        release.set()
        await outbox.write(b"e")
        await outbox.close()
    assert sent[0] == b"a"
    assert b"".join(sent) == b"abcde"
    assert len(sent) <= 3  # b, c and d shared one send


async def test_a_failed_send_reaches_the_producer() -> None:
    """A send that fails (the client went away) is raised to the next write."""
    import trio
    import trio.testing

    from harness_kernel.server._service import _Outbox

    async def send(chunk: bytes) -> None:
        raise OSError("connection reset")

    outbox = _Outbox(send)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbox.run)
        await outbox.write(b"a")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(OSError, match="connection reset"):
            await outbox.write(b"b")
        await outbox.close()
