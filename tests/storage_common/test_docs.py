"""The storage pages' Python examples run, so they cannot rot.

Every ```python block in docs/storage/ is a complete program, run in a fresh interpreter
in an empty directory (plugins found through their entry points), unless the line before
it is ``<!-- not-run -->`` (examples that need a real S3 bucket, test-module fragments).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "storage"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            before = text[: match.start()].rstrip("\n").splitlines()
            if before and before[-1].strip() == "<!-- not-run -->":
                continue
            line = text[: match.start()].count("\n") + 1
            found.append((f"{page.name}:{line}", match.group(1)))
    return found


@pytest.mark.parametrize(("where", "code"), _blocks(), ids=[w for w, _ in _blocks()])
def test_the_example_runs(where: str, code: str, tmp_path: Path) -> None:
    """The example exits with 0."""
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{where} failed:\n{done.stderr[-3000:]}"
