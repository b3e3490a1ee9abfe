"""The OpenAPI 3.1 document, built from ``ENDPOINTS`` and the schemas of their classes."""

from __future__ import annotations

import re
from typing import Any

from harness_kernel import __version__

from ._routes import ENDPOINTS, Endpoint
from ._schema import SchemaSet
from ._views import ProblemDocument, Waiting

__all__ = ["openapi_document"]

_PATH_PARAM = re.compile(r"{(\w+)}")
_PROBLEM = {"$ref": "#/components/responses/Problem"}


def _operation(endpoint: Endpoint, schemas: SchemaSet) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(endpoint.path)
    ]
    parameters += [
        {
            "name": param.name,
            "in": "query",
            "required": param.required,
            "description": param.description,
            "schema": param.schema,
            **({"style": "form", "explode": True} if param.schema.get("type") == "array" else {}),
        }
        for param in endpoint.query
    ]
    content: dict[str, Any] = {}
    if endpoint.response is not None:
        content["application/json"] = {"schema": schemas.ref(endpoint.response)}
    if endpoint.streams:
        content["text/event-stream"] = {
            "schema": {"type": "string", "description": "server-sent events"}
        }
    success: dict[str, Any] = {"description": endpoint.summary}
    if content:
        success["content"] = content
    responses: dict[str, Any] = {str(endpoint.status): success}
    if endpoint.may_wait:
        responses["202"] = {
            "description": "recorded; other approvals or answers are still pending",
            "content": {"application/json": {"schema": schemas.ref(Waiting)}},
        }
    if not endpoint.open:
        for status in ("400", "401", "404", "413", "422", "429"):
            responses[status] = _PROBLEM
    responses["default"] = _PROBLEM
    operation: dict[str, Any] = {
        "operationId": endpoint.name,
        "summary": endpoint.summary,
        "parameters": parameters,
        "responses": responses,
    }
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": schemas.body(endpoint.body)}},
        }
    if endpoint.open:
        operation["security"] = []
    return operation


def openapi_document(schemas: SchemaSet) -> dict[str, Any]:
    """The API as OpenAPI 3.1: every route the service serves, nothing else. The
    schemas land in ``schemas``, which then validates request bodies."""
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, schemas)
    problem = schemas.ref(ProblemDocument)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "harness-kernel service",
            "version": __version__,
            "description": "Sessions, runs, approvals and resumable event streams of one agent.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.definitions,
            "responses": {
                "Problem": {
                    "description": "an error, as a problem document",
                    "content": {"application/problem+json": {"schema": problem}},
                }
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    }
