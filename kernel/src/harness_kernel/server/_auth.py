"""Who is calling: API keys to principals and tenants, rate limits and body limits.

``Guard`` is the ASGI layer in front of every route but the open ones (health,
readiness, the OpenAPI document: the endpoints marked ``open``). It takes the key from ``Authorization: Bearer <key>``
or ``X-API-Key``, compares only hashes, never logs a key, and puts the ``Principal`` in
the request scope. A key is known by the first characters of its hash
(``Principal.key_id``), which is what logs and rate-limit buckets use.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Final

import attrs

from ._problems import Problem, problem_response
from ._settings import ApiKey, ServerSettings

__all__ = ["PRINCIPAL", "Guard", "Principal", "RateLimiter"]

PRINCIPAL: Final = "harness.principal"
"""The scope key holding the caller's ``Principal``."""
TENANT_LABEL: Final = "tenant_id"
PRINCIPAL_LABEL: Final = "principal"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


@attrs.frozen
class Principal:
    """The caller: its name, tenant, whether it is an admin and what it may see."""

    name: str
    key_id: str
    tenant: str | None = None
    admin: bool = False
    scope_principal: bool = False

    def labels(self) -> dict[str, str]:
        """Labels every session this caller creates carries, and every listing filters on."""
        if self.admin:
            return {}
        labels = {TENANT_LABEL: self.tenant or ""}
        if self.scope_principal:
            labels[PRINCIPAL_LABEL] = self.name
        return labels

    def may_see(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.labels().items())


OPEN_PRINCIPAL: Final = Principal("anonymous", "open", admin=True)
"""Who calls a service configured without keys (loopback only)."""


class RateLimiter:
    """A token bucket per key: ``limit`` requests per minute, bursts up to ``limit``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key_id: str, limit: int) -> float:
        """0 if the request may go ahead, else the seconds until it could."""
        now = self._clock()
        tokens, then = self._buckets.get(key_id, (float(limit), now))
        tokens = min(float(limit), tokens + (now - then) * limit / 60.0)
        if tokens < 1.0:
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) * 60.0 / limit
        self._buckets[key_id] = (tokens - 1.0, now)
        return 0.0


class Guard:
    """Authenticate, rate-limit and bound the body of every request but the open ones."""

    def __init__(self, app: App, settings: ServerSettings, open_paths: frozenset[str]) -> None:
        self.app = app
        self.settings = settings
        self.open_paths = open_paths
        self.keys: dict[str, ApiKey] = {key.digest: key for key in settings.keys}
        self.limiter = RateLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in self.open_paths
            or scope["method"] == "OPTIONS"
        ):
            await self.app(scope, receive, send)
            return
        try:
            principal, limit = self._authenticate(scope)
            wait = self.limiter.take(principal.key_id, limit)
            if wait > 0:
                raise Problem(
                    429,
                    "server.rate_limited",
                    f"too many requests for this key: at most {limit} a minute",
                    headers={"Retry-After": str(max(1, round(wait)))},
                )
            receive = await self._bounded(scope, receive)
        except Problem as problem:
            await problem_response(problem)(scope, receive, send)
            return
        scope[PRINCIPAL] = principal
        await self.app(scope, receive, send)

    def _authenticate(self, scope: Scope) -> tuple[Principal, int]:
        if not self.keys:
            return OPEN_PRINCIPAL, self.settings.rate_limit
        headers = dict(scope["headers"])
        raw = headers.get(b"x-api-key")
        authorization = headers.get(b"authorization", b"")
        if raw is None and authorization[:7].lower() == b"bearer ":
            raw = authorization[7:].strip()
        if not raw:
            raise Problem(
                401,
                "auth.missing_key",
                "an API key is required (Authorization: Bearer <key>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        key = self.keys.get(digest)
        if key is None or key.revoked:
            raise Problem(
                401,
                "auth.invalid_key",
                "the API key is not valid",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        principal = Principal(
            key.principal, digest[7:19], key.tenant, key.admin, key.scope_principal
        )
        return principal, key.rate_limit or self.settings.rate_limit

    async def _bounded(self, scope: Scope, receive: Receive) -> Receive:
        """Read the whole body first (bodies are small JSON documents): 413 above the limit."""
        limit = self.settings.max_body_bytes
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Problem(413, "request.too_large", f"the body is larger than {limit} bytes")
        if scope["method"] in ("GET", "HEAD", "DELETE") and declared is None:
            return receive
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise Problem(413, "request.too_large", f"the body is larger than {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay
