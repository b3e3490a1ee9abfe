"""docs/service.md's curl tour runs as written against ``serve`` on the quickstart
config, so the page cannot drift from the service; the README names the command."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from .conftest import KEYS, TIMEOUT, Server, digest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "service.md"
TOUR = re.compile(r"<!-- tests/server: curl tour -->\n```sh\n(.*?)^```", re.DOTALL | re.MULTILINE)


def test_the_curl_tour_runs_against_the_quickstart(tmp_path: Path) -> None:
    """Every command of the tour succeeds (curl -f fails on any 4xx or 5xx)."""
    [script] = TOUR.findall(PAGE.read_text(encoding="utf-8"))
    assert shutil.which("curl"), "the tour needs curl (Debian package curl)"
    folder = tmp_path / "quickstart"
    shutil.copytree(ROOT / "examples" / "quickstart", folder, ignore=shutil.ignore_patterns(".harness"))
    config = folder / "harness.toml"
    with config.open("a", encoding="utf-8") as file:
        file.write(f'\n[server]\n\n[[server.keys]]\nprincipal = "docs"\ntenant = "acme"\nhash = "{digest(KEYS["alice"])}"\n')
    running = Server(config, env={"HARNESS_DATA": str(tmp_path / "data")}).start()
    try:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env={**os.environ, "HK": running.url, "KEY": KEYS["alice"]},
            capture_output=True, text=True, timeout=TIMEOUT,
        )
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{running.logs}"
        assert '"status":"completed"' in done.stdout
        assert "event: run.finished" in done.stdout
    finally:
        running.kill()


def test_the_readme_names_serve() -> None:
    assert "harness-kernel serve" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_serve_runs_the_quickstart_config_as_it_is(tmp_path: Path) -> None:
    """The quickstart's harness.toml, unchanged, serves on loopback without keys: the
    chat page, and a session that answers."""
    folder = tmp_path / "quickstart"
    shutil.copytree(ROOT / "examples" / "quickstart", folder, ignore=shutil.ignore_patterns(".harness"))
    running = Server(folder / "harness.toml", env={"HARNESS_DATA": str(tmp_path / "data")}).start()
    try:
        client = running.client(None)
        page = client.get("/")
        assert page.status_code == 200
        assert "<title>harness-kernel chat</title>" in page.text
        session = client.post("/v1/sessions", json={}).json()["id"]
        result = client.post(f"/v1/sessions/{session}/messages", json={"text": "hello"}).json()
        assert result["status"] == "completed"
        assert result["text"]
    finally:
        running.kill()
