"""docs/hooks.md gives every event hook with the parameters hookspecs.py declares."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from harness_kernel import hookspecs

DOC = Path(__file__).parents[2] / "docs" / "hooks.md"
SIGNATURE = re.compile(r"^`(\w+)\(([^)]*)\)`", re.MULTILINE)


def _specs() -> dict[str, list[str]]:
    return {
        name: list(inspect.signature(function).parameters)
        for name, function in vars(hookspecs).items()
        if inspect.isfunction(function)
        and hasattr(function, "harness_kernel_spec")
        and not name.startswith("harness_kernel_")  # registration hooks: writing-plugins.md
    }


def test_every_hook_is_documented_with_its_parameters() -> None:
    documented = {
        name: [p.strip() for p in params.split(",") if p.strip()]
        for name, params in SIGNATURE.findall(DOC.read_text())
    }
    specs = _specs()
    assert specs, "no hook specifications found"
    for name, parameters in specs.items():
        assert name in documented, f"docs/hooks.md does not document {name}"
        assert documented[name] == parameters, name
