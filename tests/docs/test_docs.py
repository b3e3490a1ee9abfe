"""The documentation's code runs, so the docs cannot rot.

Every ```python block of a top-level page in docs/ is a complete program: it is written
to a file and run in a fresh interpreter (the repository's), which must exit with 0.
Markers on the line before a block change that:

- ``<!-- not-run -->``: a fragment shown for reading (a packaging layout, a signature);
  keep these few.
- ``<!-- run-with-pytest -->``: a test module; it is run with pytest, which must pass.

Subfolders of docs/ belong to the plugin guides and are not collected here. Entry-point
autoloading is off in the subprocesses so the examples see only the kernel's builtins
(what a fresh install has), whatever else happens to be installed in the environment.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
# A fence may be indented (inside a list item); its body is dedented before it runs.
FENCE = re.compile(r"^([ \t]*)```python[ \t]*\n(.*?)^\1```[ \t]*$", re.MULTILINE | re.DOTALL)
NOT_RUN = "<!-- not-run -->"
WITH_PYTEST = "<!-- run-with-pytest -->"
TIMEOUT = 120  # a guard against a hanging example, not a speed assertion


@attrs.frozen
class Block:
    page: str
    line: int
    code: str
    how: str  # "python", "pytest" or "skip"

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _marker_before(text: str, start: int) -> str:
    lines = text[:start].rstrip("\n").splitlines()
    previous = next((line.strip() for line in reversed(lines) if line.strip()), "")
    return previous


def collect_blocks() -> list[Block]:
    blocks = []
    for path in sorted(DOCS.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            marker = _marker_before(text, match.start())
            how = {NOT_RUN: "skip", WITH_PYTEST: "pytest"}.get(marker, "python")
            line = text.count("\n", 0, match.start()) + 1
            blocks.append(Block(path.name, line, textwrap.dedent(match.group(2)), how))
    return blocks


BLOCKS = collect_blocks()
RUNNABLE = [b for b in BLOCKS if b.how != "skip"]


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["HARNESS_KERNEL_DISABLE_AUTOLOAD"] = "1"
    env.pop("HARNESS_KERNEL_PLUGINS", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_the_example_runs(block: Block, tmp_path: Path) -> None:
    """The block runs to completion (exit status 0) on a fresh interpreter, warnings as errors."""
    if block.how == "pytest":
        script = tmp_path / "test_example.py"
        command = [sys.executable, "-W", "error", "-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)]
    else:
        script = tmp_path / "example.py"
        command = [sys.executable, "-W", "error", str(script)]
    script.write_text(block.code, encoding="utf-8")
    done = subprocess.run(
        command, cwd=tmp_path, env=_environment(), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, (
        f"the example at docs/{block.id} failed (exit {done.returncode})\n"
        f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )


def test_the_pages_have_runnable_examples_and_few_fragments() -> None:
    """Every top-level page with code runs most of it; fragments stay the exception."""
    assert RUNNABLE, "no runnable examples found in docs/"
    skipped = [b.id for b in BLOCKS if b.how == "skip"]
    assert len(skipped) <= len(RUNNABLE) // 3, f"too many not-run fragments: {skipped}"


LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_links_between_top_level_pages_resolve(page: str) -> None:
    """A relative link from one top-level page to another points at a page that exists."""
    text = (DOCS / page).read_text(encoding="utf-8")
    missing = [
        target for target in LINK.findall(text)
        if "://" not in target and "/" not in target and not (DOCS / target).exists()
    ]
    assert missing == [], f"docs/{page} links to missing pages: {missing}"


def test_the_packaging_example_passes_once_its_distribution_is_installed(tmp_path: Path) -> None:
    """writing-plugins.md's packaging example still passes its own assertions after the
    distribution it describes is installed: its entry point autoloads the module while
    the example hands the same module to the store, and "weather" must load once.
    Installing is simulated by a dist-info folder on the path, with autoloading on."""
    text = (DOCS / "writing-plugins.md").read_text(encoding="utf-8")
    [code] = [b.code for b in BLOCKS if b.page == "writing-plugins.md" and "harness_kernel_weather:" in b.code]
    assert 'weather = "harness_kernel_weather"' in text
    (tmp_path / "harness_kernel_weather.py").write_text(code, encoding="utf-8")
    info = tmp_path / "harness_kernel_weather-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: harness-kernel-weather\nVersion: 0.1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[harness_kernel]\nweather = harness_kernel_weather\n", encoding="utf-8"
    )
    env = _environment()
    del env["HARNESS_KERNEL_DISABLE_AUTOLOAD"]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    probe = subprocess.run(
        [sys.executable, "-c", "from harness_kernel import PluginRegistry as R; "
         "print([p.status for p in R().listing() if p.name == 'weather'])"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert probe.stdout.strip() == "['loaded']", probe.stderr  # the entry point is seen
    done = subprocess.run(
        [sys.executable, "-W", "error", "harness_kernel_weather.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert done.returncode == 0, f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
