"""What a new user meets in the first hour of the CLI (issue K14): a hint that pastes,
each warning and each failure said once, a `/help` that helps."""

from __future__ import annotations

import shlex
import subprocess
import textwrap
from pathlib import Path

from tests.cli.support import child_env, command, run_cli, write_deployment

BROKEN_PLUGIN = textwrap.dedent(
    '''
    """A hook module whose tool hook fails: the plugin is skipped with a warning."""

    from harness_kernel import hookimpl


    @hookimpl
    def harness_kernel_tools(register):
        raise RuntimeError("boom")
    '''
)


def test_the_approval_hint_pastes_as_printed_from_anywhere(tmp_path: Path) -> None:
    """`send` run with a relative `--config` prints an `approve:` command that works
    when pasted as it is, in another directory: it carries the configuration."""
    config = write_deployment(tmp_path / "deploy", module=f"hint_agent_{tmp_path.name}")
    parked = run_cli("--config", config.name, "send", "s1", "note buy milk", cwd=config.parent)
    assert parked.returncode == 0, parked.stderr
    [hint] = [line for line in parked.stderr.splitlines() if line.strip().startswith("approve: ")]
    argv = shlex.split(hint.strip().removeprefix("approve: "))
    assert argv[0] == "harness-kernel"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pasted = subprocess.run([*command(), *argv[1:]], capture_output=True, text=True, cwd=elsewhere,
                            env=child_env(), timeout=120, check=False)
    assert pasted.returncode == 0, pasted.stderr
    assert "tool said: wrote 8 characters" in pasted.stdout


def test_a_plugin_warning_is_printed_once(tmp_path: Path) -> None:
    """A plugin that fails while registering is reported once per command, though the
    configuration is checked and then the store opened."""
    config = write_deployment(tmp_path / "deploy", module=f"warn_agent_{tmp_path.name}",
                              extra='\n[[plugins]]\nmodule = "broken_hooks"\n')
    (config.parent / "broken_hooks.py").write_text(BROKEN_PLUGIN)
    sent = run_cli("send", "s1", "hi", config=config)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout == "You said: hi\n"
    assert sent.stderr.count("plugin 'broken_hooks' failed in harness_kernel_tools: boom") == 1


def test_a_failed_send_says_run_failed_once(tmp_path: Path) -> None:
    """A failed run is reported in one line on stderr, not once as it happens and again
    in the summary."""
    config = write_deployment(tmp_path / "deploy", module=f"fail_agent_{tmp_path.name}")
    failed = run_cli("send", "s1", "fail", config=config)
    assert failed.returncode == 1
    assert failed.stderr.count("run failed") == 1
    assert "run failed: the scripted model refused (provider.bad_request)" in failed.stderr


def test_help_in_the_chat_lists_the_commands_instead_of_repeating_the_banner(tmp_path: Path) -> None:
    """`/help` answers with the chat's commands and keys; the banner's one line is
    printed once, at the start."""
    config = write_deployment(tmp_path / "deploy", module=f"help_agent_{tmp_path.name}")
    chat = run_cli("chat", "s1", config=config, input="/help\n/exit\n")
    assert chat.returncode == 0, chat.stderr
    banner = chat.stdout.splitlines()[1]
    assert chat.stdout.count(banner) == 1
    helped = chat.stdout.partition("you> /help\n")[2].partition("you> ")[0]
    for word in ("/exit", "/quit", "Ctrl-C", "Ctrl-D", "always"):
        assert word in helped
