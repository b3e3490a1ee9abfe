"""The model call a task is streaming, as the HTTP transport sees it.

A provider's ``stream(request)`` knows nothing of the store that called it, yet its
HTTP requests should carry what plugins add (``traceparent``, through
``before_provider_request``). The step that streams a model call sets ``model_call``
for the duration; the transport, running in that same task, asks ``request_headers``
for the headers the hook implementations add. Outside a model call (a provider used on
its own) there is nothing to add.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from ._plugins import HookRunner

__all__ = ["model_call", "request_headers"]

HOOK: Final = "before_provider_request"


@attrs.frozen(eq=False)
class _ModelCall:
    hooks: HookRunner
    disabled: set[str]
    session_id: str
    run_id: str
    model: str


_current: ContextVar[_ModelCall | None] = ContextVar("harness_kernel_model_call", default=None)


@asynccontextmanager
async def model_call(
    hooks: HookRunner, disabled: set[str], session_id: str, run_id: str, model: str
) -> AsyncIterator[None]:
    """Mark the model call this task streams (nothing is set when no plugin implements
    ``before_provider_request``). Asynchronous only to sit in the ``async with`` that
    opens the provider's stream; it does not await."""
    if not hooks.has(HOOK):
        yield
        return
    token = _current.set(_ModelCall(hooks, disabled, session_id, run_id, model))
    try:
        yield
    finally:
        _current.reset(token)


async def request_headers(provider: str, method: str, url: str) -> dict[str, str]:
    """The headers ``before_provider_request`` implementations add to this request (an
    implementation that raises is logged and disabled for the session, as observers are)."""
    call = _current.get()
    if call is None:
        return {}
    headers: dict[str, str] = {}
    await call.hooks.notify(
        HOOK,
        call.disabled,
        session_id=call.session_id,
        run_id=call.run_id,
        model=call.model,
        provider=provider,
        method=method,
        url=url,
        headers=headers,
    )
    return {str(k): str(v) for k, v in headers.items()}
