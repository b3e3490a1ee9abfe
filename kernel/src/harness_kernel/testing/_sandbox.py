"""``check_sandbox``: the ``Sandbox`` contract, executable."""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Callable
from typing import Any

import trio

from ..contracts import Sandbox, SessionInfo
from ..errors import SandboxError, SandboxPathError, SandboxUnavailable
from ._report import Checks

__all__ = ["check_sandbox"]


async def check_sandbox(make_sandbox: Callable[[], Any], *, timeout: float = 60.0) -> list[str]:
    """Run the sandbox contract; returns the passed check names.

    Operations the sandbox's ``capabilities`` do not offer must raise
    ``SandboxUnavailable``. Raises ``ConformanceFailure`` listing failures.
    """
    sandbox = make_sandbox()
    if inspect.isawaitable(sandbox):
        sandbox = await sandbox
    assert isinstance(sandbox, Sandbox), (
        f"the factory returned {type(sandbox).__name__}, not a Sandbox"
    )
    checks = Checks("sandbox")
    caps = sandbox.capabilities
    info = SessionInfo(f"cf-{secrets.token_hex(4)}", "conformance-agent", {"tenant_id": "t"})
    box = await sandbox.open(info)

    if caps.files:
        async with checks.case("files_round_trip"):
            await box.write_file("notes/a.txt", "héllo\n")
            await box.write_file("notes/b.bin", b"\x00\x01\xff")
            checks.equal(await box.read_file("notes/a.txt"), "héllo\n".encode(), "text file")
            checks.equal(await box.read_text("notes/a.txt"), "héllo\n", "read_text")
            checks.equal(await box.read_file("notes/b.bin"), b"\x00\x01\xff", "binary file")
            await box.write_file("notes/a.txt", "replaced")
            checks.equal(await box.read_file("notes/a.txt"), b"replaced", "overwritten file")

        async with checks.case("list_dir_is_sorted_with_kinds"):
            await box.write_file("listing/z.txt", "z")
            await box.write_file("listing/a.txt", "a")
            await box.write_file("listing/sub/x.txt", "x")
            entries = await box.list_dir("listing")
            checks.equal([e.name for e in entries], ["a.txt", "sub", "z.txt"], "names")
            checks.equal([e.is_dir for e in entries], [False, True, False], "is_dir flags")

        async with checks.case("missing_file_is_a_sandbox_error"):
            await checks.raises(SandboxError, box.read_file("does/not/exist.txt"))

        async with checks.case("escaping_paths_are_refused"):
            for bad in ("../outside.txt", "/etc/passwd", "a/../../outside.txt", "nul\x00byte"):
                await checks.raises(SandboxPathError, box.write_file(bad, "x"))
                await checks.raises(SandboxPathError, box.read_file(bad))
    else:
        async with checks.case("file_operations_are_unavailable"):
            await checks.raises(SandboxUnavailable, box.write_file("a.txt", "x"))
            await checks.raises(SandboxUnavailable, box.read_file("a.txt"))
            await checks.raises(SandboxUnavailable, box.list_dir("."))

    if caps.exec:
        async with checks.case("exec_runs_argv_and_shell_commands"):
            with trio.fail_after(timeout):
                result = await box.exec(["echo", "hello"])
                checks.equal((result.exit_code, result.stdout), (0, "hello\n"), "echo hello")
                result = await box.exec("echo $((40 + 2)) && exit 3")
                checks.equal((result.exit_code, result.stdout.strip()), (3, "42"), "shell command")
                result = await box.exec(["cat"], stdin="from stdin")
                checks.equal(result.stdout, "from stdin", "stdin")
                result = await box.exec(
                    ["sh", "-c", 'printf %s "$CONFORMANCE_VAR"'], env={"CONFORMANCE_VAR": "v1"}
                )
                checks.equal(result.stdout, "v1", "env")

        async with checks.case("exec_timeout_kills_the_command"):
            with trio.fail_after(timeout):
                result = await box.exec(["sleep", "30"], timeout=0.5)
            checks.check(result.timed_out, "timed_out is set")
            checks.check(result.exit_code != 0, "a timed-out command does not report success")

        async with checks.case("exec_cwd_is_confined"):
            await checks.raises(SandboxPathError, box.exec(["pwd"], cwd="../.."))
            if caps.files:
                await box.write_file("sub/here.txt", "x")
                result = await box.exec(["ls"], cwd="sub")
                checks.equal(result.stdout.split(), ["here.txt"], "ls in cwd=sub")
    else:
        async with checks.case("exec_is_unavailable"):
            await checks.raises(SandboxUnavailable, box.exec(["echo", "hi"]))

    async with checks.case("close_is_idempotent_and_the_workspace_survives_it"):
        await box.close("close")
        await box.close("close")
        box = await sandbox.open(info)
        if caps.files:
            checks.equal(
                await box.read_file("notes/a.txt"), b"replaced", "file after close and reopen"
            )

    async with checks.case("destroy_removes_the_workspace"):
        await box.close("delete")
        await sandbox.destroy(info.session_id)
        await sandbox.destroy(info.session_id)
        box = await sandbox.open(info)
        if caps.files:
            await checks.raises(SandboxError, box.read_file("notes/a.txt"))
        await box.close("close")
        await sandbox.destroy(info.session_id)

    await sandbox.aclose()
    return checks.finish()
