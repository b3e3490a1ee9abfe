"""harness-kernel: host AI-agent conversations on trio, extended through pluggy plugins.

The public API lives here; modules starting with ``_`` are private. Plugin authors use
``harness_kernel.contracts`` (the ABCs), ``harness_kernel.hookspecs`` (the hooks),
``harness_kernel.codec`` (persisted forms) and ``harness_kernel.testing`` (the
conformance kit and the scripted provider).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

if TYPE_CHECKING:
    from ._agent import (
        Agent,
        ContextProvider,
        InstructionsContext,
        Mode,
        context_provider,
        define_agent,
    )
    from ._compact import estimate_tokens
    from ._compaction import CompactionInput, CompactionPolicy
    from ._context import ContextCompacted
    from ._cost import Budget, Price
    from ._display import DisplayState, DisplayStateChanged
    from ._memory import MemoryLogSink, MemoryStorage
    from ._plugins import PluginInfo, PluginRegistry
    from ._policy import ErrorPolicy, RetrySettings
    from ._records import (
        MAX_INLINE_BYTES,
        ErrorInfo,
        Event,
        FilePart,
        ImagePart,
        Message,
        ReasoningPart,
        RunResult,
        RunSummary,
        SessionRecord,
        TextPart,
        ToolCallPart,
        ToolResultPart,
        Usage,
    )
    from ._runtime import StoreEvent, validate_session_id
    from ._session import ApprovalHandle, RunStream, Session, SuspensionHandle
    from ._store import SessionStore, create_session_store
    from ._tools import Tool, ToolContext, ask_user, tool
    from .config import HarnessConfig, load_config, open_store_from_config
    from .contracts import (
        ExecResult,
        Finish,
        LogSink,
        ModelProvider,
        ModelRequest,
        OutputSchema,
        ReasoningDelta,
        ReasoningEnd,
        RetryPolicy,
        Sandbox,
        SandboxSession,
        SessionStorage,
        TextDelta,
        ToolCallDelta,
        ToolCallEnd,
        ToolCallStart,
    )
    from .errors import ConfigFileError, HarnessError
    from .hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "ApprovalHandle",
    "Budget",
    "CompactionInput",
    "CompactionPolicy",
    "ConfigFileError",
    "ContextCompacted",
    "ContextProvider",
    "DisplayState",
    "DisplayStateChanged",
    "ErrorInfo",
    "ErrorPolicy",
    "Event",
    "ExecResult",
    "FilePart",
    "Finish",
    "HarnessConfig",
    "HarnessError",
    "ImagePart",
    "InstructionsContext",
    "LogSink",
    "MAX_INLINE_BYTES",
    "MemoryLogSink",
    "MemoryStorage",
    "Message",
    "Mode",
    "ModelProvider",
    "ModelRequest",
    "OutputSchema",
    "PluginInfo",
    "PluginRegistry",
    "Price",
    "ReasoningDelta",
    "ReasoningEnd",
    "ReasoningPart",
    "RetryPolicy",
    "RetrySettings",
    "RunResult",
    "RunStream",
    "RunSummary",
    "Sandbox",
    "SandboxSession",
    "Session",
    "SessionRecord",
    "SessionStorage",
    "SessionStore",
    "StoreEvent",
    "SuspensionHandle",
    "TextDelta",
    "TextPart",
    "Tool",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallPart",
    "ToolCallStart",
    "ToolContext",
    "ToolResultPart",
    "Usage",
    "ask_user",
    "context_provider",
    "create_session_store",
    "define_agent",
    "estimate_tokens",
    "hookimpl",
    "lazy_exports",
    "load_config",
    "open_store_from_config",
    "tool",
    "validate_session_id",
]

# Each public name is imported from its module on first use, so that a program using
# one corner of the kernel (the CLI's --help) does not pay for all of it.
_MODULE_OF: dict[str, str] = {
    "Agent": "._agent",
    "ApprovalHandle": "._session",
    "Budget": "._cost",
    "CompactionInput": "._compaction",
    "CompactionPolicy": "._compaction",
    "ConfigFileError": ".errors",
    "ContextCompacted": "._context",
    "ContextProvider": "._agent",
    "DisplayState": "._display",
    "DisplayStateChanged": "._display",
    "ErrorInfo": "._records",
    "ErrorPolicy": "._policy",
    "Event": "._records",
    "ExecResult": ".contracts",
    "FilePart": "._records",
    "Finish": ".contracts",
    "HarnessConfig": ".config",
    "HarnessError": ".errors",
    "ImagePart": "._records",
    "InstructionsContext": "._agent",
    "LogSink": ".contracts",
    "MAX_INLINE_BYTES": "._records",
    "MemoryLogSink": "._memory",
    "MemoryStorage": "._memory",
    "Message": "._records",
    "Mode": "._agent",
    "ModelProvider": ".contracts",
    "ModelRequest": ".contracts",
    "OutputSchema": ".contracts",
    "PluginInfo": "._plugins",
    "PluginRegistry": "._plugins",
    "Price": "._cost",
    "ReasoningDelta": ".contracts",
    "ReasoningEnd": ".contracts",
    "ReasoningPart": "._records",
    "RetryPolicy": ".contracts",
    "RetrySettings": "._policy",
    "RunResult": "._records",
    "RunStream": "._session",
    "RunSummary": "._records",
    "Sandbox": ".contracts",
    "SandboxSession": ".contracts",
    "Session": "._session",
    "SessionRecord": "._records",
    "SessionStorage": ".contracts",
    "SessionStore": "._store",
    "StoreEvent": "._runtime",
    "SuspensionHandle": "._session",
    "TextDelta": ".contracts",
    "TextPart": "._records",
    "Tool": "._tools",
    "ToolCallDelta": ".contracts",
    "ToolCallEnd": ".contracts",
    "ToolCallPart": "._records",
    "ToolCallStart": ".contracts",
    "ToolContext": "._tools",
    "ToolResultPart": "._records",
    "Usage": "._records",
    "ask_user": "._tools",
    "context_provider": "._agent",
    "create_session_store": "._store",
    "define_agent": "._agent",
    "estimate_tokens": "._compact",
    "hookimpl": ".hookspecs",
    "load_config": ".config",
    "open_store_from_config": ".config",
    "tool": "._tools",
    "validate_session_id": "._runtime",
}


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)
