"""Every exception the kernel raises, in one tree.

::

    HarnessError                      base of everything raised on purpose
    ├── ConfigError                   bad store arguments, options or agent definition
    │   └── ConfigFileError           a config file with problems (all listed in .errors)
    ├── InvalidSessionId              a session id that is empty, too long or unsafe
    ├── StoreClosed                   the store was closed; every call fails fast
    ├── SessionClosed                 the session was closed or unloaded
    ├── SessionNotFound               no such session in storage
    ├── SessionExists                 create() of an id that is taken
    ├── SessionConflict               another writer moved the session ahead (run failed)
    ├── SessionReplaced               the session was deleted (and maybe created again)
    ├── OwnerTimeout                  another process runs the session and did not answer
    ├── StateValidationError          update_state() with values the state class refuses
    ├── UnknownMode / UnknownModel    switch_mode() / set_model() with a bad name
    ├── InvalidArgument               a call with a value it cannot take (also ValueError)
    ├── NotPending                    a call naming something that is not waiting (KeyError)
    │   ├── UnknownApproval           no such approval in the session
    │   ├── ApprovalAlreadyResolved   the approval was approved or denied already
    │   └── UnknownSuspension         no suspended call with that id waits for resume()
    ├── NotFound                      a lookup of something the session never had (KeyError)
    │   ├── UnknownGrant              revoke() of a grant the session does not hold
    │   ├── UnknownMessage            history(before=...) with an id not in the session
    │   └── UnknownRun                run_events() of a run the session never had
    ├── PluginError                   a plugin failed to load, register or run
    │   └── PluginLoadError           an entry point failed to import (strict mode)
    ├── StorageError                  a storage backend failed
    │   └── Conflict                  compare-and-swap lost: expected_seq / revision stale
    │       └── IncarnationMismatch   an append names an incarnation the session no longer has
    ├── SandboxError                  a sandbox refused or failed an operation
    │   ├── SandboxUnavailable        the sandbox does not offer that operation (noop)
    │   └── SandboxPathError          a path that escapes the work directory
    ├── ToolError                     raised by tools: the message is shown to the model
    │   └── ToolArgumentsInvalid      the model's arguments do not fit the signature
    ├── RunError                      a run ended without completing
    │   ├── RunAborted
    │   ├── MaxStepsExceeded
    │   ├── OutputInvalid             the typed answer still did not validate after the repairs
    │   ├── BudgetExceeded            a run or session used up its token or cost budget
    │   └── ContextProviderFailed
    └── ProviderError                 a model call failed (``retryable`` says if a retry may help)
        ├── RateLimited               429; ``retry_after`` seconds when the API said so
        ├── ProviderUnavailable       5xx, overloaded, connection or timeout failures
        ├── BadRequest                the API refused the request (400 / 422)
        │   └── ContextTooLong        the request exceeds the model's context window
        ├── AuthenticationFailed      401 / 403
        └── MalformedResponse         garbage or a stream that stopped before its end

The message of a ``HarnessError`` is written to be safe to show to users and models:
it never carries secrets or backend internals. Backend exceptions are translated at
the boundary with ``raise ... from exc`` so the detail stays in the logs.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ApprovalAlreadyResolved",
    "AuthenticationFailed",
    "BadRequest",
    "BudgetExceeded",
    "ConfigError",
    "ConfigFileError",
    "Conflict",
    "ContextProviderFailed",
    "ContextTooLong",
    "HarnessError",
    "IncarnationMismatch",
    "InvalidArgument",
    "InvalidSessionId",
    "MalformedResponse",
    "MaxStepsExceeded",
    "NotFound",
    "NotPending",
    "OutputInvalid",
    "OwnerTimeout",
    "PluginError",
    "PluginLoadError",
    "ProviderError",
    "ProviderUnavailable",
    "RateLimited",
    "RunAborted",
    "RunError",
    "SandboxError",
    "SandboxPathError",
    "SandboxUnavailable",
    "SessionClosed",
    "SessionConflict",
    "SessionExists",
    "SessionNotFound",
    "SessionReplaced",
    "StateValidationError",
    "StorageError",
    "StoreClosed",
    "ToolArgumentsInvalid",
    "ToolError",
    "UnknownApproval",
    "UnknownGrant",
    "UnknownMessage",
    "UnknownMode",
    "UnknownModel",
    "UnknownRun",
    "UnknownSuspension",
]


class HarnessError(Exception):
    """Base of every error the kernel and its plugins raise on purpose.

    ``code`` is a stable, dotted identifier for programs (``"provider.rate_limited"``);
    the message is for people and is safe to show them.
    """

    code: str = "harness.error"


class ConfigError(HarnessError):
    """The store's arguments, a plugin's options or the agent definition are invalid."""

    code = "config.invalid"


class ConfigFileError(ConfigError):
    """A configuration file is invalid. ``errors`` lists every problem, one
    ``"key.path: message"`` line each; ``source`` names the file."""

    def __init__(self, source: str, errors: Sequence[str]) -> None:
        self.source = source
        self.errors = tuple(errors)
        count = f"{len(self.errors)} error{'s' if len(self.errors) != 1 else ''}"
        super().__init__(f"{source}: {count}\n" + "\n".join(f"  {line}" for line in self.errors))


class InvalidSessionId(HarnessError, ValueError):
    """A session id is empty, too long, or has characters outside the allowed set."""

    code = "session.invalid_id"


class StoreClosed(HarnessError):
    """The store was closed: every further call fails fast with this error."""

    code = "store.closed"


class SessionClosed(HarnessError):
    """The session was closed (or unloaded); get it again from the store."""

    code = "session.closed"


class SessionNotFound(HarnessError, KeyError):
    """No session with this id exists in storage."""

    code = "session.not_found"

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "session not found"


class SessionExists(HarnessError):
    """``create`` was asked for an id that already exists."""

    code = "session.exists"


class SessionConflict(HarnessError):
    """Another writer appended to the session first; the run failed, the tail was reloaded.

    The session stays usable: the next message runs on the reloaded history.
    """

    code = "session.conflict"


class SessionReplaced(HarnessError):
    """The session this handle loaded was deleted, and maybe created again, by another
    store: its old history is dropped and never reaches a model or the new session. Get
    the session again from the store to continue with the new one."""

    code = "session.replaced"


class OwnerTimeout(HarnessError, TimeoutError):
    """Another process owns (is running) the session and did not act on this request in
    time; the request stays in the log and the owner may still apply it."""

    code = "session.owner_timeout"


class StateValidationError(HarnessError, ValueError):
    """``update_state`` was given names or values the agent's state class refuses."""

    code = "session.invalid_state"


class UnknownMode(HarnessError, ValueError):
    """``switch_mode`` named a mode the agent does not define."""

    code = "session.unknown_mode"


class UnknownModel(HarnessError, ValueError):
    """A model ref is malformed or names a provider namespace that is not configured."""

    code = "model.unknown"


class InvalidArgument(HarnessError, ValueError):
    """A call with a value it cannot take (``remember="forever"``, a bad label, a page
    limit out of range, resume data that is not JSON). Also a ``ValueError``."""

    code = "request.invalid"


class _KeyErrorMessage(KeyError):
    """A ``KeyError`` whose ``str`` is its message (``KeyError`` would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NotPending(HarnessError, _KeyErrorMessage):
    """A call naming an approval or suspension that is not waiting. Also a ``KeyError``."""

    code = "request.not_pending"


class UnknownApproval(NotPending):
    """``approve``/``deny`` of an approval id the session never had."""

    code = "approval.unknown"


class ApprovalAlreadyResolved(NotPending):
    """``approve``/``deny`` of an approval that was already approved or denied (for
    example by a call that raced this one): exactly one resolution is recorded."""

    code = "approval.already_resolved"


class UnknownSuspension(NotPending):
    """``resume`` of a call id that no suspension waits on (unknown or already resumed)."""

    code = "suspension.unknown"


class NotFound(HarnessError, _KeyErrorMessage):
    """A lookup of something the session does not have. Also a ``KeyError``."""

    code = "request.not_found"


class UnknownGrant(NotFound):
    """``revoke`` of a grant the session does not hold."""

    code = "grant.unknown"


class UnknownMessage(NotFound):
    """``history(before=...)`` with a message id that is not in the session."""

    code = "message.unknown"


class UnknownRun(NotFound):
    """``run_events`` of a run id the session never had."""

    code = "run.unknown"


class PluginError(HarnessError):
    """A plugin failed to load, to register, or raised from a hook."""

    code = "plugin.error"


class PluginLoadError(PluginError):
    """An entry point failed to import and strict plugin loading is on."""

    code = "plugin.load_failed"


class StorageError(HarnessError):
    """A storage backend failed; the message is safe, the cause is chained."""

    code = "storage.error"


class Conflict(StorageError):
    """A compare-and-swap lost: the stored ``last_seq`` or ``revision`` moved on.

    Raised by ``SessionStorage.append`` and ``SessionStorage.save``; nothing was written.
    """

    code = "storage.conflict"


class IncarnationMismatch(Conflict):
    """Raised by ``SessionStorage.append`` when the stored session is another incarnation
    than the one the writer names (it was deleted and created again): nothing is written."""

    code = "storage.incarnation_mismatch"


class SandboxError(HarnessError):
    """A sandbox refused or failed an operation. Reaches the model as a tool error."""

    code = "sandbox.error"


class SandboxUnavailable(SandboxError):
    """The configured sandbox does not offer this operation (the ``noop`` sandbox)."""

    code = "sandbox.unavailable"


class SandboxPathError(SandboxError):
    """A path escapes the sandbox's work directory, or is otherwise unsafe."""

    code = "sandbox.path"


class ToolError(HarnessError):
    """Raised by a tool to report a failure to the model; its message is shown verbatim."""

    code = "tool.failed"


class ToolArgumentsInvalid(ToolError):
    """The arguments a model supplied do not match the tool's signature."""

    code = "tool.invalid_arguments"


class RunError(HarnessError):
    """A run ended without completing."""

    code = "run.failed"


class RunAborted(RunError):
    """The run was aborted (``abort()``, ``close()`` or the store closing)."""

    code = "run.aborted"


class MaxStepsExceeded(RunError):
    """The run used its ``max_steps`` model calls without reaching an answer."""

    code = "run.max_steps"


class OutputInvalid(RunError):
    """The model's answer did not match the run's ``output_type``, and every repair the
    agent's ``output_retries`` allows was used; the message lists what was wrong."""

    code = "run.output_invalid"


class BudgetExceeded(RunError):
    """The run, or its session, reached a limit of the store's ``budget`` (tokens or
    cost); the run ended with what it had produced recorded."""

    code = "budget.exceeded"


class ContextProviderFailed(RunError):
    """A context provider failed and the ``context_failure`` policy made the run fail."""

    code = "context.failed"


class ProviderError(HarnessError):
    """A model call failed. ``retryable`` says whether trying again may succeed;
    ``retry_after`` is the delay in seconds the API asked for, when it said (429, and
    some 503/529 responses)."""

    code = "provider.error"
    retryable: bool = False

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class RateLimited(ProviderError):
    """The provider refused for rate limits (HTTP 429).

    ``retry_after`` is the delay in seconds the API asked for, when it said.
    """

    code = "provider.rate_limited"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status_code: int | None = 429,
    ) -> None:
        super().__init__(message, status_code=status_code, retry_after=retry_after)


class ProviderUnavailable(ProviderError):
    """The provider is down, overloaded or unreachable (5xx, 529, connection, timeout)."""

    code = "provider.unavailable"
    retryable = True


class BadRequest(ProviderError):
    """The API refused the request as invalid (400 / 422); retrying will not help."""

    code = "provider.bad_request"


class ContextTooLong(BadRequest):
    """The request exceeds the model's context window."""

    code = "provider.context_too_long"


class AuthenticationFailed(ProviderError):
    """The API key is missing, wrong or not allowed (401 / 403)."""

    code = "provider.authentication"


class MalformedResponse(ProviderError):
    """The provider sent data that does not parse, or its stream stopped before the end."""

    code = "provider.malformed_response"
