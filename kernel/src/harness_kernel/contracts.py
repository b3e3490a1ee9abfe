"""The plugin contracts: small ABCs, each method documented with what it returns and raises.

A plugin implements one of these and hands a factory to the kernel through a
registration hook (see ``hookspecs.py``). The conformance kit in
``harness_kernel.testing`` checks an implementation against the contract.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, TypeAlias

import attrs

from ._records import Event, Message, SessionRecord, Usage

if TYPE_CHECKING:
    import trio

__all__ = [
    "DirEntry",
    "ExecResult",
    "Finish",
    "LOG_LEVELS",
    "ListOrder",
    "LogSink",
    "ModelEvent",
    "ModelProvider",
    "ModelRequest",
    "OutputSchema",
    "Page",
    "ReasoningDelta",
    "ReasoningEnd",
    "RetryPolicy",
    "Sandbox",
    "SandboxCapabilities",
    "SandboxSession",
    "SessionFilter",
    "SessionInfo",
    "SessionStorage",
    "StorageCapabilities",
    "TextDelta",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "ToolSpec",
    "WatchNotice",
]


# -- model providers ---------------------------------------------------------------


@attrs.frozen
class ToolSpec:
    """A tool as the model sees it: name, description, JSON schema of the arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@attrs.frozen
class OutputSchema:
    """The typed answer a run asks for: a JSON schema the answer must match.

    ``tool`` is ``None`` when the provider asked for it natively (``native_output``):
    the answer is the response's text, and ``strict`` says whether the schema fits the
    API's strict mode. Otherwise ``tool`` names the tool in ``ModelRequest.tools`` the
    model gives its answer to (the kernel's fallback for providers without a JSON-schema
    mode; a provider may force the model to call a tool).
    """

    name: str
    schema: Mapping[str, Any]
    strict: bool = True
    tool: str | None = None


@attrs.frozen
class ModelRequest:
    """One model call.

    ``model`` is the model name inside the provider's namespace (``gpt-4.1`` for the ref
    ``openai/gpt-4.1``); ``system`` holds the instructions and rendered context;
    ``settings`` holds per-call settings such as ``temperature`` or ``max_tokens``.
    """

    model: str
    messages: tuple[Message, ...]
    system: str = ""
    tools: tuple[ToolSpec, ...] = ()
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    session_id: str | None = None
    run_id: str | None = None
    output: OutputSchema | None = None
    """The typed answer asked for, if any (see ``OutputSchema``)."""


@attrs.frozen
class TextDelta:
    """A fragment of the assistant's text."""

    type: ClassVar[str] = "text.delta"
    text: str


@attrs.frozen
class ReasoningDelta:
    """A fragment of the model's reasoning (``summary``: of a summary of it), in order.

    Fragments join the open reasoning block; a block ends at its ``ReasoningEnd``, or
    when text or a tool call follows (APIs that send no end, such as Chat Completions
    servers streaming ``reasoning_content``)."""

    type: ClassVar[str] = "reasoning.delta"
    text: str
    summary: bool = False


@attrs.frozen
class ReasoningEnd:
    """A reasoning block is complete: the API's opaque content that must go back with it.

    ``signature`` (Anthropic thinking), ``encrypted`` (OpenAI encrypted reasoning, or the
    data of a redacted block with ``redacted``), ``id`` (the API's item id) and ``source``
    (the API that reads them back) become the fields of the ``ReasoningPart``. A
    ``ReasoningEnd`` with no open block is a block without text (a redacted one)."""

    type: ClassVar[str] = "reasoning.end"
    signature: str | None = None
    encrypted: str | None = None
    redacted: bool = False
    id: str | None = None
    source: str | None = None


@attrs.frozen
class ToolCallStart:
    """The model began a tool call. ``call_id`` is unique within the response."""

    type: ClassVar[str] = "tool_call.start"
    call_id: str
    name: str


@attrs.frozen
class ToolCallDelta:
    """A fragment of a tool call's JSON arguments, in order."""

    type: ClassVar[str] = "tool_call.delta"
    call_id: str
    arguments: str


@attrs.frozen
class ToolCallEnd:
    """The tool call's arguments are complete."""

    type: ClassVar[str] = "tool_call.end"
    call_id: str


@attrs.frozen
class Finish:
    """The response ended. ``reason``: ``stop``, ``tool_calls``, ``length``,
    ``content_filter`` or a provider-specific string."""

    type: ClassVar[str] = "finish"
    reason: str


ModelEvent: TypeAlias = (
    TextDelta
    | ReasoningDelta
    | ReasoningEnd
    | ToolCallStart
    | ToolCallDelta
    | ToolCallEnd
    | Usage
    | Finish
)


class ModelProvider(ABC):
    """A source of model responses, serving the model refs ``<name>/<model>``.

    One ``stream`` call is one model call: the kernel owns the tool loop, executes tools
    and calls again with the results.
    """

    name: str
    """The namespace of the model refs this provider serves (``"openai"``)."""

    native_output: ClassVar[bool] = False
    """``True``: the provider sends ``request.output`` in the API's own JSON-schema mode
    and the answer arrives as text; ``False``: the kernel asks for the answer as a call
    of a final-answer tool instead."""

    def models(self) -> Sequence[str] | None:
        """The model names this provider knows, or ``None`` when it cannot say."""
        return None

    @abstractmethod
    def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Stream the response to ``request`` as ``ModelEvent`` values.

        Returns an async iterator (typically an async generator) that yields text,
        reasoning (``ReasoningDelta`` fragments, each block closed by an optional
        ``ReasoningEnd``) and tool-call events as they arrive, at most one ``Usage``,
        and ends with exactly one ``Finish``. Tool-call events for one ``call_id`` come as ``ToolCallStart``, zero or
        more ``ToolCallDelta``, then ``ToolCallEnd``.

        Raises a ``ProviderError`` subclass on failure: ``RateLimited`` (with
        ``retry_after``), ``ProviderUnavailable``, ``BadRequest``, ``ContextTooLong``,
        ``AuthenticationFailed`` or ``MalformedResponse``. It must not put secrets (API
        keys) in error messages. When the consumer stops iterating early (``aclose`` or
        cancellation), the provider releases its connection at once.
        """

    async def aclose(self) -> None:
        """Release clients and connections. Called once when the store closes."""


# -- storage -----------------------------------------------------------------------


@attrs.frozen
class StorageCapabilities:
    """What a backend guarantees beyond the contract's minimum."""

    cross_process_fencing: bool = False
    """``append``/``save`` compare-and-swap holds between OS processes and hosts."""
    durable: bool = False
    """Data survives the process (memory storage: no)."""
    watch: bool = False
    """``SessionStorage.watch`` is implemented: appends by any process, on any host, are
    announced to watchers without polling (Postgres: ``LISTEN``/``NOTIFY``)."""
    append_record: bool = False
    """``append`` takes ``record=``: the events and the record's save are one commit."""


class WatchNotice(NamedTuple):
    """``SessionStorage.watch`` announces: the log of ``session_id`` now ends at ``last_seq``.

    It carries no events: read them with ``read(session_id, after_seq=<what you had>)``.
    ``last_seq == 0`` says the session was deleted (it may have been created again).
    """

    session_id: str
    last_seq: int


def _tag_set(tags: Iterable[str]) -> frozenset[str]:
    return frozenset(tags)


ListOrder: TypeAlias = Literal["created", "updated"]
"""The orders ``SessionStorage.list`` offers: newest ``created_at`` first (the contract's
default), or most recently ``updated_at`` first; ties go by ``id`` descending."""


@attrs.frozen
class SessionFilter:
    """What ``SessionStorage.list`` keeps: an agent name, labels and tags that must all
    match, and ``pinned`` (``None``: either)."""

    agent: str | None = None
    labels: Mapping[str, str] = attrs.field(factory=dict)
    tags: frozenset[str] = attrs.field(default=frozenset(), converter=_tag_set)
    pinned: bool | None = None

    def matches(self, record: SessionRecord) -> bool:
        if self.agent is not None and record.agent != self.agent:
            return False
        if self.pinned is not None and record.pinned != self.pinned:
            return False
        if self.tags and not self.tags.issubset(record.tags):
            return False
        return all(record.labels.get(k) == v for k, v in self.labels.items())


@attrs.frozen
class Page:
    """One page of a listing; pass ``next_cursor`` back to get the next, ``None`` at the end."""

    items: tuple[Any, ...]
    next_cursor: str | None = None


class SessionStorage(ABC):
    """Durable home of session records and their append-only event logs.

    The order of ``list`` is fixed by the contract: newest ``created_at`` first, then
    ``id`` descending; a cursor from one page continues exactly after its last item.
    """

    capabilities: ClassVar[StorageCapabilities] = StorageCapabilities()

    @abstractmethod
    async def create(self, record: SessionRecord) -> None:
        """Store a new session record with an empty log.

        Raises ``SessionExists`` if the id exists. ``record.revision`` is stored as given.
        """

    @abstractmethod
    async def load(self, session_id: str) -> SessionRecord | None:
        """The stored record, or ``None`` when the session does not exist."""

    @abstractmethod
    async def save(self, record: SessionRecord, expected_revision: int) -> None:
        """Replace the record if the stored revision equals ``expected_revision``.

        ``record.revision`` must be ``expected_revision + 1`` (``ValueError`` otherwise).
        Raises ``Conflict`` when the stored revision differs (nothing is written) and
        ``SessionNotFound`` when the session does not exist.
        """

    @abstractmethod
    async def append(
        self,
        session_id: str,
        events: Sequence[Event],
        expected_seq: int,
        *,
        incarnation: str | None = None,
        record: SessionRecord | None = None,
    ) -> None:
        """Append ``events`` if the log's last sequence number equals ``expected_seq``.

        The events must be numbered ``expected_seq + 1``, ``expected_seq + 2``, ...
        (``ValueError`` otherwise). The batch is written whole or not at all. Raises
        ``Conflict`` when another writer moved the log ahead (nothing is written: a second
        writer never forks the log) and ``SessionNotFound`` when the session does not
        exist. When it returns, the events are as durable as the backend promises.

        With ``incarnation`` (the ``SessionRecord.incarnation`` the writer loaded), the
        check and the write are one atomic step: a session whose stored record has another
        non-empty incarnation (deleted and created again) raises ``IncarnationMismatch``
        and nothing is written. ``harness_kernel.storage.check_incarnation`` does the
        comparison.

        With ``record`` (passed only where ``capabilities.append_record``): also
        ``save(record, record.revision - 1)`` in the same transaction; ``Conflict`` when
        the log or the revision moved (neither is written), ``IncarnationMismatch`` as
        above, ``ValueError`` when ``record.id`` is not ``session_id``
        (``harness_kernel.storage.check_append_record``).
        """

    @abstractmethod
    async def read(
        self, session_id: str, after_seq: int = 0, limit: int | None = None
    ) -> list[Event]:
        """Events with ``seq > after_seq`` in order, at most ``limit`` of them.

        Raises ``SessionNotFound`` when the session does not exist.
        """

    @abstractmethod
    async def last_seq(self, session_id: str) -> int:
        """The sequence number of the last event (0 for an empty log).

        Raises ``SessionNotFound`` when the session does not exist.
        """

    @abstractmethod
    async def list(
        self,
        filter: SessionFilter,
        limit: int = 50,
        cursor: str | None = None,
        *,
        order: ListOrder = "created",
    ) -> Page:
        """A page of records matching ``filter``, in the contract's order (``order``:
        ``"created"``, or ``"updated"`` for most recently updated first).

        ``limit`` is at least 1. Raises ``ValueError`` for a cursor this backend did not
        produce, or one from a listing in another order. A backend written before
        ``order`` existed may omit the parameter: the store then refuses other orders.
        """

    @abstractmethod
    async def delete(self, session_id: str) -> bool:
        """Remove the record and its log; ``True`` if it existed."""

    def watch(
        self,
        session_ids: Collection[str] | None = None,
        *,
        after_seq: Mapping[str, int] | None = None,
    ) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[WatchNotice]]:
        """Optional (``capabilities.watch``): notices of events appended by any process.

        An async context manager yielding a channel of ``WatchNotice(session_id,
        last_seq)`` for the sessions in ``session_ids`` (``None``: every session)::

            async with storage.watch([sid], after_seq={sid: seen}) as notices:
                async for notice in notices:
                    events = await storage.read(notice.session_id, after_seq=seen)

        Once ``__aenter__`` returns, every append that commits afterwards is announced
        with a notice whose ``last_seq`` is at least the append's last seq; one notice may
        stand for several appends. ``after_seq`` maps session ids to the seq the caller
        has already read: a session whose log is already past it is announced at once,
        so a caller that reads and then watches misses nothing. Per session,
        ``last_seq`` grows from notice to notice, except for a notice of 0 (the session
        was deleted) and what follows it. A lost connection is reconnected (with
        backoff, for as long as the block lasts) and caught up: a notice for every
        watched session that moved meanwhile, so nothing is silently skipped. Entering
        raises ``StorageError`` when the database cannot be reached. A consumer that
        falls behind holds the backend back (the channel is bounded), it loses nothing.
        Leaving the block stops the watch and releases its connection.

        The default raises ``NotImplementedError``: backends without the capability do
        not offer it, and a caller polls ``last_seq`` instead.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not offer watch (capabilities.watch is False)"
        )

    async def aclose(self) -> None:
        """Release connections and files. Called once when the owning store closes."""


# -- sandboxes ---------------------------------------------------------------------


@attrs.frozen
class SessionInfo:
    """What a sandbox learns about the session it serves."""

    session_id: str
    agent: str
    labels: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class ExecResult:
    """The outcome of ``SandboxSession.exec``.

    ``exit_code`` is ``None`` when the process was killed by ``signal``; output beyond the
    sandbox's cap is cut and flagged ``stdout_truncated`` / ``stderr_truncated``.
    ``limit`` names the sandbox limit that stopped the command (``"cpu"``, ``"memory"``,
    ``"processes"``, ``"file_size"`` or ``"disk"``), ``None`` when none did.
    """

    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    signal: int | None = None
    timed_out: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration_ms: float = 0.0
    limit: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@attrs.frozen
class DirEntry:
    """One entry of ``list_dir``: a name relative to the listed directory."""

    name: str
    is_dir: bool
    size: int = 0


@attrs.frozen
class SandboxCapabilities:
    """What a sandbox offers; the conformance kit checks the rest raises ``SandboxUnavailable``."""

    exec: bool = True
    files: bool = True


class SandboxSession(ABC):
    """A session's workspace. Lives while its session is loaded, across runs.

    Paths are relative to the work directory; a path that escapes it raises
    ``SandboxPathError``. An operation the sandbox does not offer raises
    ``SandboxUnavailable``.
    """

    @abstractmethod
    async def exec(
        self,
        command: Sequence[str] | str,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | str | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run an argv list, or a shell command string, and wait for it.

        ``cwd`` is relative to the work directory; ``env`` adds variables to the
        sandbox's minimal environment. On ``timeout`` the whole process group is
        killed and the result has ``timed_out=True``. Raises ``SandboxError`` when the
        command cannot be started.
        """

    @abstractmethod
    async def read_file(self, path: str) -> bytes:
        """The file's content. Raises ``SandboxError`` (``FileNotFoundError`` as cause)."""

    @abstractmethod
    async def write_file(self, path: str, content: bytes | str) -> None:
        """Create or replace a file (str is written as UTF-8), creating parent dirs."""

    @abstractmethod
    async def list_dir(self, path: str = ".") -> list[DirEntry]:
        """The entries of a directory, sorted by name."""

    async def read_text(self, path: str) -> str:
        """``read_file`` decoded as UTF-8 (undecodable bytes replaced)."""
        return (await self.read_file(path)).decode("utf-8", errors="replace")

    @abstractmethod
    async def close(self, reason: str) -> None:
        """Release the session's processes; the work directory is kept. Idempotent."""


class Sandbox(ABC):
    """Creates workspaces for sessions."""

    capabilities: ClassVar[SandboxCapabilities] = SandboxCapabilities()

    @abstractmethod
    async def open(self, session: SessionInfo) -> SandboxSession:
        """Open (creating if needed) the workspace of ``session``."""

    @abstractmethod
    async def destroy(self, session_id: str) -> None:
        """Remove the session's workspace and everything in it. Idempotent."""

    async def aclose(self) -> None:
        """Release global resources. Called once when the store closes."""


# -- logging and retry ---------------------------------------------------------------


LOG_LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
}
"""The ``level`` names a log record may carry, with their ``logging`` numbers."""


class LogSink(ABC):
    """Receives structured log records (structlog event dicts, already redacted).

    ``level`` is the sink's own threshold (a ``logging`` level number); records below it
    are not written to this sink. ``write`` is called on the event loop and must not
    block for long (buffer, and write in ``flush``).
    """

    level: int = logging.INFO

    @abstractmethod
    def write(self, record: Mapping[str, Any]) -> None:
        """Take one record: keys ``event``, ``level``, ``timestamp``, ``store_agent`` and
        the event's own context (``session_id``, ``run_id``, ...)."""

    def flush(self) -> None:
        """Push buffered records to their destination."""

    async def aclose(self) -> None:
        """Flush and release. Called once when the store closes."""
        self.flush()


class RetryPolicy(ABC):
    """Decides whether and when a failed model call is tried again.

    The kernel consults it only while nothing from the failed attempt reached the user.
    """

    @abstractmethod
    def next_delay(self, error: BaseException, attempt: int) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to give up.

        ``attempt`` counts from 1 (the call that just failed).
        """
