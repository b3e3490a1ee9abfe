"""The service's state for requests: the store, the runs it drives, tenancy checks,
and the event-stream response."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from harness_kernel import Session, SessionStore, validate_session_id
from harness_kernel.codec import converter
from harness_kernel.errors import SessionNotFound

from ._auth import Principal
from ._problems import problem_response
from ._runs import Runs, event_data, sse
from ._settings import ServerSettings
from ._views import SessionView

__all__ = ["EventStream", "Service", "store_events"]

Write = Callable[[bytes], Awaitable[None]]
OUTBOX_BYTES: Final = 256 * 1024
"""Bytes of events a stream holds for a slow client before its producer waits."""


class Service:
    """What every request shares: the store, the runs this process drives, the
    settings, the OpenAPI document and whether the service is ready."""

    def __init__(
        self, store: SessionStore, runs: Runs, settings: ServerSettings, openapi: dict[str, Any]
    ) -> None:
        self.store = store
        self.runs = runs
        self.settings = settings
        self.openapi = openapi
        self.state = "ok"

    def stop(self) -> None:
        """Stop taking work: readiness fails, the runs this process drives are aborted."""
        self.state = "stopping"
        self.runs.stop_all()

    async def session_for(self, principal: Principal, session_id: str) -> Session:
        """The session, loaded, if it exists and ``principal`` may see it; otherwise
        ``SessionNotFound``, the same for a missing session and another tenant's."""
        validate_session_id(session_id)
        record = await self.store.storage.load(session_id)  # deleted by any process: gone
        if record is None or not principal.may_see(record.labels):
            raise SessionNotFound(f"no session '{session_id}'")
        loaded = self.store.get(session_id)
        if loaded is not None and record.last_seq > loaded.last_seq and not loaded.is_running:
            # Another process moved the session on (it ran or continued a run): load it
            # again, so reads show what it did. A parked run stays parked.
            await self.store.close(session_id)
            loaded = None
        session = loaded or await self.store.get_or_create(session_id)
        if not principal.may_see(session.labels):  # replaced in between
            raise SessionNotFound(f"no session '{session_id}'")
        return session

    def view(self, session: Session) -> SessionView:
        display = session.display_state
        if display.pending_suspensions:
            status = "suspended"
        elif display.pending_approvals:
            status = "waiting_approval"
        else:
            status = "running" if display.open_run else "idle"
        return SessionView(
            id=session.id,
            agent=self.store.agent.name,
            labels=dict(session.labels),
            status=status,
            mode=session.mode,
            model=session.model,
            model_override=session.model_override,
            usage=session.usage,
            last_seq=session.last_seq,
            current_run=session.current_run,
            pending_approvals=tuple(session.pending_approvals),
            pending_suspensions=tuple(session.pending_suspensions),
            queued_follow_ups=tuple(session.queued_follow_ups),
            grants=session.grants,
            state=converter.unstructure(session.state),
            title=session.title,
            preview=session.preview,
            tags=session.tags,
            pinned=session.pinned,
        )


class EventStream(Response):
    """Server-sent events written by ``produce(write)``; it stops when the client
    leaves (which never aborts a run)."""

    media_type = "text/event-stream"

    def __init__(
        self, produce: Callable[[Write], Awaitable[None]], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(
            headers={"cache-control": "no-cache", "x-accel-buffering": "no", **(headers or {})},
            media_type=self.media_type,
        )
        # No body given means "Content-Length: 0" to Starlette; a stream has none.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self._produce = produce

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

        async def send_body(chunk: bytes) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        outbox = _Outbox(send_body)
        gone = False
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal gone
                while (await receive())["type"] != "http.disconnect":
                    pass
                gone = True
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            nursery.start_soon(outbox.run)
            try:
                await self._produce(outbox.write)
            except Exception as exc:
                problem = problem_response(exc)
                with contextlib.suppress(Exception):  # the connection itself failed
                    await outbox.write(sse("error", _loads(problem.body)))
            await outbox.close()
            nursery.cancel_scope.cancel()
        if not gone:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Outbox:
    """Events on their way to one client: the producer writes them, one task sends
    them, and whatever piled up during a send goes out as the next single chunk.

    Under load that is one socket write for many events instead of one each (W13:
    500 streams of ~100 events); a client that reads slowly holds the producer back
    once ``OUTBOX_BYTES`` wait. A failed send is raised to the next ``write``.
    """

    def __init__(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        self._send = send
        self._pending: list[bytes] = []
        self._size = 0
        self._ready = trio.Event()
        self._room = trio.Event()
        self._closed = False
        self._failed: Exception | None = None
        self._done = trio.Event()

    async def write(self, chunk: bytes) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._failed is not None:
            raise self._failed
        self._pending.append(chunk)
        self._size += len(chunk)
        self._ready.set()
        while self._size >= OUTBOX_BYTES and self._failed is None:
            await self._room.wait()

    async def run(self) -> None:
        try:
            while True:
                if not self._pending:
                    if self._closed:
                        return
                    await self._ready.wait()
                    self._ready = trio.Event()
                    continue
                batch = b"".join(self._pending)
                self._pending.clear()
                self._size = 0
                room, self._room = self._room, trio.Event()
                room.set()
                await self._send(batch)
        except Exception as exc:  # the connection failed: the producer hears it
            self._failed = exc
            self._room.set()
        finally:
            self._done.set()

    async def close(self) -> None:
        """Send what is pending, then stop."""
        self._closed = True
        self._ready.set()
        await self._done.wait()


def _loads(body: bytes | memoryview) -> Any:
    return json.loads(bytes(body))


async def store_events(service: Service, principal: Principal, write: Write) -> None:
    """Every store event of the sessions ``principal`` may see. Store-wide events have
    no single order across sessions, so they carry no id and cannot be resumed; follow
    a run's events for that."""
    seen: dict[str, bool] = {}
    async with service.store.subscribe() as subscription:
        await write(b": subscribed\n\n")
        async for item in subscription:
            if item.session_id is not None and not principal.admin:
                loaded = service.store.get(item.session_id)
                if loaded is not None:  # a deleted session is judged as it was last seen
                    seen[item.session_id] = principal.may_see(loaded.labels)
                if not seen.get(item.session_id, False):
                    continue
            elif item.session_id is None and not principal.admin:
                continue  # store-wide (session.cleared): for admins only
            data: dict[str, Any] = {"kind": item.kind, "session_id": item.session_id}
            if item.event is not None:
                data["event"] = event_data(item.event)
            if item.display is not None:
                data["display"] = converter.unstructure(item.display)
                data["stream_only"] = True
            await write(sse(item.kind, data))
