"""The shell kit on a real workspace: how a command's outcome reads to the model."""

from __future__ import annotations

from harness_kernel.contracts import ExecResult, SessionInfo
from harness_kernel_local_sandbox import (
    LIMIT_NAMES,
    CommandLimits,
    LocalSandbox,
    LocalSandboxOptions,
)
from harness_kernel_tools import shell_kit
from harness_kernel_tools._shell import format_result
from tests.tools.conftest import Kit


async def test_shell_reports_exit_code_and_streams(shell: Kit) -> None:
    """Exit code first, then stdout and stderr sections (only those with output)."""
    assert await shell("shell", command="echo out; echo err >&2; exit 4") == "exit code: 4\nstdout:\nout\nstderr:\nerr"
    assert await shell("shell", command="true") == "exit code: 0\n(no output)"
    assert await shell("shell", command="kill -KILL $$") == "killed by SIGKILL\n(no output)"


async def test_shell_timeout_and_its_bounds(make_shell) -> None:
    """A timeout kills the command and says so; the model cannot exceed max_timeout."""
    shell = make_shell(default_timeout=1, max_timeout=1.5)
    result = await shell("shell", command="echo begun; sleep 30")
    assert result == "timed out after 1s: the command and everything it started were killed\nstdout:\nbegun"
    result = await shell("shell", command="echo quick", timeout=100)
    assert result == "[timeout lowered to the maximum of 1.5s]\nexit code: 0\nstdout:\nquick"
    assert (await shell("shell", command="echo int", timeout=1)).endswith("int")


async def test_shell_env_option_and_workspace_cwd(make_shell, workspace) -> None:
    """Configured variables reach commands, which run in the workspace."""
    shell = make_shell(env={"GREETING": "hello"})
    assert await shell("shell", command='echo "$GREETING from $(pwd)"') == (
        f"exit code: 0\nstdout:\nhello from {workspace.workdir}"
    )


async def test_long_output_keeps_its_start_and_end(make_shell) -> None:
    """Output past max_output_chars is cut in the middle, with a note of how much."""
    shell = make_shell(max_output_chars=100)
    text = await shell("shell", command="printf '%050d' 0 | tr 0 A; printf '%0100d' 0 | tr 0 B; printf '%050d' 0 | tr 0 C")
    assert text == "exit code: 0\nstdout:\n" + "A" * 50 + "\n[... 100 characters omitted ...]\n" + "C" * 50


async def test_shell_names_the_limit_that_stopped_a_command(tmp_path) -> None:
    """A command stopped by a sandbox limit says which one, after how it ended."""
    sandbox = LocalSandbox(
        LocalSandboxOptions(
            root=str(tmp_path / "limited"),
            limits=CommandLimits(cpu_seconds=1, file_size_bytes=4096),
        )
    )
    box = await sandbox.open(SessionInfo("limited", "agent"))
    shell = Kit(shell_kit(), box)
    try:
        spun = await shell("shell", command="while :; do :; done", timeout=60)
        assert spun == "killed by SIGXCPU\nstopped by the sandbox: the command reached its CPU time limit\n(no output)"
        cut = await shell("shell", command="head -c 65536 /dev/zero > big; echo carried on", timeout=60)
        assert cut.startswith("exit code: 0\nstopped by the sandbox: the command reached its file size limit\n")
        assert (await shell("shell", command="echo fine")) == "exit code: 0\nstdout:\nfine"
    finally:
        await sandbox.aclose()


def test_every_limit_has_words_for_the_model() -> None:
    """Each limit the sandbox reports reads as a phrase; an unknown one still shows its name."""
    for name in LIMIT_NAMES:
        text = format_result(ExecResult(exit_code=None, signal=9, limit=name), 10, 1000)
        assert text.startswith("killed by SIGKILL\nstopped by the sandbox: the command reached ")
    assert "its gpu limit" in format_result(ExecResult(exit_code=1, limit="gpu"), 10, 1000)
