"""``harness-kernel``: run and operate a deployment described by ``harness.toml``.

Exit codes: 0 success; 1 a run failed or was aborted, or an operation failed (a
session not found, a storage error); 2 a usage or configuration error; 130 interrupted.

Only light modules are imported here: trio, the store and the commands are imported
once the arguments are parsed, so ``--help`` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from .._toml import DEFAULT_CONFIG
from ..errors import ConfigError, ConfigFileError, HarnessError, InvalidSessionId
from ._exit import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandFailed

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

CONFIG_ENV = "HARNESS_KERNEL_CONFIG"


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    return key, value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("expected a number from 1 to 1000")
    return value


def _tools_options(sub: argparse.ArgumentParser) -> None:
    """``--no-tools`` and ``--tools-timeout``: the commands that build the tool kits (and
    so start MCP servers) to list their tools."""
    sub.add_argument(
        "--no-tools",
        action="store_true",
        help="do not build the tool kits (MCP servers are not started to list their tools)",
    )
    sub.add_argument(
        "--tools-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long each tool kit may take to list its tools (default 30)",
    )


def build_parser() -> argparse.ArgumentParser:
    config_help = f"the configuration file (default: ${CONFIG_ENV} or ./{DEFAULT_CONFIG})"
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", "-c", metavar="PATH", default=argparse.SUPPRESS, help=config_help
    )
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show a traceback for unexpected errors",
    )

    parser = argparse.ArgumentParser(
        prog="harness-kernel",
        description="Run and operate a harness-kernel deployment described by a TOML file.",
        epilog="Exit codes: 0 success, 1 run or operation failed, 2 usage or configuration error.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(group: Any, name: str, help: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(
            name, help=help, description=help, parents=[common]
        )
        return sub

    def json_flag(sub: argparse.ArgumentParser, help: str = "print JSON instead of text") -> None:
        sub.add_argument("--json", action="store_true", help=help)

    def labels(sub: argparse.ArgumentParser, help: str) -> None:
        sub.add_argument(
            "--label",
            "-l",
            dest="label_list",
            metavar="KEY=VALUE",
            type=_label,
            action="append",
            default=[],
            help=help,
        )

    chat = command(
        commands, "chat", "talk to the agent in a terminal (streamed answers, approvals)"
    )
    chat.add_argument("session", nargs="?", help="the session to resume (default: a new one)")
    labels(chat, "a label for a new session (repeatable)")

    send = command(commands, "send", "send one message and print the answer")
    send.add_argument("session", help="the session id (created when it does not exist)")
    send.add_argument("message", help="the message text")
    send.add_argument("--model", help="a model ref for this run only, such as openai/gpt-4.1")
    labels(send, "a label for a new session (repeatable)")
    json_flag(send, "print the run result as JSON instead of streaming the answer")

    sessions = command(commands, "sessions", "list, show, delete, export and import sessions")
    actions = sessions.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = command(actions, "list", "list sessions, newest first, a page at a time")
    listing.add_argument(
        "--limit", type=_positive, default=20, help="sessions per page (default 20)"
    )
    listing.add_argument("--cursor", help="continue after the page that printed this cursor")
    listing.add_argument("--agent", help="only sessions of this agent")
    labels(listing, "only sessions with this label (repeatable; all must match)")
    json_flag(listing)
    show = command(actions, "show", "show a session's record and history")
    show.add_argument("session")
    show.add_argument("--limit", type=_positive, help="only the last LIMIT messages")
    json_flag(show)
    delete = command(actions, "delete", "delete a session and its data")
    delete.add_argument("session")
    export = command(actions, "export", "write a session as JSON lines (record, then every event)")
    export.add_argument("session")
    export.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    imported = command(actions, "import", "read a session written by 'sessions export'")
    imported.add_argument("file", help="the export file, or - for stdin")
    imported.add_argument("--id", help="store it under this session id instead of the exported one")

    runs = command(commands, "runs", "list the runs of a session")
    runs.add_argument("session")
    json_flag(runs)

    approvals = command(commands, "approvals", "list, approve or deny pending tool calls")
    actions = approvals.add_subparsers(dest="action", metavar="ACTION", required=True)
    pending = command(actions, "list", "list pending approvals (of one session, or of all)")
    pending.add_argument("session", nargs="?")
    json_flag(pending)
    approve = command(actions, "approve", "approve a pending tool call; the run continues")
    approve.add_argument("session")
    approve.add_argument("approval")
    approve.add_argument(
        "--remember",
        choices=("tool", "category"),
        help="also approve this tool (or its category) for the rest of the session",
    )
    json_flag(approve, "print the continued run's result as JSON")
    deny = command(actions, "deny", "deny a pending tool call; the reason reaches the model")
    deny.add_argument("session")
    deny.add_argument("approval")
    deny.add_argument("--reason", default="denied by the user")
    json_flag(deny, "print the continued run's result as JSON")

    serve = command(
        commands, "serve", "run the deployment as an HTTP service (REST + SSE under /v1)"
    )
    serve.add_argument(
        "--host", help="the address to listen on (default: [server] host, 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, help="the port to listen on (default: [server] port, 8000)"
    )

    listing_plugins = command(commands, "plugins", "list plugin components and their load status")
    json_flag(listing_plugins, "print one JSON object per component")
    _tools_options(listing_plugins)

    config = command(commands, "config", "check the configuration")
    actions = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = command(
        actions, "check", "validate and print the resolved configuration (secrets masked)"
    )
    json_flag(check)
    check.add_argument(
        "--strict",
        action="store_true",
        help="fail (exit 2) when a required secret, such as a provider's API key, is not set",
    )
    _tools_options(check)
    reference = command(
        actions, "reference", "print the options of every installed plugin as Markdown"
    )
    reference.add_argument(
        "--distribution",
        action="append",
        metavar="NAME",
        help="only components of this distribution (repeatable)",
    )
    return parser


def _version() -> str:
    from .. import __version__

    return f"harness-kernel {__version__}"


def _root_cause(exc: BaseException) -> BaseException:
    """trio wraps what escapes a nursery in an ExceptionGroup; report the single cause."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main(argv: Sequence[str] | None = None) -> int:
    """The console script. Returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.config_given = hasattr(args, "config")
    if not args.config_given:
        args.config = os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    args.debug = getattr(args, "debug", False)
    args.labels = dict(getattr(args, "label_list", []))
    key = f"{args.command} {args.action}" if getattr(args, "action", None) else args.command
    from ._plain import LogOnce

    # A long-running service reports each occurrence itself; the other commands print
    # each distinct start-up warning once.
    kernel_log = logging.getLogger("harness_kernel")
    warnings = LogOnce()
    if key != "serve":
        kernel_log.addHandler(warnings)
    try:
        return _run(key, args)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BaseException as raw:
        exc = _root_cause(raw)
        if isinstance(exc, ConfigFileError):
            sys.stderr.write(f"{exc}\n")
            return EXIT_USAGE
        if isinstance(exc, ConfigError | InvalidSessionId):
            sys.stderr.write(f"error: {exc}\n")
            return EXIT_USAGE
        if isinstance(exc, CommandFailed | HarnessError):
            sys.stderr.write(f"error: {exc}\n")
            return EXIT_FAILED
        if isinstance(exc, KeyboardInterrupt):
            sys.stderr.write("interrupted\n")
            return 130
        if isinstance(exc, SystemExit):
            raise exc from None
        if args.debug or not isinstance(exc, Exception):
            raise
        sys.stderr.write(
            f"internal error: {type(exc).__name__}: {exc}\n(run with --debug for the traceback)\n"
        )
        return EXIT_FAILED
    finally:
        kernel_log.removeHandler(warnings)


def _run(key: str, args: argparse.Namespace) -> int:
    if key == "serve":  # the server extra is imported only for this command
        from ..server import serve

        return serve(args.config, host=args.host, port=args.port)
    if key == "plugins":  # the listing needs neither trio nor the store
        from ._listing import plugins

        return plugins(args)
    import trio

    from ..config import load_config
    from ._commands import COMMANDS

    if key in ("plugins", "config check", "config reference"):
        code: int = COMMANDS[key](args)
        return code
    args.loaded = load_config(args.config)
    if key == "chat":
        return trio.run(_chat, args)
    result: int = trio.run(COMMANDS[key], args)
    return result


async def _chat(args: argparse.Namespace) -> int:
    from ..config import open_store_from_config
    from ._chat import Chat

    async with open_store_from_config(args.loaded) as store:
        if args.session:
            session = await store.get_or_create(args.session, **args.labels)
        else:
            session = await store.create(**args.labels)
        return await Chat(store, session).run()
