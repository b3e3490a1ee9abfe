"""The ``shell`` kit: run a command in the session's sandbox."""

from __future__ import annotations

import signal

from harness_kernel import Tool, ToolContext, tool
from harness_kernel.contracts import ExecResult

from ._options import ShellKitOptions, approval_for

__all__ = ["format_result", "shell_kit"]

LIMIT_TEXT = {
    "cpu": "its CPU time limit",
    "memory": "its memory limit",
    "processes": "its process limit",
    "file_size": "its file size limit",
    "disk": "the workspace's disk quota",
}


def shell_kit(options: ShellKitOptions | None = None) -> list[Tool]:
    """The tools of the ``shell`` kit, configured by ``options``."""
    options = options if options is not None else ShellKitOptions()

    @tool(
        approval=approval_for(options.approvals, "execute"),
        category="execute",
        description=(
            "Run a shell command (/bin/sh -c) in the workspace directory and return its exit "
            "code and output. Each call starts fresh: no state (directory, variables) carries "
            "over, and background processes are stopped when the command returns. "
            f"Default timeout {options.default_timeout:g}s, at most {options.max_timeout:g}s."
        ),
    )
    async def shell(ctx: ToolContext, command: str, timeout: float | None = None) -> str:
        """Run a command.

        Args:
            command: The shell command line.
            timeout: Seconds before the command and everything it started are killed.
        """
        note = ""
        if timeout is None:
            timeout = options.default_timeout
        elif not timeout > 0:
            timeout = options.default_timeout
            note = f"[timeout must be positive; used {timeout:g}s]\n"
        elif timeout > options.max_timeout:
            timeout = options.max_timeout
            note = f"[timeout lowered to the maximum of {timeout:g}s]\n"
        result = await ctx.sandbox.exec(command, timeout=timeout, env=dict(options.env) or None)
        return note + format_result(result, timeout, options.max_output_chars)

    return [shell]


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head, tail = text[: limit // 2], text[len(text) - (limit - limit // 2) :]
    return f"{head}\n[... {len(text) - limit} characters omitted ...]\n{tail}"


def format_result(result: ExecResult, timeout: float, limit: int) -> str:
    """The text the model sees: how the command ended, then its output streams."""
    if result.timed_out:
        status = f"timed out after {timeout:g}s: the command and everything it started were killed"
    elif result.signal is not None:
        try:
            name = signal.Signals(result.signal).name
        except ValueError:
            name = f"signal {result.signal}"
        status = f"killed by {name}"
    else:
        status = f"exit code: {result.exit_code}"
    if result.limit is not None:
        reached = LIMIT_TEXT.get(result.limit, f"its {result.limit} limit")
        status += f"\nstopped by the sandbox: the command reached {reached}"
    parts = [status]
    stdout, stderr = result.stdout, result.stderr
    if stdout and stderr:
        share = limit // 2
        stdout, stderr = _cap(stdout, share), _cap(stderr, limit - share)
    else:
        stdout, stderr = _cap(stdout, limit), _cap(stderr, limit)
    if stdout:
        parts.append("stdout:\n" + stdout.rstrip("\n"))
    if stderr:
        parts.append("stderr:\n" + stderr.rstrip("\n"))
    if not stdout and not stderr:
        parts.append("(no output)")
    return "\n".join(parts)
