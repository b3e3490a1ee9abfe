"""Fail at the first call, with a way out, when the trio API is used outside trio.

Without this check, opening a store from asyncio (a FastAPI lifespan under uvicorn) or
from a coroutine nobody runs under trio fails deep inside trio with an
``AttributeError`` about its run context.
"""

from __future__ import annotations

import asyncio

import trio

from .errors import HarnessError

__all__ = ["require_trio"]


def require_trio(api: str) -> None:
    """Raise ``HarnessError`` unless called from a trio task, naming the module to use."""
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        pass
    else:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        where = "outside any trio or asyncio loop"
    else:
        raise HarnessError(
            f"{api} is the trio API and was called from asyncio: use "
            f"harness_kernel.asyncio.{api} (same arguments, awaitable from asyncio)"
        )
    raise HarnessError(
        f"{api} is the trio API and was called {where}: run it under trio.run, or use "
        f"harness_kernel.sync.{api} from synchronous code"
    )
