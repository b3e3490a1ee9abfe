"""harness-kernel provider for the Anthropic Messages API.

Serves the model refs ``anthropic/<model>`` (another namespace with the ``namespace``
option). Streams text and tool use (``input_json_delta`` fragments), maps stop reasons
and usage, sends the system prompt apart and ``max_tokens`` always, and maps HTTP and
in-stream errors to the kernel's ``ProviderError`` classes. See
``docs/providers/anthropic.md``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any

import attrs

from harness_kernel import ModelProvider, ModelRequest, hookimpl
from harness_kernel.contracts import ModelEvent
from harness_kernel.hookspecs import Register
from harness_kernel.http import (
    SSETransport,
    api_key_from_env,
    http_url,
    namespace_name,
    positive,
    secret_header_values,
)

from ._messages import MessagesStream, messages_body, messages_of

__all__ = ["API_VERSION", "DEFAULT_BASE_URL", "AnthropicOptions", "AnthropicProvider", "messages_of"]
__version__ = "0.1.0"

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"


@attrs.frozen
class AnthropicOptions:
    """Options of the ``anthropic`` provider (all optional).

    ``api_key`` defaults to ``$ANTHROPIC_API_KEY`` when ``base_url`` is Anthropic's own;
    for another server name the variable with ``api_key_env``. ``max_tokens`` is sent
    when no setting gives one (the API requires it). ``beta`` lists
    ``anthropic-beta`` feature names. ``settings`` apply to every model,
    ``model_settings[<model>]`` to one; the agent's ``model_settings`` override both.
    """

    api_key: str | None = attrs.field(default=None, repr=False, metadata={"secret": True})
    base_url: str = attrs.field(default=DEFAULT_BASE_URL, validator=http_url)
    namespace: str = attrs.field(default="anthropic", validator=namespace_name)
    api_key_env: str | None = None
    version: str = API_VERSION
    beta: list[str] = attrs.field(factory=list)
    max_tokens: int = attrs.field(default=4096, validator=positive)
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    timeout: float | None = attrs.field(default=600.0, validator=positive)
    connect_timeout: float | None = attrs.field(default=10.0, validator=positive)
    read_timeout: float | None = attrs.field(default=None, validator=positive)
    max_response_bytes: int = attrs.field(default=32 * 1024 * 1024, validator=positive)
    max_connections: int = attrs.field(default=1000, validator=positive)
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    model_settings: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    models: list[str] | None = None


class AnthropicProvider(ModelProvider):
    """A Messages API client serving the refs ``<namespace>/<model>``.

    Build it from ``AnthropicOptions`` or keyword arguments of the same names. One
    pooled HTTP client per instance; ``aclose`` releases it.
    """

    def __init__(self, options: AnthropicOptions | None = None, /, **overrides: Any) -> None:
        if options is None:
            options = AnthropicOptions(**overrides)
        elif overrides:
            options = attrs.evolve(options, **overrides)
        self.options = options
        self.name = options.namespace
        self._api_key = api_key_from_env(
            options.api_key, options.api_key_env,
            base_url=options.base_url, default_base_url=DEFAULT_BASE_URL, default_env="ANTHROPIC_API_KEY",
        )
        headers = {
            "user-agent": f"harness-kernel-anthropic/{__version__}",
            "accept": "text/event-stream",
            "anthropic-version": options.version,
        }
        if self._api_key:
            headers["x-api-key"] = self._api_key
        if options.beta:
            headers["anthropic-beta"] = ",".join(options.beta)
        headers.update(options.headers)
        self._transport = SSETransport(
            provider=self.name,
            base_url=options.base_url,
            headers=headers,
            timeout=options.timeout,
            connect_timeout=options.connect_timeout,
            read_timeout=options.read_timeout,
            max_response_bytes=options.max_response_bytes,
            max_connections=options.max_connections,
            secrets=self.secret_values(),
        )

    def __repr__(self) -> str:
        return f"AnthropicProvider(namespace={self.name!r}, base_url={self.options.base_url!r})"

    def secret_values(self) -> list[str]:
        """The credentials this instance sends; the kernel masks them in every log."""
        values = [self._api_key] if self._api_key else []
        return values + secret_header_values(self.options.headers)

    def models(self) -> Sequence[str] | None:
        return list(self.options.models) if self.options.models is not None else None

    def settings_for(self, request: ModelRequest) -> dict[str, Any]:
        """Provider defaults, then the model's settings, then the request's own."""
        return {
            **self.options.settings,
            **self.options.model_settings.get(request.model, {}),
            **request.settings,
        }

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        body = messages_body(request, self.settings_for(request), max_tokens=self.options.max_tokens)
        events = MessagesStream(self._transport)
        async with aclosing(self._transport.events("v1/messages", body)) as sse_events:
            async for sse in sse_events:
                for event in events.feed(sse):
                    yield event
        for event in events.end():
            yield event

    async def aclose(self) -> None:
        await self._transport.aclose()


@hookimpl
def harness_kernel_providers(register: Register) -> None:
    register("anthropic", AnthropicProvider, options=AnthropicOptions)
