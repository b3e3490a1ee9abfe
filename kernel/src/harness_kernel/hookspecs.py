"""The extension contract: every hook a plugin may implement.

Plugins implement hooks with ``@harness_kernel.hookimpl`` and are found through the
entry-point group ``harness_kernel``. Hooks are always called with keyword arguments; an
implementation may accept any subset of a hook's parameters, which is how hooks grow
without breaking plugins.

Registration hooks run once per store at start. Lifecycle hooks run in the session's
trio task; they may return a value or an awaitable, which the kernel awaits. An
implementation that raises is logged; an observer that raises is disabled for the rest
of that session and never breaks the run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from ._records import Event, RunResult, Usage
    from .contracts import ModelRequest

__all__ = [
    "Register",
    "after_model_call",
    "after_tool_call",
    "before_model_call",
    "before_provider_request",
    "before_tool_call",
    "classify_error",
    "harness_kernel_log_sinks",
    "harness_kernel_providers",
    "harness_kernel_retry_policies",
    "harness_kernel_sandboxes",
    "harness_kernel_storage",
    "harness_kernel_tools",
    "harness_kernel_tracing",
    "hookimpl",
    "hookspec",
    "on_event",
    "run_finished",
    "run_started",
    "session_closed",
    "session_opened",
]

hookspec = pluggy.HookspecMarker("harness_kernel")
hookimpl = pluggy.HookimplMarker("harness_kernel")


class Register(Protocol):
    """The callback a registration hook receives.

    ``register(name, factory, options=OptionsClass)``: ``factory(options)`` builds the
    component from an instance of the attrs class ``options`` (validated from the user's
    options table by cattrs), or ``factory()`` when ``options`` is ``None``. The first
    registration of a name wins; later ones are recorded as shadowed.
    """

    def __call__(
        self, name: str, factory: Callable[..., Any], *, options: type | None = None
    ) -> None: ...


# -- registration ------------------------------------------------------------------


@hookspec
def harness_kernel_providers(register: Register) -> None:
    """Register model provider factories (``ModelProvider``).

    The registered name is the plugin name users write (``providers=["openai"]``).

    .. versionadded:: 0.1
    """


@hookspec
def harness_kernel_storage(register: Register) -> None:
    """Register storage backend factories (``SessionStorage``).

    .. versionadded:: 0.1
    """


@hookspec
def harness_kernel_sandboxes(register: Register) -> None:
    """Register sandbox factories (``Sandbox``).

    .. versionadded:: 0.1
    """


@hookspec
def harness_kernel_log_sinks(register: Register) -> None:
    """Register log sink factories (``LogSink``).

    .. versionadded:: 0.1
    """


@hookspec
def harness_kernel_retry_policies(register: Register) -> None:
    """Register retry policy factories (``RetryPolicy``).

    The first registered policy is the default when the error policy names none.

    .. versionadded:: 0.1
    """


@hookspec
def harness_kernel_tools(register: Register) -> None:
    """Register tool kits: ``factory(options)`` returns a list of ``Tool`` objects.

    An agent adds a kit by naming it in ``define_agent(tools=[...])``. When the returned
    list also has an ``aclose()`` coroutine method (a kit that started servers), the
    store calls it when it closes.

    .. versionadded:: 0.1
    .. versionchanged:: 0.1 a kit's result with ``aclose()`` is closed with the store.
    """


@hookspec
def harness_kernel_tracing(register: Register) -> None:
    """Register tracing set-ups: ``factory(options)`` returns a plugin object (an object
    with ``@hookimpl`` methods) that the store registers for its sessions.

    A deployment names one in ``harness.toml`` (``[tracing] plugin = "otel"``, with its
    ``options``) or ``create_session_store(tracing={"plugin": ..., "options": ...})``;
    that is how exporters are set up from the config. When the object has an
    ``aclose()`` coroutine method, the store calls it when it closes (flush spans there).

    .. versionadded:: 0.1
    """


# -- lifecycle ---------------------------------------------------------------------


@hookspec
def session_opened(session_id: str, agent: str, labels: dict[str, str]) -> Awaitable[None] | None:
    """A session was created or hydrated and is now loaded. Observer.

    .. versionadded:: 0.1
    """


@hookspec
def session_closed(session_id: str, reason: str) -> Awaitable[None] | None:
    """A session was unloaded (``reason``: ``close``, ``delete``, ``clear``,
    ``store_closed``, ``fatal``). Observer.

    .. versionadded:: 0.1
    """


@hookspec
def run_started(
    session_id: str, run_id: str, model: str, mode: str, labels: dict[str, str]
) -> Awaitable[None] | None:
    """A run began. Observer.

    .. versionadded:: 0.1
    """


@hookspec
def run_finished(session_id: str, run_id: str, result: RunResult) -> Awaitable[None] | None:
    """A run ended, in any status. Observer.

    .. versionadded:: 0.1
    """


@hookspec
def before_model_call(
    session_id: str, run_id: str, request: ModelRequest
) -> ModelRequest | Awaitable[ModelRequest | None] | None:
    """About to call the model. Return a replacement request, or ``None`` to keep it.

    Implementations are chained: each sees the request the previous one returned. An
    implementation that raises fails the run (a request filter must not be skipped).

    .. versionadded:: 0.1
    """


@hookspec
def after_model_call(
    session_id: str,
    run_id: str,
    request: ModelRequest,
    text: str,
    tool_calls: list[Any],
    usage: Usage | None,
    finish_reason: str | None,
) -> Awaitable[None] | None:
    """A model call completed; ``text`` and ``tool_calls`` are what it produced. Observer.

    ``usage`` is the token count the provider reported for this call (``None`` when it
    reported none); ``finish_reason`` the provider's reason for stopping (``stop``,
    ``tool_calls``, ``length``, ...), or ``None``.

    .. versionadded:: 0.1
    .. versionchanged:: 0.1 ``usage`` and ``finish_reason`` (for tracing).
    """


@hookspec
def before_provider_request(
    session_id: str,
    run_id: str,
    model: str,
    provider: str,
    method: str,
    url: str,
    headers: dict[str, str],
) -> Awaitable[None] | None:
    """A provider is about to send an HTTP request for a model call. Observer that may
    add headers: entries it puts in ``headers`` (a mutable dict, empty at first) are
    sent with the request; the provider's own headers win over them.

    Called by ``harness_kernel.http.SSETransport`` (the transport of the OpenAI and
    Anthropic plugins) once per request, retries included, in the task streaming the
    model call. ``model`` is the model ref (``openai/gpt-4.1``), ``provider`` the
    provider's namespace; ``run_id`` is ``""`` for a side question (``btw``). Tracing
    uses it to send W3C trace context (``traceparent``). A provider that does not use
    the kernel's HTTP transport does not call it.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def before_tool_call(
    session_id: str,
    run_id: str,
    tool: str,
    arguments: dict[str, Any],
    category: str | None,
    call_id: str,
) -> str | Awaitable[str | None] | None:
    """A validated tool call is about to run. Return a reason string to deny it.

    ``call_id`` is the call's id, the one ``after_tool_call`` reports when it ends.
    Stops at the first non-None result. An implementation that raises denies the call
    (fails closed).

    .. versionadded:: 0.1
    .. versionchanged:: 0.1 ``call_id``.
    """


@hookspec
def after_tool_call(
    session_id: str, run_id: str, tool: str, call_id: str, outcome: str, is_error: bool
) -> Awaitable[None] | None:
    """A tool call ended with ``outcome`` (``ok``, ``error``, ``invalid_arguments``,
    ``denied``, ``in_doubt``). Observer.

    .. versionadded:: 0.1
    """


@hookspec
def on_event(session_id: str, event: Event) -> Awaitable[None] | None:
    """A durable event was appended to a session's log. Observer.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def classify_error(error: BaseException, session_id: str | None) -> Any:
    """Classify an error that ended a run: return an ``ErrorInfo`` to use instead of the
    kernel's own sanitization, or ``None``.

    Stops at the first non-None result. An implementation that raises is ignored.

    .. versionadded:: 0.1
    """
