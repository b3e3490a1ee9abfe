"""The quickstart that `make demo` runs works, end to end, as a user would see it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_quickstart_streams_calls_a_tool_with_approval_and_resumes() -> None:
    """The demo says its model is scripted, prints the streamed answer, the approved tool
    call and its result, and the session resumed by a new store (not "a second process":
    it is the same one)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart" / "quickstart.py")],
        capture_output=True, text=True, timeout=120, check=True,
    )
    out = done.stdout
    assert "Hello! I keep notes for you." in out
    assert "the model is scripted (no LLM, no API key)" in out
    assert "[approval needed: save_note(" in out
    assert "[tool save_note ran: saved note 'reminder' (29 characters)]" in out
    assert "process ==" not in out
    assert "a new store on the same storage (same process" in out
    assert "Done: saved note 'reminder' (29 characters)." in out
    assert "resumed session 'demo': 6 messages, 2 runs, last run completed" in out
    assert out.rstrip().endswith("You have 1 note(s): saved note 'reminder' (29 characters).")
    assert done.stderr == ""


def test_the_config_demo_says_the_model_is_scripted_and_points_to_no_deleted_file() -> None:
    """Through the CLI: the scripted model is named as such, the approval is asked and
    given, and the log summary names no path in the folder the demo removes."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart" / "run_config_demo.py")],
        capture_output=True, text=True, timeout=120, check=True,
    )
    out = done.stdout
    assert "a scripted stand-in (notes_agent.py), no LLM, no API key" in out
    assert "[approved]" in out
    assert "You have 1 note(s): saved note 'reminder' (29 characters)." in out
    [summary] = [line for line in out.splitlines() if "the jsonl sink wrote" in line]
    assert "harness.jsonl" not in summary
    assert "--keep DIR" in summary


def test_the_config_demo_keeps_its_log_where_it_says_with_keep(tmp_path: Path) -> None:
    """With ``--keep DIR`` the summary names the log file, and the file is there."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart" / "run_config_demo.py"), "--keep", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=True,
    )
    log = tmp_path / "logs" / "harness.jsonl"
    assert f"in {log})" in done.stdout
    assert log.read_text(encoding="utf-8").count("\n") >= 1
