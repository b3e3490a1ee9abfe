"""``harness-kernel plugins`` and ``config check`` start the configured MCP servers (real
stdio subprocesses) and list each server's tools."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

from tests.cli.support import child_env, run_cli, write_deployment
from tests.mcp.conftest import HERE

SERVER = str(HERE / "server_app.py")
SERVERS = textwrap.dedent(
    f"""
    [[mcp_servers]]
    name = "calc"
    command = {sys.executable!r}
    args = [{SERVER!r}, "stdio"]
    include = ["add", "pid"]
    tool_approvals = {{ add = "auto" }}
    """
)
BROKEN = textwrap.dedent(
    """
    [[mcp_servers]]
    name = "ghost"
    command = "/nonexistent/mcp-server"
    connect_timeout = 5.0
    restart = { max_attempts = 0 }
    """
)
ENV = child_env("sqlite,logging,mcp")


def test_plugins_lists_each_server_and_its_tools(tmp_path: Path) -> None:
    config = write_deployment(tmp_path / "d", module="mcp_cli_agent", extra=SERVERS)
    listed = run_cli("plugins", config=config, env=ENV)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.split("TOOL KIT", 1)[1].splitlines()[1:]]
    assert sorted(rows) == [["mcp", "mcp:calc", "calc__add", "auto"], ["mcp", "mcp:calc", "calc__pid", "ask"]]
    as_json = run_cli("plugins", "--json", config=config, env=ENV)
    tools = [obj for obj in map(json.loads, as_json.stdout.splitlines()) if obj["kind"] == "tool"]
    assert {t["name"] for t in tools} == {"calc__add", "calc__pid"}
    assert {t["group"] for t in tools} == {"mcp:calc"}
    skipped = run_cli("plugins", "--no-tools", config=config, env=ENV)
    assert "TOOL KIT" not in skipped.stdout


def test_config_check_lists_the_tools_and_fails_on_a_server_that_cannot_start(tmp_path: Path) -> None:
    good = write_deployment(tmp_path / "good", module="mcp_cli_good", extra=SERVERS)
    checked = run_cli("config", "check", config=good, env=ENV)
    assert checked.returncode == 0, checked.stderr
    assert "[[mcp_servers]]" in checked.stdout
    assert "calc__add" in checked.stderr
    assert "configuration is valid" in checked.stderr

    bad = write_deployment(tmp_path / "bad", module="mcp_cli_bad", extra=BROKEN)
    failed = run_cli("config", "check", config=bad, env=ENV)
    assert failed.returncode == 2
    assert "tool kit 'mcp': server 'ghost' could not be started" in failed.stderr
    offline = run_cli("config", "check", "--no-tools", config=bad, env=ENV)
    assert offline.returncode == 0, offline.stderr
