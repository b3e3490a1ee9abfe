"""harness-kernel: host AI-agent conversations on trio, extended through pluggy plugins.

The public API lives here; modules starting with ``_`` are private. Plugin authors use
``harness_kernel.contracts`` (the ABCs), ``harness_kernel.hookspecs`` (the hooks),
``harness_kernel.codec`` (persisted forms) and ``harness_kernel.testing`` (the
conformance kit and the scripted provider).
"""

from __future__ import annotations

from ._agent import (
    Agent,
    ContextProvider,
    InstructionsContext,
    Mode,
    context_provider,
    define_agent,
)
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
    "ConfigFileError",
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
    "PluginInfo",
    "PluginRegistry",
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
    "hookimpl",
    "load_config",
    "open_store_from_config",
    "tool",
    "validate_session_id",
]
