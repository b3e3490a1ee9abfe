"""The harness-kernel commands, run as subprocesses against a temporary deployment.

Sessions that a test only reads are created in-process through the same configuration
(``seed``); the command under test always runs in its own process with real output.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest
import trio

from tests.cli.support import child_env, command, run_cli, run_parallel, seed, write_deployment


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_deployment(tmp_path / "deploy", module=f"cli_agent_{tmp_path.name}")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deployment with sessions alpha/gamma (team=red), beta (team=blue) and s1 (a
    conversation with a tool call); read-only tests share it."""
    directory = tmp_path_factory.mktemp("seeded")
    config = write_deployment(directory, module="cli_agent_seeded")
    trio.run(seed, config, [
        ("alpha", "hi", {"team": "red"}),
        ("beta", "hi", {"team": "blue"}),
        ("gamma", "hi", {"team": "red"}),
        ("s1", "hello", {}),
        ("s1", "lookup tea", {}),
    ])
    return config


def test_send_prints_the_answer_and_json_prints_the_run_result(config: Path) -> None:
    """`send` prints the streamed answer on stdout and tool activity on stderr;
    `--json` prints the RunResult."""
    plain, as_json = run_parallel(("send", "s1", "lookup word"), ("send", "s2", "lookup trio", "--json"),
                                  config=config)
    assert (plain.returncode, plain.stdout) == (0, "tool said: definition of word\n")
    assert '[tool] lookup {"q": "word"}' in plain.stderr
    assert "[done] lookup: definition of word" in plain.stderr
    assert "Traceback" not in plain.stderr

    assert as_json.returncode == 0
    result = json.loads(as_json.stdout)
    assert result["session_id"] == "s2"
    assert (result["status"], result["text"]) == ("completed", "tool said: definition of trio")
    assert [c["name"] for c in result["tool_calls"]] == ["lookup"]


def test_a_failed_run_exits_1_with_the_sanitized_error(config: Path) -> None:
    """A run that fails exits with code 1 and says why, without a traceback."""
    failed = run_cli("send", "s1", "fail", config=config)
    assert failed.returncode == 1
    assert "run failed: the scripted model refused (provider.bad_request)" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_sessions_list_pages_with_a_cursor_and_filters_by_label(seeded: Path) -> None:
    """`sessions list` shows a table a page at a time, prints the cursor for the next
    page, and keeps only sessions whose labels all match."""
    first, red = run_parallel(("sessions", "list", "--limit", "3"),
                              ("sessions", "list", "--label", "team=red", "--json"), config=seeded)
    assert first.returncode == 0
    header, *rows = first.stdout.splitlines()
    assert header.split() == ["ID", "STATUS", "AGENT", "MODEL", "CREATED", "UPDATED", "TOKENS", "COST", "LABELS"]
    assert [r.split()[0] for r in rows] == ["s1", "gamma", "beta"]
    assert rows[1].split()[-1] == "team=red"
    cursor = re.search(r"--cursor (\S+)", first.stderr)
    assert cursor is not None

    second = run_cli("sessions", "list", "--limit", "3", "--cursor", cursor.group(1), config=seeded)
    assert [r.split()[0] for r in second.stdout.splitlines()[1:]] == ["alpha"]
    assert "--cursor" not in second.stderr

    page = json.loads(red.stdout)
    assert sorted(r["id"] for r in page["items"]) == ["alpha", "gamma"]
    assert page["next_cursor"] is None


def test_sessions_show_and_runs(seeded: Path) -> None:
    """`sessions show` prints the record and the history; `runs` one row per run."""
    shown, runs, missing = run_parallel(("sessions", "show", "s1"), ("runs", "s1", "--json"),
                                        ("runs", "nope"), config=seeded)
    assert shown.returncode == 0
    assert "session  s1" in shown.stdout
    assert "agent    tester" in shown.stdout
    history = [line for line in shown.stdout.splitlines() if "> " in line]
    assert history == [
        "user> hello",
        "assistant> You said: hello",
        "user> lookup tea",
        'assistant> [tool call] lookup {"q": "tea"}',
        "tool> [tool result] definition of tea",
        "assistant> tool said: definition of tea",
    ]
    summaries = [json.loads(line) for line in runs.stdout.splitlines()]
    assert [(r["status"], r["model"]) for r in summaries] == [("completed", "testmodel/main")] * 2
    assert (missing.returncode, missing.stderr) == (1, "error: session 'nope' not found\n")


def test_sessions_delete_removes_the_session(config: Path) -> None:
    """`sessions delete` removes a session; deleting or showing it again is exit 1."""
    trio.run(seed, config, [("s1", "hello", {})])
    assert run_cli("sessions", "delete", "s1", config=config).stdout == "deleted s1\n"
    again, show = run_parallel(("sessions", "delete", "s1"), ("sessions", "show", "s1"), config=config)
    assert (again.returncode, again.stderr) == (1, "error: session 's1' not found\n")
    assert (show.returncode, show.stderr) == (1, "error: session 's1' not found\n")


def test_export_then_import_into_a_fresh_store_gives_the_same_history(seeded: Path, tmp_path: Path) -> None:
    """`sessions export` writes JSON lines (a header with the record, then every event);
    `sessions import` into another deployment (its own database) reproduces the same
    history, event for event."""
    target = write_deployment(tmp_path / "b", module="cli_agent_import")
    dump = tmp_path / "s1.jsonl"
    exported, to_file, source_view = run_parallel(
        ("sessions", "export", "s1"), ("sessions", "export", "s1", "-o", str(dump)),
        ("sessions", "show", "s1", "--json"), config=seeded,
    )
    assert (exported.returncode, to_file.returncode) == (0, 0)
    lines = exported.stdout.splitlines()
    header = json.loads(lines[0])
    assert (header["format"], header["record"]["id"]) == ("harness-kernel-session", "s1")
    assert [json.loads(line)["seq"] for line in lines[1:]] == list(range(1, len(lines)))
    assert dump.read_text() == exported.stdout

    imported = run_cli("sessions", "import", str(dump), config=target)
    assert (imported.returncode, imported.stdout) == (0, f"imported s1: {len(lines) - 1} events\n")
    after, reexported = run_parallel(("sessions", "show", "s1", "--json"), ("sessions", "export", "s1"), config=target)
    assert json.loads(after.stdout)["messages"] == json.loads(source_view.stdout)["messages"]
    assert reexported.stdout.splitlines()[1:] == lines[1:]

    # From stdin under another id; importing an id that exists is refused.
    renamed = run_cli("sessions", "import", "-", "--id", "copy", config=target, input=exported.stdout)
    clash = run_cli("sessions", "import", str(dump), config=target)
    assert (renamed.returncode, renamed.stdout) == (0, f"imported copy: {len(lines) - 1} events\n")
    assert clash.returncode == 1
    assert "session 's1' already exists" in clash.stderr


def test_import_reports_a_broken_file_by_line(config: Path, tmp_path: Path) -> None:
    """A file that is not an export is refused with the line that is wrong, and nothing
    is stored."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "something-else"}\n')
    result = run_cli("sessions", "import", str(bad), config=config)
    assert (result.returncode, result.stderr) == (1, f"error: {bad}:1: not a harness-kernel session export\n")
    assert run_cli("sessions", "list", "--json", config=config).stdout == '{"items": [], "next_cursor": null}\n'


def test_approvals_list_approve_and_deny_across_processes(config: Path) -> None:
    """A run parked on an approval by `send` is listed by `approvals list` in a later
    process; `approvals approve` continues it to its end, `deny` sends the reason to
    the model."""
    first, _ = run_parallel(("send", "s1", "note buy milk"), ("send", "s2", "note call mom"), config=config)
    assert (first.returncode, first.stdout) == (0, "Writing it.\n")
    approval = re.search(r"waiting for approval (\S+): write_note", first.stderr)
    assert approval is not None

    listed = run_cli("approvals", "list", config=config)
    assert listed.returncode == 0
    rows = sorted(row.split()[:3] for row in listed.stdout.splitlines()[1:])
    assert rows[0] == ["s1", approval.group(1), "write_note"]
    assert rows[1][0::2] == ["s2", "write_note"]

    approved, denied, unknown = run_parallel(
        ("approvals", "approve", "s1", approval.group(1)),
        ("approvals", "deny", "s2", rows[1][1], "--reason", "not now"),
        ("approvals", "approve", "s1", "apr_nope"),
        config=config,
    )
    assert (approved.returncode, approved.stdout) == (0, "tool said: wrote 8 characters\n")
    assert denied.returncode == 0
    assert "not now" in denied.stdout
    assert (unknown.returncode, unknown.stderr) == (1, "error: no pending approval 'apr_nope' in session 's1'\n")
    assert run_cli("approvals", "list", config=config).stdout.splitlines()[1:] == []


def test_plugins_lists_every_component_with_its_status_and_load_errors(seeded: Path, tmp_path: Path) -> None:
    """`plugins` lists kind, name, distribution, version and status; an entry point
    that fails to import is listed as failed with its error, not a crash."""
    site = tmp_path / "site"
    info = site / "broken_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[harness_kernel]\nbroken = broken_plugin_module\n")
    (site / "broken_plugin_module.py").write_text("raise ImportError('needs a library that is not installed')\n")

    result = run_cli("plugins", config=seeded, env=child_env(plugins=None, PYTHONPATH=str(site)))
    assert result.returncode == 0
    rows = [line.split(None, 6) for line in result.stdout.splitlines()]
    assert rows[0] == ["KIND", "NAME", "PLUGIN", "DISTRIBUTION", "VERSION", "STATUS", "ERROR"]
    assert ["log_sink", "jsonl", "logging", "harness-kernel-logging", "0.1.0", "loaded"] in [r[:6] for r in rows]
    assert ["provider", "testmodel", "cli_agent_seeded", "-", "-", "loaded"] in [r[:6] for r in rows]
    [broken] = [r for r in rows if r[1] == "broken"]
    assert broken[3:6] == ["broken-plugin", "0.1", "failed"]
    assert broken[6] == "ImportError: needs a library that is not installed"


def test_config_check_prints_the_resolved_configuration_with_secrets_masked(tmp_path: Path) -> None:
    """`config check` prints the configuration with every default filled in and the
    secrets masked wherever they appear; the output is itself a valid configuration."""
    config = write_deployment(
        tmp_path / "deploy",
        extra=textwrap.dedent(
            """
            [[providers]]
            plugin = "keyed"
            options = { api_key = "${TEST_PROVIDER_KEY}" }

            [logging]
            redact = ["hunter2-password"]

            [[logging.sinks]]
            plugin = "jsonl"
            options = { path = "${CONFIG_DIR}/logs/hunter2-password.jsonl" }

            [error_policy]
            expose_internal_errors = true
            """
        ),
    )
    env = child_env(TEST_PROVIDER_KEY="sk-test-0123456789abcdef")
    result = run_cli("config", "check", config=config, env=env)
    assert result.returncode == 0, result.stderr
    assert "sk-test-0123456789abcdef" not in result.stdout
    assert "hunter2-password" not in result.stdout
    assert '[providers.options]\napi_key = "[redacted]"\nregion = "eu"\n' in result.stdout
    assert 'redact = ["[redacted]"]' in result.stdout
    assert f'path = "{config.parent}/logs/[redacted].jsonl"' in result.stdout
    assert "busy_timeout_ms = 5000" in result.stdout  # a default of the sqlite options
    assert "expose_internal_errors = true" in result.stdout
    assert result.stderr == f"{config}: configuration is valid\n"

    resolved = tmp_path / "deploy" / "resolved.toml"
    resolved.write_text(result.stdout)
    assert run_cli("config", "check", config=resolved, env=env).returncode == 0


def test_usage_errors_exit_2(config: Path) -> None:
    """Unknown commands, missing arguments, malformed options and unsafe session ids are
    usage errors (exit 2) with a message, never a traceback."""
    unknown, missing, bad_label, bad_id = run_parallel(
        ("frobnicate",), ("send", "s1"), ("sessions", "list", "--label", "novalue"), ("send", "../etc", "hi"),
        config=config,
    )
    assert (unknown.returncode, missing.returncode, bad_label.returncode, bad_id.returncode) == (2, 2, 2, 2)
    assert "expected KEY=VALUE, got 'novalue'" in bad_label.stderr
    assert bad_id.stderr.startswith("error: invalid session id '../etc'")
    assert not any("Traceback" in r.stderr for r in (unknown, missing, bad_label, bad_id))


def test_the_config_defaults_to_harness_toml_in_the_working_directory(config: Path) -> None:
    """Without --config the CLI reads ./harness.toml, or $HARNESS_KERNEL_CONFIG."""
    here = run_cli("send", "s1", "hi", cwd=config.parent)
    assert (here.returncode, here.stdout) == (0, "You said: hi\n")
    elsewhere = run_cli("send", "s1", "hi", cwd=config.parent.parent)
    assert elsewhere.returncode == 2
    missing = config.parent.parent / "harness.toml"
    assert elsewhere.stderr == f"harness.toml: 1 error\n  no such file: {missing} (pass --config PATH or create it)\n"
    by_env = run_cli("send", "s1", "hi", cwd=config.parent.parent, env=child_env(HARNESS_KERNEL_CONFIG=str(config)))
    assert (by_env.returncode, by_env.stdout) == (0, "You said: hi\n")


def test_ctrl_c_during_send_aborts_the_run_and_exits_1(config: Path) -> None:
    """SIGINT while `send` streams aborts the run: the partial answer is kept, the run
    is recorded as aborted, and the command exits 1 after closing the store."""
    process = subprocess.Popen([*command(), "--config", str(config), "send", "s1", "slow"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
    assert process.stdout is not None
    assert process.stdout.read(len(b"thinking")) == b"thinking"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert stderr.decode().endswith("interrupted: the run was aborted\n")
    runs = [json.loads(line) for line in run_cli("runs", "s1", "--json", config=config).stdout.splitlines()]
    assert [r["status"] for r in runs] == ["aborted"]
