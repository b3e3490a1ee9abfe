"""The shell kit on a real workspace: how a command's outcome reads to the model."""

from __future__ import annotations

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
