"""The shared provider suite (retries, faults, aborts, secrets, conformance, an agent
with tools) run against the openai-responses provider and a scripted Responses server."""

from __future__ import annotations

import json
from typing import Any

from harness_kernel_openai import ResponsesOptions, ResponsesProvider
from tests.providers_common.loopback import LoopbackServer
from tests.providers_common.scripted import Status, openai_error
from tests.providers_common.suite import KEY, ProviderSuite


class TestResponsesProvider(ProviderSuite):
    wire = "responses"
    plugin = "openai-responses"
    model = "gpt-test"

    def options(self, server: LoopbackServer, **extra: Any) -> dict[str, Any]:
        return {"base_url": f"{server.url}/v1", "api_key": KEY, **extra}

    def make_provider(self, server: LoopbackServer, **extra: Any) -> ResponsesProvider:
        return ResponsesProvider(ResponsesOptions(**self.options(server, **extra)))

    def tool_results(self, body: Any) -> list[tuple[str, str]]:
        return [(i["call_id"], i["output"]) for i in body["input"] if i.get("type") == "function_call_output"]

    def tool_calls_sent(self, body: Any) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (i["call_id"], i["name"], json.loads(i["arguments"])) for i in body["input"] if i.get("type") == "function_call"
        ]

    def rate_limited(self, retry_after: str) -> Status:
        message = "Rate limit reached for gpt-test in organization org-test on requests per min (RPM): Limit 3, Used 3."
        headers = (("retry-after", retry_after), ("x-ratelimit-remaining-requests", "0"), ("x-ratelimit-reset-requests", "7s"))
        return openai_error(429, message, "requests", "rate_limit_exceeded", headers)

    def server_error(self) -> Status:
        return openai_error(500, "The server had an error while processing your request. Sorry about that!", "server_error")

    def auth_error_echoing(self, key: str) -> Status:
        return openai_error(401, f"Incorrect API key provided: {key}.", "invalid_request_error", "invalid_api_key")

    def model_not_found(self) -> Status:
        message = "The model `missing-model` does not exist or you do not have access to it."
        return openai_error(404, message, "invalid_request_error", "model_not_found")
