"""The public facade: complete, sorted, and free of private names."""

from __future__ import annotations

import harness_kernel
from harness_kernel import contracts, errors, events, http, storage, testing


def test_all_is_sorted_and_complete() -> None:
    """Every name in __all__ exists, the lists are sorted, and nothing private leaks."""
    for module in (harness_kernel, contracts, errors, events, http, storage, testing):
        names = module.__all__
        assert names == sorted(names), module.__name__
        for name in names:
            assert not name.startswith("_")
            assert getattr(module, name) is not None


def test_every_error_is_reachable_from_the_errors_module() -> None:
    """All HarnessError subclasses defined by the kernel are exported from errors."""
    exported = {getattr(errors, name) for name in errors.__all__}
    stack = [errors.HarnessError]
    while stack:
        cls = stack.pop()
        if cls.__module__.split(".")[0] == "harness_kernel":  # plugins may subclass too
            assert cls in exported, cls.__name__
        stack.extend(cls.__subclasses__())
