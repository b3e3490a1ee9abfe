"""harness-kernel providers for the OpenAI Chat Completions and Responses APIs.

The ``openai`` plugin speaks Chat Completions (OpenAI and compatible servers) and
serves the model refs ``openai/<model>`` (or ``<namespace>/<model>`` with the
``namespace`` option, so a second instance can serve ``ollama/llama3`` from another
``base_url``). The ``openai-responses`` plugin speaks the Responses API and serves
``openai-responses/<model>`` by default. Both stream text, reasoning, tool calls
(several per response, arguments in fragments), finish reasons and usage, and map HTTP
and in-stream errors to the kernel's ``ProviderError`` classes. See
``docs/providers/openai.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from harness_kernel import ModelRequest, hookimpl
from harness_kernel.hookspecs import Register
from harness_kernel.http import (
    HttpProvider,
    StreamDecoder,
    http_url,
    namespace_name,
    positive,
)

from ._chat import RESERVED, ChatStream, chat_body, chat_messages
from ._responses import RESPONSES_RESERVED, ResponsesStream, responses_body, responses_input

__all__ = [
    "DEFAULT_BASE_URL",
    "OpenAIOptions",
    "OpenAIProvider",
    "ResponsesOptions",
    "ResponsesProvider",
    "chat_messages",
    "responses_input",
]
__version__ = "0.1.0"

DEFAULT_BASE_URL = "https://api.openai.com/v1"



def _key_needed(options: Any) -> bool:
    # A compatible server at another base_url may need no key; one named by
    # api_key_env is expected to be set.
    return options.api_key_env is not None or options.base_url.rstrip("/") == DEFAULT_BASE_URL


def _key_variable(options: Any) -> str:
    return options.api_key_env or "OPENAI_API_KEY"


_API_KEY: Mapping[str, Any] = {"secret": True, "required": _key_needed, "env": _key_variable}
"""The ``api_key`` field's metadata: a secret, required (from the option or the
environment) for the vendor's own API; ``harness-kernel config check`` reports it missing."""

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

    api_key: str | None = attrs.field(default=None, repr=False, metadata=_API_KEY)
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


class OpenAIProvider(HttpProvider):
    """A Chat Completions client serving the refs ``<namespace>/<model>``.

    Build it from ``OpenAIOptions`` or keyword arguments of the same names:
    ``OpenAIProvider(base_url="http://127.0.0.1:11434/v1", namespace="ollama")``.
    One pooled HTTP client per instance; ``aclose`` releases it.
    """

    options_class: ClassVar[type] = OpenAIOptions
    default_base_url = DEFAULT_BASE_URL
    key_env = "OPENAI_API_KEY"
    user_agent = f"harness-kernel-openai/{__version__}"
    path = "chat/completions"
    reserved_settings = RESERVED
    native_output = True  # response_format (Chat Completions) / text.format (Responses)

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        if self.options.organization:
            headers["openai-organization"] = self.options.organization
        if self.options.project:
            headers["openai-project"] = self.options.project
        return headers

    def build_body(self, request: ModelRequest) -> dict[str, Any]:
        return chat_body(request, include_usage=self.options.include_usage)

    def new_decoder(self) -> StreamDecoder:
        return ChatStream(self.transport)


@attrs.frozen
class ResponsesOptions:
    """Options of the ``openai-responses`` provider (all optional); as ``OpenAIOptions``,
    with ``namespace`` defaulting to ``openai-responses`` and no ``include_usage`` (the
    API always reports usage).

    ``store`` (default false) asks the server to keep responses; without it nothing is
    stored server-side and reasoning comes back encrypted, to be sent back on the next
    turn. Settings are Responses API fields (``max_output_tokens``, ``reasoning``
    (``{"effort": "high", "summary": "auto"}``), ``text``, ``tool_choice``,
    ``parallel_tool_calls``, ...); ``None`` removes a default.
    """

    api_key: str | None = attrs.field(default=None, repr=False, metadata=_API_KEY)
    base_url: str = attrs.field(default=DEFAULT_BASE_URL, validator=http_url)
    namespace: str = attrs.field(default="openai-responses", validator=namespace_name)
    api_key_env: str | None = None
    organization: str | None = None
    project: str | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    timeout: float | None = attrs.field(default=600.0, validator=positive)
    connect_timeout: float | None = attrs.field(default=10.0, validator=positive)
    read_timeout: float | None = attrs.field(default=None, validator=positive)
    max_response_bytes: int = attrs.field(default=32 * 1024 * 1024, validator=positive)
    max_connections: int = attrs.field(default=1000, validator=positive)
    store: bool = False
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    model_settings: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    models: list[str] | None = None


class ResponsesProvider(OpenAIProvider):
    """A Responses API client (``POST /responses``) serving ``<namespace>/<model>``.

    Build it from ``ResponsesOptions`` or keyword arguments of the same names. Reasoning
    items (summary and encrypted content) are kept in the assistant message and sent
    back on the next turn, so reasoning models keep their thinking across tool calls
    without server-side storage.
    """

    options_class = ResponsesOptions
    path = "responses"
    reserved_settings = RESPONSES_RESERVED

    def build_body(self, request: ModelRequest) -> dict[str, Any]:
        return responses_body(request, store=self.options.store)

    def new_decoder(self) -> StreamDecoder:
        return ResponsesStream(self.transport)


@hookimpl
def harness_kernel_providers(register: Register) -> None:
    register("openai", OpenAIProvider, options=OpenAIOptions)
    register("openai-responses", ResponsesProvider, options=ResponsesOptions)
