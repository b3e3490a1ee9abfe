"""``lazy_exports``: a package's public names imported from their submodule on first use."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def package(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "lazypkg"
    root.mkdir()
    (root / "__init__.py").write_text(
        textwrap.dedent(
            """
            from harness_kernel import lazy_exports

            __all__ = ["Heavy", "light"]
            light = 1
            __getattr__, __dir__ = lazy_exports(__name__, {"Heavy": "._heavy"})
            """
        )
    )
    (root / "_heavy.py").write_text("class Heavy:\n    pass\n")
    sys.path.insert(0, str(tmp_path))
    try:
        yield "lazypkg"
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == "lazypkg" or n.startswith("lazypkg.")]:
            del sys.modules[name]


def test_a_lazy_name_loads_its_submodule_on_first_use_only(package: str) -> None:
    module = __import__(package)
    assert f"{package}._heavy" not in sys.modules
    assert {"Heavy", "light"} <= set(dir(module))
    heavy = module.Heavy
    assert f"{package}._heavy" in sys.modules
    assert heavy is sys.modules[f"{package}._heavy"].Heavy
    assert vars(module)["Heavy"] is heavy  # kept: later uses are plain lookups


def test_an_unknown_name_is_an_attribute_error_naming_the_module(package: str) -> None:
    module = __import__(package)
    with pytest.raises(AttributeError, match="module 'lazypkg' has no attribute 'Missing'"):
        module.Missing  # noqa: B018
