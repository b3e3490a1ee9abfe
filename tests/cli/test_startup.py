"""The console script imports only light modules before it has parsed the arguments:
trio, the store and the commands wait until a command needs them (issue K14: `--help`
and `plugins` must start fast). Timing is a bench figure (bench/w8_cli_startup.py);
this pins the import structure that makes it possible."""

from __future__ import annotations

import ast
from pathlib import Path

import harness_kernel

PACKAGE = Path(harness_kernel.__file__).parent
LIGHT = {"__future__", "argparse", "collections.abc", "logging", "math", "os", "re", "sys", "typing"}
"""Standard-library modules cheap to import."""
EAGER = {
    "cli/__init__.py": {"harness_kernel._toml", "harness_kernel.errors", "harness_kernel.cli._exit"},
    "cli/_exit.py": set(),
    "_toml.py": {"harness_kernel._tables", "harness_kernel.errors"},
    "_tables.py": {"difflib"},
    "errors.py": set(),
}
"""Each module the console script loads before parsing, and what else it may import."""


def _top_level_imports(path: Path) -> set[str]:
    package = "harness_kernel" + "".join(f".{p}" for p in path.relative_to(PACKAGE).parent.parts)
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
    return found


def test_the_console_script_imports_nothing_heavy_before_parsing() -> None:
    """`harness_kernel.cli` and what it imports at the top are standard-library modules
    and the few light kernel modules listed, not trio, attrs, the store or the commands."""
    for name, allowed in EAGER.items():
        extra = _top_level_imports(PACKAGE / name) - LIGHT - allowed
        assert not extra, f"{name} imports {sorted(extra)} at the top"
