"""The quickstart that `make demo` runs works, end to end, as a user would see it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_quickstart_streams_calls_a_tool_with_approval_and_resumes() -> None:
    """The demo prints the streamed answer, the approved tool call and the resumed session."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart" / "quickstart.py")],
        capture_output=True, text=True, timeout=120, check=True,
    )
    out = done.stdout
    assert "Hello! I keep notes for you." in out
    assert "[approval needed: save_note(" in out
    assert "Done: saved note 'reminder' (29 characters)." in out
    assert "resumed session 'demo': 6 messages, 2 runs, last run completed" in out
    assert out.rstrip().endswith("You have 1 note(s): saved note 'reminder' (29 characters).")
    assert done.stderr == ""
