"""The README's example is examples/readme.py, and it does what the README says: a
scripted model calls a tool, the approval is asked and given, the tool writes inside a
workspace under a temporary directory, and the answer streams."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "readme.py"
TIMEOUT = 120  # a guard against a hanging example, not a speed assertion


def _readme_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    [block] = re.findall(r"^```python\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    return block


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    work = tmp_path / "cwd"
    work.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    return subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        cwd=work, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )


def test_the_readme_shows_the_example_file() -> None:
    """The README's one Python block is examples/readme.py, word for word."""
    assert _readme_block() == EXAMPLE.read_text(encoding="utf-8")


def test_the_readme_example_asks_approval_runs_the_tool_in_a_temp_workspace(tmp_path: Path) -> None:
    """Run as a user would: the streamed text, the approval, the tool's result in the
    final answer, and the note written under the temp dir, nowhere else."""
    done = _run(EXAMPLE.read_text(encoding="utf-8"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "Noting that. ",
        "[approve write_note({'path': 'todo.txt', 'text': 'water the plants'})? yes]",
        "Done: I wrote todo.txt.",
    ]
    assert done.stderr == ""
    [note] = (tmp_path / "tmp").rglob("todo.txt")
    assert note.read_text(encoding="utf-8") == "water the plants"
    assert list((tmp_path / "cwd").iterdir()) == []


def test_a_mistyped_model_in_the_readme_example_fails_loudly(tmp_path: Path) -> None:
    """A typo in the scripted model's name is a ConfigError naming what is served, with
    a non-zero exit: not a silent failed run with empty text."""
    code = EXAMPLE.read_text(encoding="utf-8").replace('"scripted/notes"', '"scripted/note"')
    done = _run(code, tmp_path)
    assert done.returncode != 0
    assert "ConfigError: default_model: provider 'scripted' does not serve model 'note'" in done.stderr
    assert done.stdout == ""
