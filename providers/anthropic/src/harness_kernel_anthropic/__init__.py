"""harness-kernel provider for the Anthropic Messages API.

Serves the model refs ``anthropic/<model>`` (another namespace with the ``namespace``
option). Streams text, extended thinking (sent back with its signature on the next
turn) and tool use (``input_json_delta`` fragments), takes images and documents in
user messages, maps stop reasons and usage, sends the system prompt apart and ``max_tokens`` always, and maps HTTP and
in-stream errors to the kernel's ``ProviderError`` classes. See
``docs/providers/anthropic.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from harness_kernel import ModelRequest, hookimpl
from harness_kernel.hookspecs import Register
from harness_kernel.http import (
    HttpProvider,
    http_url,
    namespace_name,
    positive,
)

from ._messages import RESERVED, MessagesStream, messages_body, messages_of

__all__ = ["API_VERSION", "DEFAULT_BASE_URL", "AnthropicOptions", "AnthropicProvider", "messages_of"]
__version__ = "0.1.0"

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"



def _key_needed(options: Any) -> bool:
    # A compatible server at another base_url may need no key; one named by
    # api_key_env is expected to be set.
    return options.api_key_env is not None or options.base_url.rstrip("/") == DEFAULT_BASE_URL


def _key_variable(options: Any) -> str:
    return options.api_key_env or "ANTHROPIC_API_KEY"


_API_KEY: Mapping[str, Any] = {"secret": True, "required": _key_needed, "env": _key_variable}
"""The ``api_key`` field's metadata: a secret, required (from the option or the
environment) for the vendor's own API; ``harness-kernel config check`` reports it missing."""

@attrs.frozen
class AnthropicOptions:
    """Options of the ``anthropic`` provider (all optional).

    ``api_key`` defaults to ``$ANTHROPIC_API_KEY`` when ``base_url`` is Anthropic's own;
    for another server name the variable with ``api_key_env``. ``max_tokens`` is sent
    when no setting gives one (the API requires it). ``beta`` lists
    ``anthropic-beta`` feature names. ``settings`` apply to every model,
    ``model_settings[<model>]`` to one; the agent's ``model_settings`` override both.
    """

    api_key: str | None = attrs.field(default=None, repr=False, metadata=_API_KEY)
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


class AnthropicProvider(HttpProvider):
    """A Messages API client serving the refs ``<namespace>/<model>``.

    Build it from ``AnthropicOptions`` or keyword arguments of the same names. One
    pooled HTTP client per instance; ``aclose`` releases it.
    """

    options_class = AnthropicOptions
    default_base_url = DEFAULT_BASE_URL
    key_env = "ANTHROPIC_API_KEY"
    user_agent = f"harness-kernel-anthropic/{__version__}"
    path = "v1/messages"
    reserved_settings = RESERVED

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": self.options.version}
        if api_key:
            headers["x-api-key"] = api_key
        if self.options.beta:
            headers["anthropic-beta"] = ",".join(self.options.beta)
        return headers

    def settings_for(self, request: ModelRequest) -> dict[str, Any]:
        settings = super().settings_for(request)
        if settings.get("max_tokens") is None:
            settings["max_tokens"] = self.options.max_tokens  # the API requires one
        return settings

    def build_body(self, request: ModelRequest) -> dict[str, Any]:
        body = messages_body(request)
        thinking = self.settings_for(request).get("thinking")
        thinks = isinstance(thinking, Mapping) and thinking.get("type") != "disabled"
        if request.output is not None and request.output.tool and not thinks:
            # The typed answer comes as a call of the kernel's final-answer tool: make the
            # model call a tool (extended thinking allows only "auto", so then it is asked).
            body["tool_choice"] = {"type": "any"}
        return body

    def new_decoder(self) -> MessagesStream:
        return MessagesStream(self.transport)


@hookimpl
def harness_kernel_providers(register: Register) -> None:
    register("anthropic", AnthropicProvider, options=AnthropicOptions)
