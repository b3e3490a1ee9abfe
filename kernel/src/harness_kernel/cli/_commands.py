"""The commands other than ``chat``: each takes the parsed arguments, returns an exit code."""

from __future__ import annotations

import argparse
import io
import json
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, TextIO, cast

import attrs
import trio

from .._plugins import PluginRegistry
from .._records import Event, RunResult
from .._runtime import validate_session_id
from .._session import Session
from .._store import SessionStore
from ..codec import converter, decode_event, decode_record, encode_event, encode_record
from ..config import ConfigFileError, load_config, open_store_from_config
from ..errors import HarnessError, SessionExists
from ._exit import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandFailed
from ._kits import kit_problems, list_tool_kits, print_tool_kits
from ._listing import plugins
from ._output import (
    EventPrinter,
    clock,
    colored,
    cost_text,
    describe_labels,
    describe_usage,
    message_lines,
    print_json,
    result_json,
    short,
    table,
)

__all__ = ["COMMANDS", "EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "CommandFailed"]

EXPORT_FORMAT = "harness-kernel-session"
EXPORT_VERSION = 1


@asynccontextmanager
async def opened(args: argparse.Namespace) -> AsyncIterator[SessionStore]:
    async with open_store_from_config(args.loaded) as store:
        yield store


async def existing(store: SessionStore, session_id: str) -> Session:
    """The session, hydrated; ``CommandFailed`` if storage does not have it (commands
    that inspect a session must not create one by asking)."""
    validate_session_id(session_id)
    session = store.get(session_id)
    if session is not None:
        return session
    if await store.storage.load(session_id) is None:
        raise CommandFailed(f"session '{session_id}' not found")
    return await store.get_or_create(session_id)


def status_code(result: RunResult | None) -> int:
    return EXIT_FAILED if result is not None and result.status in ("failed", "aborted") else EXIT_OK


# -- send ---------------------------------------------------------------------------


async def send(args: argparse.Namespace) -> int:
    result: RunResult | None = None
    async with opened(args) as store:
        if args.json:
            outcome = await store.send(args.session, args.message, model=args.model, **args.labels)
            print_json(result_json(outcome))
            return status_code(outcome)
        session = await store.get_or_create(args.session, **args.labels)
        # The run's outcome is reported once, by _report, after the stream.
        printer = EventPrinter(
            store.agent.name, sys.stdout, sys.stderr, prefix=False, outcome=False
        )
        with trio.CancelScope() as scope, trio.open_signal_receiver(signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:

                async def interrupt() -> None:
                    async for _ in signals:
                        scope.cancel()  # leaving the stream aborts the run

                nursery.start_soon(interrupt)
                async with session.stream(args.message, model=args.model) as events:
                    async for item in events:
                        printer.feed(item)
                result = events.result
                nursery.cancel_scope.cancel()
        printer.finish()
        if scope.cancelled_caught or result is None:
            sys.stderr.write("interrupted: the run was aborted\n")
            return EXIT_FAILED
        _report(result, session, args, sys.stderr)
        return status_code(result)


def _report(result: RunResult, session: Session, args: argparse.Namespace, notes: TextIO) -> None:
    if result.usage.cost is not None:  # with prices configured, what the run cost
        notes.write(f"usage: {describe_usage(result.usage)}\n")
    if result.status == "waiting_approval":
        # The hint names the configuration by its absolute path, so that it works
        # pasted as it is, from any directory.
        config = shlex.quote(str(args.loaded.path))
        for handle in session.pending_approvals:
            ids = f"{shlex.quote(session.id)} {shlex.quote(handle.approval_id)}"
            notes.write(
                f"waiting for approval {handle.approval_id}: {handle.tool} {short(dict(handle.arguments), 120)}\n"
                f"  approve: harness-kernel --config {config} approvals approve {ids}\n"
            )
    elif result.status == "suspended":
        notes.write("the run is suspended, waiting for a tool's input\n")
    elif result.status == "failed" and result.error is not None:
        notes.write(f"run failed: {result.error.message} ({result.error.code})\n")
    elif result.status == "aborted":
        notes.write("run aborted\n")


# -- sessions -----------------------------------------------------------------------


async def sessions_list(args: argparse.Namespace) -> int:
    async with opened(args) as store:
        page = await store.list(
            limit=args.limit, cursor=args.cursor, agent=args.agent, **args.labels
        )
    if args.json:
        print_json(
            {"items": [encode_record(r) for r in page.items], "next_cursor": page.next_cursor}
        )
        return EXIT_OK
    rows = [
        (
            r.id,
            r.status,
            r.agent,
            r.model or "-",
            clock(r.created_at),
            clock(r.updated_at),
            r.usage.total_tokens,
            cost_text(r.usage),
            describe_labels(r.labels),
        )
        for r in page.items
    ]
    headers = ("ID", "STATUS", "AGENT", "MODEL", "CREATED", "UPDATED", "TOKENS", "COST", "LABELS")
    table(headers, rows, sys.stdout)
    if page.next_cursor:
        sys.stderr.write(f"more sessions: --cursor {page.next_cursor}\n")
    return EXIT_OK


async def sessions_show(args: argparse.Namespace) -> int:
    async with opened(args) as store:
        session = await existing(store, args.session)
        messages = await session.history(limit=args.limit)
        record = await store.storage.load(session.id)
        assert record is not None
        pending = session.pending_approvals
    if args.json:
        print_json(
            {
                "record": encode_record(record),
                "messages": [converter.unstructure(m) for m in messages],
                "pending_approvals": [converter.unstructure(h) for h in pending],
            }
        )
        return EXIT_OK
    out = sys.stdout
    out.write(f"session  {record.id}\nagent    {record.agent}\nstatus   {record.status}\n")
    out.write(
        f"mode     {record.mode}\nmodel    {session.model}\nlabels   {describe_labels(record.labels)}\n"
    )
    out.write(f"created  {clock(record.created_at)}\nupdated  {clock(record.updated_at)}\n")
    out.write(f"usage    {describe_usage(record.usage)}\n\n")
    color = colored(out)
    for message in messages:
        for line in message_lines(message, color=color):
            out.write(f"{line}\n")
    for handle in pending:
        out.write(
            f"\nwaiting for approval {handle.approval_id}: {handle.tool} {short(dict(handle.arguments), 120)}\n"
        )
    return EXIT_OK


async def sessions_delete(args: argparse.Namespace) -> int:
    async with opened(args) as store:
        validate_session_id(args.session)
        if not await store.delete(args.session):
            raise CommandFailed(f"session '{args.session}' not found")
    sys.stdout.write(f"deleted {args.session}\n")
    return EXIT_OK


async def _event_batches(store: SessionStore, session_id: str) -> AsyncIterator[list[Event]]:
    after = 0
    while True:
        batch = await store.storage.read(session_id, after_seq=after, limit=1000)
        if not batch:
            return
        yield batch
        after = batch[-1].seq


async def sessions_export(args: argparse.Namespace) -> int:
    count = 0
    async with opened(args) as store:
        validate_session_id(args.session)
        record = await store.storage.load(args.session)
        if record is None:
            raise CommandFailed(f"session '{args.session}' not found")
        header = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "record": encode_record(record),
        }
        out: Any = (
            await trio.open_file(args.output, "w", encoding="utf-8")
            if args.output
            else trio.wrap_file(cast(io.TextIOWrapper, sys.stdout))
        )
        try:
            await out.write(json.dumps(header, ensure_ascii=False) + "\n")
            async for batch in _event_batches(store, args.session):
                lines = (json.dumps(encode_event(e), ensure_ascii=False) + "\n" for e in batch)
                await out.write("".join(lines))
                count += len(batch)
        finally:
            if args.output:
                await out.aclose()
            else:
                await out.flush()
    sys.stderr.write(f"exported {args.session}: {count} events\n")
    return EXIT_OK


def _parse_export(lines: Iterable[str], source: str) -> tuple[Any, list[Event]]:
    record = None
    events: list[Event] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CommandFailed(f"{source}:{number}: not JSON ({exc.msg})") from None
        try:
            if record is None:
                if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
                    raise CommandFailed(f"{source}:{number}: not a harness-kernel session export")
                if data.get("version") != EXPORT_VERSION:
                    raise CommandFailed(
                        f"{source}:{number}: unsupported export version {data.get('version')!r}"
                    )
                record = decode_record(data["record"])
                continue
            event = decode_event(data)
        except (HarnessError, KeyError, TypeError) as exc:
            if isinstance(exc, CommandFailed):
                raise
            raise CommandFailed(f"{source}:{number}: {exc}") from None
        if event.seq != len(events) + 1:
            raise CommandFailed(
                f"{source}:{number}: expected event seq {len(events) + 1}, found {event.seq}"
            )
        events.append(event)
    if record is None:
        raise CommandFailed(f"{source}: empty export")
    return record, events


async def sessions_import(args: argparse.Namespace) -> int:
    if args.file == "-":
        text = await trio.to_thread.run_sync(sys.stdin.read)
    else:
        try:
            text = await trio.Path(args.file).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandFailed(f"{args.file}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise CommandFailed(f"{args.file}: not UTF-8 text") from None
    record, events = _parse_export(text.splitlines(), "<stdin>" if args.file == "-" else args.file)
    session_id = validate_session_id(args.id or record.id)
    async with opened(args) as store:
        storage = store.storage
        # The record is written empty first and completed last, so an interrupted
        # import leaves a record that claims no more than the events present.
        fresh = attrs.evolve(record, id=session_id, last_seq=0, revision=0, status="idle")
        try:
            await storage.create(fresh)
        except SessionExists:
            raise CommandFailed(
                f"session '{session_id}' already exists (delete it first, or import with --id NEW_ID)"
            ) from None
        for start in range(0, len(events), 500):
            await storage.append(session_id, events[start : start + 500], expected_seq=start)
        final = attrs.evolve(record, id=session_id, last_seq=len(events), revision=1)
        await storage.save(final, expected_revision=0)
    sys.stdout.write(f"imported {session_id}: {len(events)} events\n")
    return EXIT_OK


# -- runs and approvals -------------------------------------------------------------


async def runs(args: argparse.Namespace) -> int:
    async with opened(args) as store:
        session = await existing(store, args.session)
        summaries = await session.runs()
    if args.json:
        for summary in summaries:
            print_json(converter.unstructure(summary))
        return EXIT_OK
    rows = []
    for s in summaries:
        duration = f"{(s.finished_at - s.started_at):.2f}s" if s.finished_at is not None else "-"
        error = short(s.error.message, 60) if s.error else ""
        rows.append(
            (
                s.run_id,
                s.status,
                clock(s.started_at),
                duration,
                s.model or "-",
                s.mode or "-",
                s.usage.total_tokens,
                cost_text(s.usage),
                error,
            )
        )
    table(
        ("RUN", "STATUS", "STARTED", "DURATION", "MODEL", "MODE", "TOKENS", "COST", "ERROR"),
        rows,
        sys.stdout,
    )
    return EXIT_OK


async def approvals_list(args: argparse.Namespace) -> int:
    handles = []
    async with opened(args) as store:
        if args.session:
            handles = (await existing(store, args.session)).pending_approvals
        else:
            cursor = None
            while True:
                page = await store.list(limit=200, cursor=cursor)
                for record in page.items:
                    if record.status == "waiting_approval":
                        handles.extend((await store.get_or_create(record.id)).pending_approvals)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
    if args.json:
        for handle in handles:
            print_json(converter.unstructure(handle))
        return EXIT_OK
    rows = [
        (h.session_id, h.approval_id, h.tool, short(dict(h.arguments), 60), clock(h.requested_at))
        for h in handles
    ]
    table(("SESSION", "APPROVAL", "TOOL", "ARGUMENTS", "REQUESTED"), rows, sys.stdout)
    return EXIT_OK


async def approvals_resolve(args: argparse.Namespace) -> int:
    from ._chat import follow

    async with opened(args) as store:
        session = await existing(store, args.session)
        if args.approval not in {h.approval_id for h in session.pending_approvals}:
            raise CommandFailed(
                f"no pending approval '{args.approval}' in session '{args.session}'"
            )
        # The run's outcome is reported once, by _report, after the stream.
        printer = EventPrinter(
            store.agent.name, sys.stdout, sys.stderr, prefix=False, outcome=False
        )

        async def act() -> RunResult | None:
            if args.action == "approve":
                return await session.approve(args.approval, remember=args.remember)
            return await session.deny(args.approval, args.reason)

        if args.json:
            result = await act()
            print_json(result_json(result) if result is not None else None)
        else:
            result = await follow(store, session.id, printer, act)
            if result is None:
                sys.stderr.write("recorded; other approvals of this run are still pending\n")
            else:
                _report(result, session, args, sys.stderr)
    return status_code(result)


# -- plugins and config -------------------------------------------------------------


def config_check(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    missing = loaded.missing_secrets()
    if missing and args.strict:
        raise ConfigFileError(args.config, missing)
    # Tool kits are built to list their tools (MCP servers are started, then stopped).
    kits = [] if args.no_tools else list_tool_kits(loaded, args.tools_timeout)
    if kit_problems(kits):
        raise ConfigFileError(args.config, kit_problems(kits))
    if args.json:
        print_json(loaded.to_data())
    else:
        sys.stdout.write(loaded.to_toml())
    print_tool_kits(kits, argparse.Namespace(json=False), sys.stderr)
    for line in missing:
        sys.stderr.write(f"warning: {line}\n")
    if missing:
        count = f"{len(missing)} warning{'s' if len(missing) > 1 else ''}"
        sys.stderr.write(
            f"{args.config}: configuration is valid ({count}; --strict fails on them)\n"
        )
    else:
        sys.stderr.write(f"{args.config}: configuration is valid\n")
    return EXIT_OK


def config_reference(args: argparse.Namespace) -> int:
    from ._reference import options_reference

    sys.stdout.write(options_reference(PluginRegistry(), distributions=args.distribution or None))
    return EXIT_OK


COMMANDS: dict[str, Any] = {
    "send": send,
    "sessions list": sessions_list,
    "sessions show": sessions_show,
    "sessions delete": sessions_delete,
    "sessions export": sessions_export,
    "sessions import": sessions_import,
    "runs": runs,
    "approvals list": approvals_list,
    "approvals approve": approvals_resolve,
    "approvals deny": approvals_resolve,
    "plugins": plugins,
    "config check": config_check,
    "config reference": config_reference,
}
