"""Module attributes imported on first use, for package entry modules that must stay light.

Every command imports every installed plugin's entry module to list it, so an entry
module that imports its implementation (an SDK, a database driver) makes every command
slow. ``lazy_exports`` gives such a module the ``__getattr__`` and ``__dir__`` that load
each public name from its submodule when it is first used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    module: str, where: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for the module named ``module``: ``where`` maps each
    lazily loaded name to the (relative) submodule defining it. A loaded name is kept in
    the module, so it costs one lookup once. Use::

        __getattr__, __dir__ = lazy_exports(__name__, {"PostgresStorage": "._storage"})
    """
    namespace = sys.modules[module].__dict__

    def __getattr__(name: str) -> Any:
        source = where.get(name)
        if source is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source, module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *namespace.get("__all__", ()), *where})

    return __getattr__, __dir__
