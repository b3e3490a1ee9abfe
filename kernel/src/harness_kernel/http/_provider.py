"""``HttpProvider``: what every streaming HTTP provider does the same way.

A provider for an SSE-over-HTTP API is two things: plumbing that is the same for every
such API (options, the key, headers, one pooled client, the settings merge, the
request/stream/close cycle) and a wire mapping that is the API's own (the request body,
and a decoder turning its events into ``ModelEvent`` values). ``HttpProvider`` is the
first; a subclass writes only the second.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import attrs

from .._secrets import secret_option_values
from ..contracts import ModelEvent, ModelProvider, ModelRequest
from ..errors import BadRequest
from ._sse import ServerSentEvent
from ._transport import SSETransport, api_key_from_env

if TYPE_CHECKING:
    import httpx

__all__ = ["HttpProvider", "StreamDecoder"]


class StreamDecoder(Protocol):
    """The sans-IO half of a provider: one response's server-sent events in, model events out.

    One decoder decodes one response. It does no I/O, so a test can feed it recorded
    events and check what comes out.
    """

    def feed(self, event: ServerSentEvent) -> Iterable[ModelEvent]:
        """The model events ``event`` produced (often none).

        Raises a ``ProviderError`` for an error the API reports inside the stream, and
        ``MalformedResponse`` for an event that cannot be read.
        """
        ...

    def end(self) -> Iterable[ModelEvent]:
        """The closing events once the body ended: open tool calls' ends, ``Usage``, ``Finish``.

        Raises ``MalformedResponse`` when the API's end marker never came (a cut-off
        response must not finish).
        """
        ...


class HttpProvider(ModelProvider):
    """Base of a provider speaking SSE over HTTP, built from an attrs options class.

    The options class must have the fields ``api_key``, ``api_key_env``, ``base_url``,
    ``namespace``, ``headers``, ``timeout``, ``connect_timeout``, ``read_timeout``,
    ``max_response_bytes``, ``max_connections``, ``settings``, ``model_settings`` and
    ``models``. The key is read from ``key_env`` only when ``base_url`` is
    ``default_base_url``, so it is never sent to another server by accident.

    A subclass sets the class attributes and writes the wire mapping: ``build_body``
    (the JSON body of one request), ``new_decoder`` (a ``StreamDecoder`` for one
    response) and, if the API needs them, ``auth_headers``. ``stream`` posts the body to
    ``path`` and runs the response through the decoder.

    ``http_transport`` (an ``httpx`` transport, such as ``httpx.MockTransport``) replaces
    the network: a plugin's tests serve the API from a function, in process.
    """

    options_class: ClassVar[type]
    default_base_url: ClassVar[str]
    key_env: ClassVar[str]
    user_agent: ClassVar[str]
    path: ClassVar[str]
    """Where requests are posted, relative to ``base_url`` (``"chat/completions"``)."""
    reserved_settings: ClassVar[frozenset[str]] = frozenset(
        {"model", "messages", "stream", "tools"}
    )
    """Body fields the provider writes itself; a setting naming one is a ``BadRequest``."""

    def __init__(
        self,
        options: Any = None,
        /,
        *,
        http_transport: httpx.AsyncBaseTransport | None = None,
        **overrides: Any,
    ) -> None:
        if options is None:
            options = self.options_class(**overrides)
        elif overrides:
            options = attrs.evolve(options, **overrides)
        self.options = options
        self.name = options.namespace
        self.api_key = api_key_from_env(
            options.api_key,
            options.api_key_env,
            base_url=options.base_url,
            default_base_url=self.default_base_url,
            default_env=self.key_env,
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
            transport=http_transport,
        )

    # -- the wire mapping: what a subclass writes ------------------------------------

    @abstractmethod
    def build_body(self, request: ModelRequest) -> dict[str, Any]:
        """The JSON body for ``request`` in the API's shape, before settings are applied.

        ``request_body`` lays the merged settings over it; do not copy them here.
        Raises ``BadRequest`` for a request the API cannot express.
        """

    @abstractmethod
    def new_decoder(self) -> StreamDecoder:
        """A fresh decoder for one response (build errors with ``self.transport``)."""

    def auth_headers(self, api_key: str | None) -> Mapping[str, str]:
        """Headers carrying the key and the API's fixed headers (user headers come after)."""
        return {}

    # -- the plumbing: the same for every API ----------------------------------------

    def settings_for(self, request: ModelRequest) -> dict[str, Any]:
        """Provider defaults, then the model's settings, then the request's own."""
        return {
            **self.options.settings,
            **self.options.model_settings.get(request.model, {}),
            **request.settings,
        }

    def request_body(self, request: ModelRequest) -> dict[str, Any]:
        """``build_body`` with ``settings_for`` laid over it under the API's field names;
        a setting of ``None`` removes a field. Raises ``BadRequest`` for a setting that
        names one of ``reserved_settings``."""
        settings = self.settings_for(request)
        for key in settings:
            if key in self.reserved_settings:
                raise BadRequest(f"model setting '{key}' cannot be set: the provider writes it")
        body = self.build_body(request)
        for key, value in settings.items():
            if value is None:
                body.pop(key, None)
            else:
                body[key] = value
        return body

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Post ``request_body`` to ``path`` and yield what the decoder makes of the response."""
        body = self.request_body(request)
        decoder = self.new_decoder()
        async with aclosing(self.transport.events(self.path, body)) as events:
            async for event in events:
                for model_event in decoder.feed(event):
                    yield model_event
        for model_event in decoder.end():
            yield model_event

    def secret_values(self) -> list[str]:
        """The credentials this instance sends; the kernel masks them in every log."""
        values = [self.api_key] if self.api_key else []
        return list(dict.fromkeys(values + secret_option_values(self.options)))

    def models(self) -> Sequence[str] | None:
        return list(self.options.models) if self.options.models is not None else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(namespace={self.name!r}, base_url={self.options.base_url!r})"

    async def aclose(self) -> None:
        await self.transport.aclose()
