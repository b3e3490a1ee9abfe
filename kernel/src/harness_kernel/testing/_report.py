"""A small check runner shared by the conformance suites (no pytest needed)."""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

__all__ = ["Checks", "ConformanceFailure"]


class ConformanceFailure(AssertionError):
    """One or more conformance checks failed; ``failures`` maps check name to reason."""

    def __init__(self, suite: str, failures: dict[str, str]) -> None:
        lines = "\n".join(f"  - {name}: {reason}" for name, reason in failures.items())
        super().__init__(f"{len(failures)} {suite} conformance check(s) failed:\n{lines}")
        self.failures = failures


class _CheckFailed(AssertionError):
    pass


class Checks:
    """Runs named cases; a failing case is recorded and the next one still runs."""

    def __init__(self, suite: str) -> None:
        self.suite = suite
        self.passed: list[str] = []
        self.failed: dict[str, str] = {}

    @asynccontextmanager
    async def case(self, name: str) -> AsyncIterator[None]:
        try:
            yield
        except _CheckFailed as exc:
            self.failed[name] = str(exc)
        except Exception as exc:
            frames = traceback.extract_tb(exc.__traceback__)
            where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
            self.failed[name] = f"raised {type(exc).__name__}: {exc}{where}"
        else:
            self.passed.append(name)

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            raise _CheckFailed(message)

    def equal(self, actual: Any, expected: Any, what: str) -> None:
        if actual != expected:
            raise _CheckFailed(f"{what}: expected {expected!r:.300}, got {actual!r:.300}")

    async def raises(self, kind: type[BaseException], awaitable: Awaitable[Any]) -> BaseException:
        try:
            await awaitable
        except kind as exc:
            return exc
        except Exception as exc:
            raise _CheckFailed(
                f"expected {kind.__name__}, got {type(exc).__name__}: {exc}"
            ) from exc
        raise _CheckFailed(f"expected {kind.__name__}, nothing was raised")

    def finish(self) -> list[str]:
        if self.failed:
            raise ConformanceFailure(self.suite, self.failed)
        return self.passed
