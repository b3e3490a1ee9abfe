"""Errors as JSON problem documents (RFC 9457), carrying the kernel's error codes.

Every ``HarnessError`` has a stable ``code``; the status comes from the first class in
``STATUS`` it is an instance of. The message of a ``HarnessError`` is safe to show, so
it is the ``detail``; any other exception is a 500 whose detail says nothing inside.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from starlette.responses import JSONResponse

from harness_kernel.errors import (
    ApprovalAlreadyResolved,
    ConfigError,
    Conflict,
    HarnessError,
    InvalidArgument,
    InvalidSessionId,
    NotFound,
    NotPending,
    OwnerTimeout,
    ProviderError,
    SessionClosed,
    SessionConflict,
    SessionExists,
    SessionNotFound,
    SessionReplaced,
    StateValidationError,
    StorageError,
    StoreClosed,
    UnknownMode,
    UnknownModel,
)

__all__ = ["MEDIA_TYPE", "STATUS", "Problem", "problem_response"]

MEDIA_TYPE: Final = "application/problem+json"

STATUS: Final[tuple[tuple[type[HarnessError], int], ...]] = (
    (ApprovalAlreadyResolved, 409),
    (SessionNotFound, 404),
    (NotPending, 404),
    (NotFound, 404),
    (SessionExists, 409),
    (SessionConflict, 409),
    (SessionReplaced, 409),
    (Conflict, 409),
    (InvalidSessionId, 400),
    (InvalidArgument, 400),
    (StateValidationError, 400),
    (UnknownMode, 400),
    (UnknownModel, 400),
    (OwnerTimeout, 504),
    (StoreClosed, 503),
    (SessionClosed, 503),
    (StorageError, 503),
    (ProviderError, 502),
    (ConfigError, 500),
)
"""Status of each kernel error, most specific first; any other ``HarnessError`` is 500."""


class Problem(Exception):
    """Raised by the service itself to answer with a problem document."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def _status_of(exc: HarnessError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def problem_response(exc: BaseException) -> JSONResponse:
    """The problem document for ``exc``."""
    if isinstance(exc, Problem):
        status, code, detail = exc.status, exc.code, exc.detail
        headers, extra = exc.headers, exc.extra
    elif isinstance(exc, HarnessError):
        status, code, detail, headers, extra = _status_of(exc), exc.code, _message(exc), {}, {}
    else:
        status, code, detail = 500, "server.internal", "the server failed to handle the request"
        headers, extra = {}, {}
    body = {
        "type": f"urn:harness-kernel:error:{code}",
        "title": code,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def _message(exc: HarnessError) -> str:
    # KeyError subclasses (NotPending, NotFound) would show their message quoted.
    return str(exc.args[0]) if exc.args and isinstance(exc.args[0], str) else str(exc)
