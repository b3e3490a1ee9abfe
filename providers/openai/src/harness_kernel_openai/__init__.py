"""harness-kernel provider for the OpenAI Chat Completions API and compatible servers.

Serves the model refs ``openai/<model>`` (or ``<namespace>/<model>`` with the
``namespace`` option, so a second instance can serve ``ollama/llama3`` from another
``base_url``). Streams text, tool calls (several per response, arguments in fragments),
finish reasons and usage; maps HTTP and in-stream errors to the kernel's
``ProviderError`` classes. See ``docs/providers/openai.md``.
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

from ._chat import ChatStream, chat_body, chat_messages

__all__ = ["DEFAULT_BASE_URL", "OpenAIOptions", "OpenAIProvider", "chat_messages"]
__version__ = "0.1.0"

DEFAULT_BASE_URL = "https://api.openai.com/v1"


@attrs.frozen
class OpenAIOptions:
    """Options of the ``openai`` provider (all optional).

    ``api_key`` defaults to ``$OPENAI_API_KEY`` when ``base_url`` is OpenAI's own; for
    another server name the variable with ``api_key_env`` (no key is sent otherwise).
    ``settings`` apply to every model, ``model_settings[<model>]`` to one; the agent's
    ``model_settings`` override both. Settings are Chat Completions fields
    (``temperature``, ``max_tokens``, ``max_completion_tokens``, ``top_p``, ``seed``,
    ``reasoning_effort``, ...); ``None`` removes a default.
    """

    api_key: str | None = attrs.field(default=None, repr=False, metadata={"secret": True})
    base_url: str = attrs.field(default=DEFAULT_BASE_URL, validator=http_url)
    namespace: str = attrs.field(default="openai", validator=namespace_name)
    api_key_env: str | None = None
    organization: str | None = None
    project: str | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    timeout: float | None = attrs.field(default=600.0, validator=positive)
    connect_timeout: float | None = attrs.field(default=10.0, validator=positive)
    read_timeout: float | None = attrs.field(default=None, validator=positive)
    max_response_bytes: int = attrs.field(default=32 * 1024 * 1024, validator=positive)
    max_connections: int = attrs.field(default=1000, validator=positive)
    include_usage: bool = True
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    model_settings: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    models: list[str] | None = None


class OpenAIProvider(ModelProvider):
    """A Chat Completions client serving the refs ``<namespace>/<model>``.

    Build it from ``OpenAIOptions`` or keyword arguments of the same names:
    ``OpenAIProvider(base_url="http://127.0.0.1:11434/v1", namespace="ollama")``.
    One pooled HTTP client per instance; ``aclose`` releases it.
    """

    def __init__(self, options: OpenAIOptions | None = None, /, **overrides: Any) -> None:
        if options is None:
            options = OpenAIOptions(**overrides)
        elif overrides:
            options = attrs.evolve(options, **overrides)
        self.options = options
        self.name = options.namespace
        self._api_key = api_key_from_env(
            options.api_key, options.api_key_env,
            base_url=options.base_url, default_base_url=DEFAULT_BASE_URL, default_env="OPENAI_API_KEY",
        )
        headers = {"user-agent": f"harness-kernel-openai/{__version__}", "accept": "text/event-stream"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        if options.organization:
            headers["openai-organization"] = options.organization
        if options.project:
            headers["openai-project"] = options.project
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
        return f"OpenAIProvider(namespace={self.name!r}, base_url={self.options.base_url!r})"

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
        body = chat_body(request, self.settings_for(request), include_usage=self.options.include_usage)
        chunks = ChatStream(self._transport)
        async with aclosing(self._transport.events("chat/completions", body)) as events:
            async for sse in events:
                for event in chunks.feed(sse):
                    yield event
        for event in chunks.end():
            yield event

    async def aclose(self) -> None:
        await self._transport.aclose()


@hookimpl
def harness_kernel_providers(register: Register) -> None:
    register("openai", OpenAIProvider, options=OpenAIOptions)
