"""docs/logging.md lists every event the kernel logs, and nothing it does not."""

from __future__ import annotations

import re
from pathlib import Path

import harness_kernel

KERNEL = Path(harness_kernel.__file__).parent
DOC = Path(__file__).parents[2] / "docs" / "logging.md"
CALL = re.compile(r'\.(debug|info|warning|error|critical)\(\s*"([a-z_]+)"(?:\s+if\s[^\n]+?\selse\s+"([a-z_]+)")?')
ROW = re.compile(r"^\| `([a-z_]+)` \| (debug|info|warning|error|critical) \|", re.M)


def logged_by_the_kernel() -> set[tuple[str, str]]:
    found = set()
    for path in KERNEL.rglob("*.py"):
        for match in CALL.finditer(path.read_text()):
            found.update((name, match.group(1)) for name in match.groups()[1:] if name)
    return found


def test_the_logging_table_matches_the_code() -> None:
    """Each (event, level) the kernel logs has its row, and each row is logged."""
    section = DOC.read_text().split("## What the kernel logs", 1)[1].split("\n## ", 1)[0]
    documented = {(m.group(1), m.group(2)) for m in ROW.finditer(section)}
    assert logged_by_the_kernel() == documented


def test_the_scan_sees_conditional_event_names() -> None:
    text = 'log.error(\n    "run_failed" if status == "failed" else "run_aborted", run_id=1)'
    [match] = CALL.finditer(text)
    assert match.groups()[1:] == ("run_failed", "run_aborted")
