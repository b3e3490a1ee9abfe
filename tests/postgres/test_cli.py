"""The quickstart agent runs from a harness.toml naming the postgres plugin, through the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from harness_kernel_postgres import PostgresOptions, build

REPO = Path(__file__).resolve().parents[2]
CONSOLE = Path(sys.executable).parent / "harness-kernel"

CONFIG = """\
agent = "notes_agent:agent"
default_model = "demo/notes"
storage = {{ plugin = "postgres", options = {{ dsn = "${{DATABASE_URL}}", schema = "{schema}" }} }}

[[plugins]]
module = "notes_agent"

[[providers]]
plugin = "demo"
"""


def _cli(folder: Path, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": dsn, "NO_COLOR": "1"}
    return subprocess.run(
        [str(CONSOLE), "--config", str(folder / "harness.toml"), *args],
        cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


async def test_send_through_the_cli_stores_the_session_in_postgres(
    pg_options: dict[str, Any], tmp_path: Path
) -> None:
    """`harness-kernel send` answers twice in two processes; the session, with both
    turns, is in the schema the config names, and `config check` masks the DSN."""
    folder = tmp_path / "deploy"
    folder.mkdir()
    shutil.copy(REPO / "examples" / "quickstart" / "notes_agent.py", folder)
    (folder / "harness.toml").write_text(CONFIG.format(schema=pg_options["schema"]))
    dsn = pg_options["dsn"].replace("postgres@", "postgres:hunter2secret@")
    first = await trio.to_thread.run_sync(lambda: _cli(folder, dsn, "send", "cli-1", "hello"))
    assert first.returncode == 0, first.stderr
    second = await trio.to_thread.run_sync(lambda: _cli(folder, dsn, "send", "cli-1", "and again"))
    assert second.returncode == 0, second.stderr
    assert first.stdout.strip()
    assert second.stdout.strip()
    checked = await trio.to_thread.run_sync(lambda: _cli(folder, dsn, "config", "check"))
    assert checked.returncode == 0, checked.stderr
    assert "hunter2secret" not in checked.stdout + checked.stderr

    storage = build(PostgresOptions(**pg_options))
    try:
        events = await storage.read("cli-1")
    finally:
        await storage.aclose()
    users = [e.payload.message.text for e in events if e.type == "message.added" and e.payload.message.role == "user"]
    assert users == ["hello", "and again"]
