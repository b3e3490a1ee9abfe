"""The shared provider suite (retries, faults, aborts, secrets, conformance, an agent
with tools) run against the anthropic provider and a scripted Messages API server."""

from __future__ import annotations

from typing import Any

from harness_kernel_anthropic import AnthropicOptions, AnthropicProvider
from tests.providers_common.loopback import LoopbackServer
from tests.providers_common.scripted import Status, anthropic_error
from tests.providers_common.suite import KEY, ProviderSuite


class TestAnthropicProvider(ProviderSuite):
    wire = "anthropic"
    plugin = "anthropic"
    model = "claude-test"

    def options(self, server: LoopbackServer, **extra: Any) -> dict[str, Any]:
        return {"base_url": server.url, "api_key": KEY, **extra}

    def make_provider(self, server: LoopbackServer, **extra: Any) -> AnthropicProvider:
        return AnthropicProvider(AnthropicOptions(**self.options(server, **extra)))

    def tool_results(self, body: Any) -> list[tuple[str, str]]:
        return [
            (b["tool_use_id"], b["content"])
            for m in body["messages"] if m["role"] == "user"
            for b in m["content"] if isinstance(b, dict) and b["type"] == "tool_result"
        ]

    def tool_calls_sent(self, body: Any) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (b["id"], b["name"], b["input"])
            for m in body["messages"] if m["role"] == "assistant"
            for b in m["content"] if b["type"] == "tool_use"
        ]

    def rate_limited(self, retry_after: str) -> Status:
        message = "This request would exceed your account's rate limit. Please try again later."
        return anthropic_error(429, message, "rate_limit_error", (("retry-after", retry_after),))

    def server_error(self) -> Status:
        return anthropic_error(500, "Internal server error", "api_error")

    def auth_error_echoing(self, key: str) -> Status:
        return anthropic_error(401, f"invalid x-api-key: {key}", "authentication_error")

    def model_not_found(self) -> Status:
        return anthropic_error(404, "model: missing-model", "not_found_error")
