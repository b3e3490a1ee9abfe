"""The host's error policy and the sanitization of errors users and streams see."""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from ._records import ErrorInfo
from .errors import HarnessError, ProviderError

__all__ = ["ErrorPolicy", "RetrySettings", "sanitize"]


@attrs.frozen
class RetrySettings:
    """``policy`` names a registered retry policy (default: the first registered);
    ``model`` holds its options."""

    policy: str | None = None
    model: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ErrorPolicy:
    """How failures are reported and handled; owned by the host.

    ``expose_internal_errors``: show the message of unexpected exceptions (otherwise
    "internal error"); ``include_stack``: attach the traceback to ``ErrorInfo.stack``;
    ``close_session_on_fatal``: unload a session whose run failed, so the next
    ``get_or_create`` starts from storage; ``context_failure``: ``"fail"`` or
    ``"skip_optional"`` (skip context providers not marked ``required``).
    """

    expose_internal_errors: bool = False
    include_stack: bool = False
    close_session_on_fatal: bool = False
    context_failure: Literal["fail", "skip_optional"] = "fail"
    retry: RetrySettings = RetrySettings()


def sanitize(error: BaseException, policy: ErrorPolicy) -> ErrorInfo:
    """The ``ErrorInfo`` for ``error`` under ``policy``.

    ``HarnessError`` messages are safe by contract and pass; anything else becomes
    ``internal`` unless the policy exposes internal errors.
    """
    stack = "".join(traceback.format_exception(error)) if policy.include_stack else None
    if isinstance(error, HarnessError):
        retryable = isinstance(error, ProviderError) and error.retryable
        return ErrorInfo(error.code, str(error) or error.code, retryable, stack)
    message = (
        f"{type(error).__name__}: {error}" if policy.expose_internal_errors else "internal error"
    )
    return ErrorInfo("internal", message, False, stack)
