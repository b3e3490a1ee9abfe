"""Schemathesis over /v1/openapi.json against the running service: whatever the
document allows, the service answers without a server error, with a status and a
content type the document lists, and a body that fits its schema."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import KEYS, Server

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_the_service_keeps_to_its_openapi_document(server: Server) -> None:
    """No server error and no schema violation for any request the document allows,
    operation by operation (hypothesis draws the requests from the document)."""
    schema = schemathesis.openapi.from_url(f"{server.url}/v1/openapi.json")
    headers = {"authorization": f"Bearer {KEYS['alice']}"}
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/v1/events":
            continue  # an endless stream: test_api follows it
        checked.append(f"{operation.method.upper()} {operation.path}")

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def conforms(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)

        conforms()
    assert len(checked) >= 20
