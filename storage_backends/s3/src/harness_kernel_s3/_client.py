"""boto3's S3 client driven from trio: calls in worker threads, retries on the event loop.

Why boto3 in threads rather than an async HTTP client with hand-made SigV4 signing: the
SDK resolves credentials through the whole standard chain (environment, shared config
and profiles, SSO, web identity, container and instance roles with IMDSv2) and refreshes
them, signs every S3 variant correctly and handles regions and addressing styles. Its
client is thread-safe, so one client serves every worker thread; a ``CapacityLimiter``
bounds the threads to the connection pool's size. botocore's own retries are turned off
so that backoff sleeps happen in ``trio.sleep`` (cancellable) and so the storage sees
every attempt of a conditional write (see ``S3Storage.append``).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import Any, TypeVar

import trio
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

__all__ = ["S3Client", "error_code", "error_status", "is_missing", "is_precondition_failed", "is_retryable"]

T = TypeVar("T")

_RETRYABLE_CODES = frozenset(
    {
        "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
        "RequestLimitExceeded", "TooManyRequestsException", "RequestTimeout", "RequestTimeoutException",
        "InternalError", "ServiceUnavailable", "ConditionalRequestConflict", "PriorRequestNotComplete",
    }
)
_RETRYABLE_TRANSPORT = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return type(exc).__name__


def error_status(exc: BaseException) -> int | None:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None


def is_missing(exc: BaseException) -> bool:
    return error_status(exc) == 404 or error_code(exc) in ("NoSuchKey", "NotFound", "404")


def is_precondition_failed(exc: BaseException) -> bool:
    return error_status(exc) == 412 or error_code(exc) == "PreconditionFailed"


def is_retryable(exc: BaseException) -> bool:
    """Throttling, 5xx, a concurrent conditional write (409) and broken connections."""
    if isinstance(exc, _RETRYABLE_TRANSPORT):
        return True
    status = error_status(exc)
    return error_code(exc) in _RETRYABLE_CODES or (status is not None and (status >= 500 or status == 429))


class S3Client:
    """One bucket, one boto3 client, bounded worker threads, retries with backoff.

    ``max_attempts`` counts the first try; delays grow from ``base_delay`` doubling up
    to ``max_delay``, with full jitter in the upper half.
    """

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        addressing_style: str = "auto",
        max_concurrency: int = 16,
        max_attempts: int = 5,
        base_delay: float = 0.1,
        max_delay: float = 5.0,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
    ) -> None:
        self.bucket = bucket
        self._settings = dict(
            endpoint_url=endpoint_url, region=region, profile=profile, addressing_style=addressing_style,
            max_concurrency=max_concurrency, connect_timeout=connect_timeout, read_timeout=read_timeout,
        )
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._limiter = trio.CapacityLimiter(max_concurrency)
        self._client: Any = None
        self._client_lock = trio.Lock()

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        s = self._settings
        session = boto3.session.Session(profile_name=s["profile"]) if s["profile"] else boto3.session.Session()
        config = Config(
            retries={"total_max_attempts": 1},  # we retry, on the trio loop
            max_pool_connections=s["max_concurrency"],
            connect_timeout=s["connect_timeout"],
            read_timeout=s["read_timeout"],
            s3={"addressing_style": s["addressing_style"]},
        )
        return session.client("s3", endpoint_url=s["endpoint_url"], region_name=s["region"], config=config)

    async def _boto(self) -> Any:
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    self._client = await trio.to_thread.run_sync(self._make_client, limiter=self._limiter)
        return self._client

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)

    async def call(self, operation: str, then: Callable[[Any], T] | None = None, **params: Any) -> Any:
        """``client.<operation>(Bucket=bucket, **params)`` in a worker thread, retried.

        ``then(response)`` runs in the same thread (reading a body is blocking I/O too)
        and is retried with it. Raises the last ``ClientError``/``BotoCoreError``, with
        an ``attempts`` attribute: a conditional write refused after a retry may have been
        refused because its own first attempt succeeded.
        """
        client = await self._boto()
        method = getattr(client, operation)

        def run() -> Any:
            response = method(Bucket=self.bucket, **params)
            return then(response) if then is not None else response

        attempt = 0
        while True:
            attempt += 1
            try:
                return await trio.to_thread.run_sync(run, limiter=self._limiter)
            except (ClientError, BotoCoreError) as exc:
                if attempt >= self.max_attempts or not is_retryable(exc):
                    exc.attempts = attempt  # type: ignore[union-attr]  # read by conditional writers
                    raise
            await trio.sleep(self.delay(attempt))

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await trio.to_thread.run_sync(functools.partial(client.close), limiter=self._limiter)
