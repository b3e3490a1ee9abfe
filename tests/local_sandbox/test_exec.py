"""Commands in the local sandbox: environment, timeouts, process groups, output caps."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio

from harness_kernel.contracts import SessionInfo
from harness_kernel.errors import SandboxError
from harness_kernel_local_sandbox import LocalSandboxSession
from tests.local_sandbox._support import (
    live_processes_with,
    process_alive,
    unique_sleep,
    wait_until,
)

HANG_GUARD = 120  # seconds; a guard against hanging forever, not a speed assertion


async def test_host_secrets_are_not_visible_to_commands(
    make_sandbox, isolation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only PATH, HOME, LANG, allow-listed and configured variables reach a command."""
    monkeypatch.setenv("HK_TEST_SECRET", "hunter2-secret-value")
    monkeypatch.setenv("HK_TEST_ALLOWED", "passed-through")
    sandbox = make_sandbox(isolation=isolation, env_allow=("HK_TEST_ALLOWED", "HK_TEST_UNSET"), env={"FIXED": "1"})
    box = await sandbox.open(SessionInfo("env", "agent"))
    result = await box.exec(["env"], env={"PER_CALL": "2"})
    assert result.ok, result.stderr
    seen = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert "hunter2-secret-value" not in result.stdout
    assert seen["HK_TEST_ALLOWED"] == "passed-through"
    assert seen["HOME"] == box.workdir
    assert seen["FIXED"] == "1"
    assert seen["PER_CALL"] == "2"
    assert "HK_TEST_UNSET" not in seen
    assert set(seen) <= {"PATH", "HOME", "LANG", "HK_TEST_ALLOWED", "FIXED", "PER_CALL", "PWD", "SHLVL", "_"}


async def test_timeout_kills_the_whole_process_group(box: LocalSandboxSession) -> None:
    """A command that started a grandchild and sleeps is killed with the grandchild at the timeout."""
    marker = unique_sleep()
    with trio.fail_after(HANG_GUARD):
        result = await box.exec(f"sleep {marker} & echo $! > grandchild.pid; sleep {marker}", timeout=2)
    assert result.timed_out
    assert result.exit_code is None
    assert result.signal == signal.SIGKILL
    assert (await box.read_text("grandchild.pid")).strip()  # the grandchild did start
    await wait_until(lambda: not live_processes_with(marker), f"no 'sleep {marker}' process is left")


async def test_grandchild_is_gone_by_pid(make_sandbox) -> None:
    """Without isolation the grandchild's host pid is known: after the timeout it no longer runs."""
    box = await make_sandbox().open(SessionInfo("pid", "agent"))
    with trio.fail_after(HANG_GUARD):
        result = await box.exec("sleep 300 & echo $!; sleep 300", timeout=2)
    assert result.timed_out
    pid = int(result.stdout.strip())
    await wait_until(lambda: not process_alive(pid), f"grandchild {pid} is gone")


async def test_background_processes_end_with_their_command(box: LocalSandboxSession) -> None:
    """A process left running in the background is killed when the command returns."""
    marker = unique_sleep()
    with trio.fail_after(HANG_GUARD):
        result = await box.exec(f"sleep {marker} & echo started")
    assert (result.exit_code, result.stdout) == (0, "started\n")
    await wait_until(lambda: not live_processes_with(marker), f"no 'sleep {marker}' process is left")


async def test_huge_output_is_capped_and_the_command_completes(box: LocalSandboxSession) -> None:
    """100 MB on stdout and 100 MB on stderr come back capped, with notices, head and tail kept."""
    script = (
        "printf START; head -c 104857600 /dev/zero | tr '\\0' a; printf END; "
        "head -c 104857600 /dev/zero | tr '\\0' b >&2; exit 3"
    )
    with trio.fail_after(HANG_GUARD):
        result = await box.exec(script)
    limit = box.sandbox.options.max_output_bytes
    assert result.exit_code == 3
    assert result.stdout_truncated
    assert result.stderr_truncated
    assert result.stdout.startswith("STARTaaa")
    assert result.stdout.endswith("aaaEND")
    assert "output truncated" in result.stdout
    assert "104857608 bytes" in result.stdout
    assert limit <= len(result.stdout) < limit + 300
    assert result.stderr.startswith("bbb")
    assert result.stderr.endswith("bbb")
    assert "output truncated" in result.stderr
    assert limit <= len(result.stderr) < limit + 300


async def test_output_under_the_cap_is_complete(make_sandbox) -> None:
    """Output up to the cap is returned whole, without notice."""
    box = await make_sandbox(max_output_bytes=4096).open(SessionInfo("cap", "agent"))
    result = await box.exec("head -c 4096 /dev/zero | tr '\\0' x")
    assert (result.stdout, result.stdout_truncated) == ("x" * 4096, False)
    result = await box.exec("head -c 4097 /dev/zero | tr '\\0' x")
    assert result.stdout_truncated
    assert result.stdout.count("x") == 4096


async def test_stdin_is_fed_and_never_inherited(box: LocalSandboxSession) -> None:
    """stdin reaches the command; a command ignoring a large stdin still returns; no stdin means EOF."""
    data = os.urandom(3 << 20)
    with trio.fail_after(HANG_GUARD):
        result = await box.exec(["wc", "-c"], stdin=data)
        assert result.stdout.strip() == str(len(data))
        result = await box.exec(["true"], stdin=data)
        assert result.ok
        result = await box.exec(["cat"])
        assert (result.exit_code, result.stdout) == (0, "")


async def test_exit_codes_and_signals(box: LocalSandboxSession, isolation: str) -> None:
    """Exit statuses are reported; a signal is reported as such (bwrap: 128 + N, as a shell does)."""
    assert (await box.exec("exit 7")).exit_code == 7
    result = await box.exec("kill -TERM $$")
    if isolation == "none":
        assert (result.exit_code, result.signal) == (None, signal.SIGTERM)
    else:
        assert (result.exit_code, result.signal) == (128 + signal.SIGTERM, None)
    assert not result.timed_out


async def test_a_missing_program_is_a_sandbox_error(box: LocalSandboxSession) -> None:
    """A program that cannot be started raises SandboxError naming it."""
    with pytest.raises(SandboxError, match="no-such-program"):
        await box.exec(["no-such-program-here"])
    with pytest.raises(SandboxError, match="empty"):
        await box.exec([])
    with pytest.raises(SandboxError, match="NUL"):
        await box.exec(["echo", "a\x00b"])
    with pytest.raises(SandboxError, match="timeout"):
        await box.exec(["true"], timeout=0)


async def test_close_kills_running_commands_and_refuses_new_ones(box: LocalSandboxSession) -> None:
    """Closing a workspace kills its running commands; the closed workspace refuses further use."""
    marker = unique_sleep()
    results = []

    async def run() -> None:
        results.append(await box.exec(f"sleep {marker}"))

    with trio.fail_after(HANG_GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await wait_until(lambda: bool(live_processes_with(marker)), "the command runs")
            await box.close("close")
    assert not results[0].ok
    assert not results[0].timed_out
    await wait_until(lambda: not live_processes_with(marker), "the command is gone")
    with pytest.raises(SandboxError, match="closed"):
        await box.exec(["true"])
    await box.close("close")


async def test_a_cancelled_exec_kills_its_command(box: LocalSandboxSession) -> None:
    """Cancelling the caller (an aborted run) kills the command's group before returning."""
    marker = unique_sleep()
    with trio.move_on_after(HANG_GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(box.exec, f"sleep {marker} & sleep {marker}")
            await wait_until(lambda: len(live_processes_with(marker)) >= 2, "the command runs")
            nursery.cancel_scope.cancel()
    await wait_until(lambda: not live_processes_with(marker), "the command is gone")


async def test_commands_run_in_the_work_directory(box: LocalSandboxSession) -> None:
    """The default cwd is the work directory; files a command writes are visible to read_file."""
    result = await box.exec("pwd; echo made > made.txt; mkdir -p sub && cd sub && pwd")
    assert result.stdout.splitlines() == [box.workdir, str(Path(box.workdir) / "sub")]
    assert await box.read_file("made.txt") == b"made\n"
