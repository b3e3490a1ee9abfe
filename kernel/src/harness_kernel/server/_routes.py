"""The endpoints under ``/v1``: one ``Endpoint`` each, from which both the Starlette
routes and the OpenAPI document are built."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from harness_kernel import DisplayState, Event, RunResult, Session
from harness_kernel.codec import converter
from harness_kernel.errors import HarnessError, InvalidArgument

from ._auth import Principal
from ._problems import Problem
from ._runs import event_data, follow_run, sse, stream_data
from ._service import EventStream, Service, store_events
from ._views import (
    Aborted,
    ApprovalList,
    ApproveBody,
    BtwAnswer,
    BtwBody,
    CreateSessionBody,
    DenyBody,
    EventList,
    Health,
    HistoryPage,
    MetadataBody,
    QueueBody,
    Queued,
    ResumeBody,
    RunList,
    SendBody,
    SessionPage,
    SessionSummary,
    SessionView,
    SuspensionList,
    Waiting,
)

__all__ = ["ENDPOINTS", "Call", "Endpoint", "Param"]


@attrs.frozen
class Param:
    """A query parameter."""

    name: str
    schema: dict[str, Any]
    description: str
    required: bool = False


@attrs.frozen(eq=False)
class Call:
    """One request as a handler sees it."""

    request: Request
    service: Service
    principal: Principal
    body: Any

    def path(self, name: str) -> str:
        value: str = self.request.path_params[name]
        return value

    async def session(self) -> Session:
        return await self.service.session_for(self.principal, self.path("session_id"))

    def wants_events(self) -> bool:
        return "text/event-stream" in self.request.headers.get("accept", "")


Handler = Callable[[Call], Awaitable[Response]]


@attrs.frozen
class Endpoint:
    """One operation: how it is called, what it takes and answers, who may call it."""

    method: str
    path: str
    name: str
    summary: str
    handler: Handler
    body: type | None = None
    response: Any = None
    status: int = 200
    streams: bool = False
    """Also answers ``Accept: text/event-stream`` with server-sent events."""
    query: tuple[Param, ...] = ()
    open: bool = False
    """Callable without an API key."""
    may_wait: bool = False
    """Answers 202 ``Waiting`` when the run still waits for other approvals or answers."""


def answer(value: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(converter.unstructure(value), status_code=status)


def _outcome(session: Session, result: RunResult | None) -> JSONResponse:
    if result is not None:
        return answer(result)
    return answer(
        Waiting(
            "waiting",
            tuple(a.approval_id for a in session.pending_approvals),
            tuple(s.call_id for s in session.pending_suspensions),
        ),
        202,
    )


# -- health ---------------------------------------------------------------------------


async def health(call: Call) -> Response:
    return answer(Health("ok"))


async def readiness(call: Call) -> Response:
    state = call.service.state
    return answer(Health(state), 200 if state == "ok" else 503)


async def openapi(call: Call) -> Response:
    return JSONResponse(call.service.openapi)


# -- sessions -------------------------------------------------------------------------


async def create_session(call: Call) -> Response:
    body: CreateSessionBody = call.body
    forced = call.principal.labels()
    for key, value in forced.items():
        if body.labels.get(key, value) != value:
            raise Problem(403, "auth.forbidden", f"label '{key}' is set by your API key")
    store = call.service.store
    session = await store.create(body.id, **{**body.labels, **forced})
    return answer(call.service.view(session), 201)


async def list_sessions(call: Call) -> Response:
    query = call.request.query_params
    limit = _integer(query.get("limit", "50"), "limit")
    labels: dict[str, str] = {}
    for item in query.getlist("label"):
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise InvalidArgument(f"label filter '{item}' must look like key:value")
        labels[key] = value
    for key, value in call.principal.labels().items():
        if labels.get(key, value) != value:
            return answer(SessionPage(()))
        labels[key] = value
    clash = sorted(set(labels) & {"agent", "tags", "pinned", "order"})
    if clash:
        raise InvalidArgument(f"label filter '{clash[0]}' cannot be listed by: rename that label")
    pinned = {None: None, "true": True, "false": False}.get(query.get("pinned"), "bad")
    if pinned == "bad":
        raise InvalidArgument("pinned must be true or false")
    order = query.get("order", "created")
    if order not in ("created", "updated"):
        raise InvalidArgument("order must be 'created' or 'updated'")
    try:
        page = await call.service.store.list(
            limit,
            query.get("cursor") or None,
            tags=query.getlist("tag"),
            pinned=pinned,  # type: ignore[arg-type]
            order=order,  # type: ignore[arg-type]
            **labels,
        )
    except HarnessError:
        raise
    except (ValueError, KeyError, TypeError) as exc:  # a backend that misreads a bad cursor
        raise InvalidArgument("cursor: not a cursor from a previous page") from exc
    items = tuple(
        SessionSummary(
            r.id,
            r.agent,
            dict(r.labels),
            r.created_at,
            r.updated_at,
            r.status,
            r.mode,
            r.model,
            r.usage,
            r.last_seq,
            r.title,
            r.preview,
            r.tags,
            r.pinned,
        )
        for r in page.items
    )
    return answer(SessionPage(items, page.next_cursor))


def _integer(text: str, name: str) -> int:
    if not text.isdigit():
        raise InvalidArgument(f"{name} must be a whole number")
    return int(text)


async def get_session(call: Call) -> Response:
    return answer(call.service.view(await call.session()))


async def update_session(call: Call) -> Response:
    body: MetadataBody = call.body
    session = await call.session()
    await session.set_metadata(title=body.title, tags=body.tags, pinned=body.pinned)
    return answer(call.service.view(session))


async def delete_session(call: Call) -> Response:
    session = await call.session()
    await call.service.store.delete(session.id)
    return Response(status_code=204)


# -- runs -----------------------------------------------------------------------------


async def send_message(call: Call) -> Response:
    body: SendBody = call.body
    session = await call.session()
    if call.service.state != "ok":
        raise Problem(503, "server.stopping", "the service is stopping; send to another process")
    feed = await call.service.runs.start(session, body.text, body.model)
    if call.wants_events():

        async def produce(write: Callable[[bytes], Awaitable[None]]) -> None:
            await write(sse("run", {"session_id": session.id, "run_id": feed.run_id}))
            async for _, item in feed.items_from(0):
                if isinstance(item, Event):
                    await write(sse(item.type, event_data(item), item.seq))
                else:
                    await write(sse(item.type, stream_data(item)))
            if feed.result is not None:
                await write(sse("result", converter.unstructure(feed.result)))

        return EventStream(produce, {"harness-run-id": feed.run_id})
    await feed.done.wait()
    if feed.result is None:
        raise Problem(500, "run.failed", "the run's stream failed; see its events")
    return answer(feed.result)


async def follow_up(call: Call) -> Response:
    body: QueueBody = call.body
    await (await call.session()).follow_up(body.text)
    return answer(Queued(True), 202)


async def steer(call: Call) -> Response:
    body: QueueBody = call.body
    await (await call.session()).steer(body.text)
    return answer(Queued(True), 202)


async def abort(call: Call) -> Response:
    return answer(Aborted(await (await call.session()).abort()))


async def btw(call: Call) -> Response:
    body: BtwBody = call.body
    return answer(BtwAnswer(await (await call.session()).btw(body.question, model=body.model)))


async def list_runs(call: Call) -> Response:
    return answer(RunList(tuple(await (await call.session()).runs())))


async def run_events(call: Call) -> Response:
    session = await call.session()
    run_id = call.path("run_id")
    events = await session.run_events(run_id)  # UnknownRun before any stream starts
    if not call.wants_events():
        return JSONResponse({"items": [event_data(e) for e in events]})
    header = call.request.headers.get("last-event-id") or call.request.query_params.get("after")
    after = _integer(header.strip(), "Last-Event-ID") if header else 0
    service = call.service

    async def produce(write: Callable[[bytes], Awaitable[None]]) -> None:
        await follow_run(service.store, service.runs, session, run_id, after, write, call.session)

    return EventStream(produce)


async def history(call: Call) -> Response:
    query = call.request.query_params
    limit = _integer(query["limit"], "limit") if "limit" in query else None
    before = query.get("before") or None
    messages = await (await call.session()).history(limit, before)
    more = limit is not None and len(messages) == limit and limit > 0
    return answer(HistoryPage(tuple(messages), messages[0].id if more else None))


async def display(call: Call) -> Response:
    return answer((await call.session()).display_state)


# -- approvals and suspensions ----------------------------------------------------------


async def list_approvals(call: Call) -> Response:
    return answer(ApprovalList(tuple((await call.session()).pending_approvals)))


async def approve(call: Call) -> Response:
    body: ApproveBody = call.body
    session = await call.session()
    result = await session.approve(call.path("approval_id"), remember=body.remember)
    return _outcome(session, result)


async def deny(call: Call) -> Response:
    body: DenyBody = call.body
    session = await call.session()
    result = await session.deny(call.path("approval_id"), body.reason)
    return _outcome(session, result)


async def list_suspensions(call: Call) -> Response:
    return answer(SuspensionList(tuple((await call.session()).pending_suspensions)))


async def resume(call: Call) -> Response:
    body: ResumeBody = call.body
    session = await call.session()
    result = await session.resume(call.path("call_id"), body.data)
    return _outcome(session, result)


async def events(call: Call) -> Response:
    if not call.wants_events():
        raise Problem(406, "request.not_acceptable", "this endpoint answers text/event-stream")
    service, principal = call.service, call.principal

    async def produce(write: Callable[[bytes], Awaitable[None]]) -> None:
        await store_events(service, principal, write)

    return EventStream(produce)


# -- the table --------------------------------------------------------------------------

S = "/v1/sessions/{session_id}"
_LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "items per page")
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/healthz", "health", "The process is up", health, response=Health, open=True),
    Endpoint(
        "GET",
        "/readyz",
        "readiness",
        "The store is open and the service accepts work",
        readiness,
        response=Health,
        open=True,
    ),
    Endpoint("GET", "/v1/openapi.json", "openapi", "This document", openapi, open=True),
    Endpoint(
        "POST",
        "/v1/sessions",
        "create_session",
        "Create a session",
        create_session,
        CreateSessionBody,
        SessionView,
        201,
    ),
    Endpoint(
        "GET",
        "/v1/sessions",
        "list_sessions",
        "List sessions, newest first (or by last update)",
        list_sessions,
        response=SessionPage,
        query=(
            _LIMIT,
            Param("cursor", {"type": "string"}, "next_cursor of the previous page"),
            Param(
                "label",
                {"type": "array", "items": {"type": "string"}},
                "key:value, repeatable; all must match",
            ),
            Param(
                "tag",
                {"type": "array", "items": {"type": "string"}},
                "a tag, repeatable; sessions with all of them",
            ),
            Param("pinned", {"enum": ["true", "false"]}, "only pinned (or only unpinned) sessions"),
            Param(
                "order",
                {"enum": ["created", "updated"]},
                "newest created first (default), or most recently updated first",
            ),
        ),
    ),
    Endpoint(
        "GET",
        S,
        "get_session",
        "A session's settings, current run and pending items",
        get_session,
        response=SessionView,
    ),
    Endpoint(
        "PATCH",
        S,
        "update_session",
        "Rename, tag or pin a session",
        update_session,
        MetadataBody,
        SessionView,
    ),
    Endpoint(
        "DELETE", S, "delete_session", "Delete a session and its data", delete_session, status=204
    ),
    Endpoint(
        "POST",
        f"{S}/messages",
        "send_message",
        "Run the agent on a message (JSON result or event stream)",
        send_message,
        SendBody,
        RunResult,
        streams=True,
    ),
    Endpoint(
        "POST",
        f"{S}/follow-ups",
        "follow_up",
        "Queue a message to run after the current run",
        follow_up,
        QueueBody,
        Queued,
        202,
    ),
    Endpoint(
        "POST",
        f"{S}/steer",
        "steer",
        "Add a message to the current run before its next step",
        steer,
        QueueBody,
        Queued,
        202,
    ),
    Endpoint(
        "POST", f"{S}/abort", "abort", "Abort the active or parked run", abort, response=Aborted
    ),
    Endpoint(
        "POST", f"{S}/btw", "btw", "Ask a side question (nothing recorded)", btw, BtwBody, BtwAnswer
    ),
    Endpoint(
        "GET",
        f"{S}/runs",
        "list_runs",
        "The session's runs, oldest first",
        list_runs,
        response=RunList,
    ),
    Endpoint(
        "GET",
        f"{S}/runs/{{run_id}}/events",
        "run_events",
        "A run's durable events (JSON), or its resumable event stream",
        run_events,
        response=EventList,
        streams=True,
    ),
    Endpoint(
        "GET",
        f"{S}/history",
        "history",
        "The conversation, a page at a time",
        history,
        response=HistoryPage,
        query=(
            Param("limit", {"type": "integer", "minimum": 0}, "the last LIMIT messages"),
            Param("before", {"type": "string"}, "only messages older than this message id"),
        ),
    ),
    Endpoint(
        "GET",
        f"{S}/display",
        "display_state",
        "What a UI shows for the session now",
        display,
        response=DisplayState,
    ),
    Endpoint(
        "GET",
        f"{S}/approvals",
        "list_approvals",
        "Pending approvals",
        list_approvals,
        response=ApprovalList,
    ),
    Endpoint(
        "POST",
        f"{S}/approvals/{{approval_id}}/approve",
        "approve",
        "Approve a tool call; the run continues",
        approve,
        ApproveBody,
        RunResult,
        may_wait=True,
    ),
    Endpoint(
        "POST",
        f"{S}/approvals/{{approval_id}}/deny",
        "deny",
        "Deny a tool call with a reason",
        deny,
        DenyBody,
        RunResult,
        may_wait=True,
    ),
    Endpoint(
        "GET",
        f"{S}/suspensions",
        "list_suspensions",
        "Suspended tool calls",
        list_suspensions,
        response=SuspensionList,
    ),
    Endpoint(
        "POST",
        f"{S}/suspensions/{{call_id}}/resume",
        "resume",
        "Answer a suspended tool call",
        resume,
        ResumeBody,
        RunResult,
        may_wait=True,
    ),
    Endpoint(
        "GET",
        "/v1/events",
        "store_events",
        "Every event of the sessions you may see, as an event stream",
        events,
        streams=True,
    ),
)
