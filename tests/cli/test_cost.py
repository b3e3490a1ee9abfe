"""Cost and budgets from ``harness.toml``, as the CLI shows them."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.cli.support import run_cli, write_deployment

PRICED = textwrap.dedent(
    """
    [prices."testmodel/main"]
    input = 3000.0
    output = 15000.0

    [budget]
    max_session_cost = 1.0
    """
)


def test_send_sessions_and_runs_show_what_the_runs_cost(tmp_path: Path) -> None:
    """With prices configured, `send` reports the run's tokens and cost, and `sessions
    list`, `sessions show` and `runs` show the cost next to the tokens."""
    config = write_deployment(tmp_path / "d", module="cli_cost_agent", extra=PRICED)
    sent = run_cli("send", "s1", "hello there", "--json", config=config)
    assert sent.returncode == 0, sent.stderr
    usage = json.loads(sent.stdout)["usage"]
    expected = (usage["input_tokens"] * 3000 + usage["output_tokens"] * 15000) / 1_000_000
    assert usage["cost"] == expected

    plain = run_cli("send", "s2", "hi", config=config)
    assert plain.returncode == 0
    assert "usage: " in plain.stderr
    assert " tokens (" in plain.stderr
    assert ", $0." in plain.stderr

    listing = run_cli("sessions", "list", config=config)
    header, *rows = listing.stdout.splitlines()
    assert header.split()[6:8] == ["TOKENS", "COST"]
    s1 = next(row.split() for row in rows if row.startswith("s1 "))
    assert s1[7] == f"${expected:.4f}"

    shown = run_cli("sessions", "show", "s1", config=config)
    assert f"tokens ({usage['input_tokens']} in / {usage['output_tokens']} out), ${expected:.4f}" in shown.stdout
    runs = run_cli("runs", "s1", config=config)
    assert runs.stdout.splitlines()[0].split()[6:8] == ["TOKENS", "COST"]
    assert f"${expected:.4f}" in runs.stdout.splitlines()[1]


def test_a_session_over_its_budget_fails_the_run_with_its_code(tmp_path: Path) -> None:
    """`send` on a session that used up its cost budget exits 1 naming budget.exceeded."""
    tight = PRICED.replace("max_session_cost = 1.0", "max_session_cost = 0.000001")
    config = write_deployment(tmp_path / "d", module="cli_budget_agent", extra=tight)
    assert run_cli("send", "s1", "hello", config=config).returncode == 0
    refused = run_cli("send", "s1", "again", config=config)
    assert refused.returncode == 1
    assert "(budget.exceeded)" in refused.stderr
    assert "max_session_cost" in refused.stderr


def test_config_check_reports_bad_prices_by_path(tmp_path: Path) -> None:
    """A price that is not a number, or a cost budget for an unpriced model: exit 2,
    each problem with its path."""
    bad = textwrap.dedent(
        """
        [prices."testmodel/main"]
        input = "cheap"
        output = 1.0

        [budget]
        max_run_cost = 1.0
        """
    )
    config = write_deployment(tmp_path / "d", module="cli_badprice_agent", extra=bad)
    checked = run_cli("config", "check", config=config)
    assert checked.returncode == 2
    assert 'prices."testmodel/main".input: expected float, got str' in checked.stderr
    assert "budget.max_run_cost: default_model 'testmodel/main' has no price" in checked.stderr


def test_chat_shows_each_runs_usage_and_cost(tmp_path: Path) -> None:
    """In the chat, with prices configured, each answer is followed by its usage line."""
    from tests.cli.support import child_env, command
    from tests.cli.test_chat import CTRL_D, Terminal

    config = write_deployment(tmp_path / "d", module="cli_chat_cost_agent", extra=PRICED)
    term = Terminal([*command(), "--config", str(config), "chat", "s1"], child_env(TERM="dumb"))
    try:
        term.expect("you> ")
        term.type(b"hello\n")
        shown = term.expect("you> ")
        assert "tester> You said: hello" in shown
        assert "[usage] " in shown
        assert " tokens (" in shown
        assert ", $0." in shown
        term.type(CTRL_D)
        assert term.wait() == 0
    finally:
        if term.process.poll() is None:
            term.process.kill()
            term.process.wait()
