"""``HttpProvider``: what every streaming HTTP provider does the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs

from ..contracts import ModelProvider, ModelRequest
from ._transport import SSETransport, api_key_from_env, secret_header_values

__all__ = ["HttpProvider"]


class HttpProvider(ModelProvider):
    """Base of a provider speaking SSE over HTTP, built from an attrs options class.

    The options class must have the fields ``api_key``, ``api_key_env``, ``base_url``,
    ``namespace``, ``headers``, ``timeout``, ``connect_timeout``, ``read_timeout``,
    ``max_response_bytes``, ``max_connections``, ``settings``, ``model_settings`` and
    ``models``. A subclass sets the class attributes and ``auth_headers``, and streams
    through ``self.transport``. The key is read from ``key_env`` only when ``base_url`` is
    ``default_base_url``, so it is never sent to another server by accident.
    """

    options_class: ClassVar[type]
    default_base_url: ClassVar[str]
    key_env: ClassVar[str]
    user_agent: ClassVar[str]

    def __init__(self, options: Any = None, /, **overrides: Any) -> None:
        if options is None:
            options = self.options_class(**overrides)
        elif overrides:
            options = attrs.evolve(options, **overrides)
        self.options = options
        self.name = options.namespace
        self.api_key = api_key_from_env(
            options.api_key, options.api_key_env,
            base_url=options.base_url, default_base_url=self.default_base_url, default_env=self.key_env,
        )
        headers = {"user-agent": self.user_agent, "accept": "text/event-stream"}
        headers.update(self.auth_headers(self.api_key))
        headers.update(options.headers)
        self.transport = SSETransport(
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

    def auth_headers(self, api_key: str | None) -> Mapping[str, str]:
        """Headers carrying the key and the API's fixed headers (user headers come after)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(namespace={self.name!r}, base_url={self.options.base_url!r})"

    def secret_values(self) -> list[str]:
        """The credentials this instance sends; the kernel masks them in every log."""
        values = [self.api_key] if self.api_key else []
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

    async def aclose(self) -> None:
        await self.transport.aclose()
