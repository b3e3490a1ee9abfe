"""The behaviour both HTTP providers must show through the kernel, written once.

``ProviderSuite`` is a test class; ``tests/openai`` and ``tests/anthropic`` subclass it
with their wire format and plugin name. Every test runs a real store (memory storage)
with the provider built by plugin name from options, against a scripted API on the
loopback server: retries and their delays (under trio's MockClock), faults in the
middle of a stream, timeouts, oversized and malformed responses, aborts that must
close the HTTP connection, secrets that must stay out of errors and logs, the
conformance kit, and an agent whose tools run end to end.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import trio
import trio.testing

from harness_kernel import (
    MemoryLogSink,
    SessionStore,
    TextDelta,
    create_session_store,
    define_agent,
    tool,
)
from harness_kernel.testing import check_provider

from .events import collect, request
from .loopback import LoopbackServer
from .scripted import (
    Broken,
    Call,
    Hang,
    Reply,
    ScriptedAPI,
    Status,
    Wire,
    model_request_from_wire,
    reply_from_kernel,
)

__all__ = ["AGENT", "KEY", "ProviderSuite"]

KEY = "sk-suite-0123456789abcdefABCDEF"
LOOKUPS: list[str] = []


@tool
async def lookup(word: str) -> str:
    """Look a word up in the dictionary."""
    LOOKUPS.append(word)
    return f"{word}: a Python library for structured concurrency"


AGENT = define_agent(name="dictionary", instructions="You look words up before answering.", tools=[lookup])
RETRY = {"attempts": 3, "base_delay": 0.5, "max_delay": 30.0}
QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "notes_agent.py"


def _quickstart() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quickstart_notes_agent", QUICKSTART)
    assert spec is not None, f"no quickstart agent at {QUICKSTART}"
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ProviderSuite:
    """Subclass with ``wire``, ``plugin``, ``model`` and the three wire-specific hooks."""

    wire: ClassVar[Wire]
    plugin: ClassVar[str]
    model: ClassVar[str]  # the model name inside the namespace

    # -- wire-specific hooks -------------------------------------------------------

    def options(self, server: LoopbackServer, **extra: Any) -> dict[str, Any]:
        raise NotImplementedError

    def make_provider(self, server: LoopbackServer, **extra: Any) -> Any:
        raise NotImplementedError

    def tool_results(self, body: Any) -> list[tuple[str, str]]:
        """(call_id, content) of the tool results in a request body, in order."""
        raise NotImplementedError

    def tool_calls_sent(self, body: Any) -> list[tuple[str, str, dict[str, Any]]]:
        """(call_id, name, arguments) of the assistant tool calls a request body replays."""
        raise NotImplementedError

    # -- helpers ---------------------------------------------------------------------

    @property
    def ref(self) -> str:
        return f"{self.plugin}/{self.model}"

    @asynccontextmanager
    async def store(
        self, server: LoopbackServer, *, retry: dict[str, Any] | None = None, sink: MemoryLogSink | None = None, **extra: Any
    ) -> AsyncIterator[SessionStore]:
        async with create_session_store(
            agent=AGENT,
            providers=[{"plugin": self.plugin, "options": self.options(server, **extra)}],
            default_model=self.ref,
            error_policy={"retry": {"policy": "exponential", "model": retry or RETRY}},
            logging={"level": "debug", "sinks": [sink]} if sink is not None else None,
        ) as store:
            yield store

    def serve(self, server: LoopbackServer, respond: Any, **kwargs: Any) -> ScriptedAPI:
        api = ScriptedAPI(self.wire, respond, **kwargs)
        server.handler = api
        return api

    # -- retries -------------------------------------------------------------------------

    async def test_rate_limit_is_retried_after_the_delay_the_api_asked_for(
        self, loopback: LoopbackServer, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A 429 with Retry-After: 7 is retried once 7 seconds (mock time) have passed,
        and the run completes with the second answer."""
        self.serve(loopback, [self.rate_limited(retry_after="7"), Reply("Hello after waiting.")])
        async with self.store(loopback) as store:
            result = await store.send("s1", "hi")
        assert (result.status, result.text) == ("completed", "Hello after waiting.")
        first, second = loopback.requests
        assert 7.0 <= second.at - first.at < 7.5

    def rate_limited(self, retry_after: str) -> Status:
        raise NotImplementedError

    def server_error(self) -> Status:
        raise NotImplementedError

    async def test_server_errors_are_retried_then_reported_without_secrets(
        self, loopback: LoopbackServer, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Three 500s with attempts=3: three requests, then the run fails with a sanitized,
        retryable provider.unavailable error; the session answers the next message."""
        self.serve(loopback, [self.server_error()] * 3 + [Reply("Back again.")])
        async with self.store(loopback) as store:
            result = await store.send("s1", "hi")
            assert result.status == "failed"
            assert result.error is not None
            assert (result.error.code, result.error.retryable) == ("provider.unavailable", True)
            assert "HTTP 500" in result.error.message
            assert KEY not in result.error.message
            assert len(loopback.requests) == 3
            again = await store.send("s1", "still there?")
        assert (again.status, again.text) == ("completed", "Back again.")

    async def test_a_hanging_server_times_out_and_the_call_is_retried(
        self, loopback: LoopbackServer, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A server that never answers trips the request timeout (30 s, mock time); nothing
        was shown, so the call is retried and the run completes."""
        self.serve(loopback, [Hang(), Reply("Finally.")])
        async with self.store(loopback, timeout=30.0) as store:
            result = await store.send("s1", "hi")
        assert (result.status, result.text) == ("completed", "Finally.")
        first, second = loopback.requests
        assert second.at - first.at >= 30.0
        assert first.connection.closed.is_set()

    async def test_a_stall_after_text_times_out_and_is_not_retried(
        self, loopback: LoopbackServer, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Text arrived, then the server went silent: the timeout fails the run (no retry,
        the user saw output), the partial text is kept, the session goes on."""
        self.serve(loopback, [Broken(Reply("Part of an answer that never ends"), "hang", texts=3), Reply("Next.")])
        async with self.store(loopback, timeout=30.0) as store:
            result = await store.send("s1", "hi")
            assert result.status == "failed"
            assert result.error is not None
            assert result.error.code == "provider.unavailable"
            assert "timed out" in result.error.message
            assert len(loopback.requests) == 1
            session = store.get("s1")
            assert session is not None
            history = await session.history()
            assert (history[-1].role, history[-1].text) == ("assistant", "Part of an ")
            again = await store.send("s1", "go on")
        assert again.text == "Next."

    # -- faults in the stream ------------------------------------------------------------

    async def _fails_after_text(self, loopback: LoopbackServer, how: str, code: str, **extra: Any) -> None:
        text_seen = trio.Event()
        self.serve(loopback, [Broken(Reply("The answer is forty two"), how, texts=2, wait=text_seen), Reply("Fine now.")])  # type: ignore[arg-type]
        async with self.store(loopback, **extra) as store:
            session = await store.create("s1")
            async with session.stream("hi") as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        text_seen.set()
            result = events.result
            assert result is not None
            assert result.status == "failed"
            assert result.error is not None
            assert result.error.code == code
            assert KEY not in result.error.message
            assert len(loopback.requests) == 1, "output reached the user: no retry"
            history = await session.history()
            assert [m.role for m in history] == ["user", "assistant"]
            assert history[-1].text == "The answer "
            again = await session.send("and now?")
            assert (again.status, again.text) == ("completed", "Fine now.")
            assert [m.text for m in await session.history()][-2:] == ["and now?", "Fine now."]

    async def test_a_connection_reset_after_text_fails_the_run_and_keeps_the_partial_text(self, loopback: LoopbackServer) -> None:
        """A TCP reset mid-stream, after text reached the user: not retried, the run fails
        cleanly (provider.unavailable), the partial text is recorded as the assistant's."""
        await self._fails_after_text(loopback, "reset", "provider.unavailable")
        assert loopback.connections[0].reset_by_server

    async def test_a_connection_closed_inside_the_body_fails_the_run(self, loopback: LoopbackServer) -> None:
        """The server closes the connection in the middle of the chunked body: same as a reset."""
        await self._fails_after_text(loopback, "close", "provider.unavailable")

    async def test_a_truncated_stream_is_a_malformed_response(self, loopback: LoopbackServer) -> None:
        """The body ends cleanly but without the API's final event: a clear
        provider.malformed_response error, partial text kept."""
        await self._fails_after_text(loopback, "truncate", "provider.malformed_response")

    async def test_malformed_json_in_a_chunk_is_a_malformed_response(self, loopback: LoopbackServer) -> None:
        """A chunk that is not JSON stops the stream with provider.malformed_response."""
        await self._fails_after_text(loopback, "malformed", "provider.malformed_response")

    async def test_an_oversized_response_is_refused(self, loopback: LoopbackServer) -> None:
        """A response larger than max_response_bytes stops with a clear error naming the cap."""
        self.serve(loopback, [Reply("x" * 20_000, text_chunks=40), Reply("Small.")])
        async with self.store(loopback, max_response_bytes=4096) as store:
            result = await store.send("s1", "hi")
            assert result.status == "failed"
            assert result.error is not None
            assert result.error.code == "provider.malformed_response"
            assert "max_response_bytes (4096 bytes)" in result.error.message
            again = await store.send("s1", "shorter please")
        assert again.text == "Small."

    # -- cancellation ----------------------------------------------------------------------

    async def test_abort_closes_the_http_connection_at_once(self, loopback: LoopbackServer) -> None:
        """Aborting a run mid-stream closes its HTTP connection (the server sees it go) and
        records the partial text; the run ends aborted."""
        self.serve(loopback, [Broken(Reply("Streaming slowly now"), "hang", texts=1), Reply("Later.")])
        async with self.store(loopback) as store:
            session = await store.create("s1")
            async with session.stream("hi") as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        await session.abort()
            assert events.result is not None
            assert events.result.status == "aborted"
            with trio.fail_after(10):  # a hang guard, not a timing assertion
                await loopback.connections[0].closed.wait()
            history = await session.history()
            assert (history[-1].role, history[-1].text) == ("assistant", "Streaming ")
            again = await session.send("again")
            assert again.text == "Later."

    async def test_closing_the_provider_stream_early_closes_the_connection(self, loopback: LoopbackServer) -> None:
        """``aclose`` on the provider's stream after one event closes the HTTP connection."""
        self.serve(loopback, [Broken(Reply("One two three"), "hang", texts=1)])
        provider = self.make_provider(loopback)
        try:
            stream = provider.stream(request(self.model))
            event = await stream.__anext__()
            while not isinstance(event, TextDelta):
                event = await stream.__anext__()
            await stream.aclose()
            with trio.fail_after(10):
                await loopback.connections[0].closed.wait()
        finally:
            await provider.aclose()

    async def test_cancelling_a_read_closes_the_connection(self, loopback: LoopbackServer) -> None:
        """Cancellation while the provider waits for data propagates and closes the connection."""
        self.serve(loopback, [Broken(Reply("One two three"), "hang", texts=1)])
        provider = self.make_provider(loopback)
        try:
            with trio.move_on_after(0.2) as scope:  # cancels the blocked read
                await collect(provider, request(self.model))
            assert scope.cancelled_caught
            with trio.fail_after(10):
                await loopback.connections[0].closed.wait()
        finally:
            await provider.aclose()

    # -- secrets ---------------------------------------------------------------------------

    def auth_error_echoing(self, key: str) -> Status:
        raise NotImplementedError

    async def test_the_api_key_never_appears_in_errors_or_logs(self, loopback: LoopbackServer) -> None:
        """A server that echoes the key in a 401 body: the key reached the server, but not
        the run's error, nor a single debug log record."""
        sink = MemoryLogSink(level="debug")
        self.serve(loopback, [self.auth_error_echoing(KEY)])
        async with self.store(loopback, sink=sink) as store:
            result = await store.send("s1", "hi")
        assert result.status == "failed"
        assert result.error is not None
        assert result.error.code == "provider.authentication"
        assert KEY not in result.error.message
        assert KEY[:12] not in result.error.message
        assert sink.records, "the store logged nothing at debug level"
        assert KEY not in sink.text()
        assert any(KEY in value for value in loopback.requests[0].headers.values())

    # -- the contract and a real agent --------------------------------------------------------

    async def test_check_provider_passes(self, loopback: LoopbackServer) -> None:
        """The conformance kit's provider contract holds against the scripted API."""

        def respond(body: Any) -> Any:
            if body["model"] == "missing-model":
                return self.model_not_found()
            if body.get("tools"):
                return Reply(calls=[Call("lookup", {"q": "trio"})])
            return Reply("Hello there, nice to meet you.")

        self.serve(loopback, respond)
        passed = await check_provider(lambda: self.make_provider(loopback), model=self.model, missing_model="missing-model")
        assert "an_unknown_model_raises_provider_error" in passed

    def model_not_found(self) -> Status:
        raise NotImplementedError

    async def test_an_agent_runs_its_tools_end_to_end(self, loopback: LoopbackServer) -> None:
        """The server calls two tools in one response, the kernel runs them, the results go
        back in the API's own shape, and the final answer uses them."""
        LOOKUPS.clear()

        def respond(body: Any) -> Any:
            results = self.tool_results(body)
            if not results:
                return Reply(
                    "Let me check.",
                    calls=[Call("lookup", {"word": "trio"}, fragments=4), Call("lookup", {"word": "httpx"})],
                )
            return Reply(" / ".join(content for _, content in results))

        api = self.serve(loopback, respond)
        async with self.store(loopback) as store:
            result = await store.send("s1", "What are trio and httpx?")
        assert result.status == "completed"
        assert LOOKUPS == ["trio", "httpx"]
        assert result.text == (
            "trio: a Python library for structured concurrency / httpx: a Python library for structured concurrency"
        )
        assert [(c.name, dict(c.arguments)) for c in result.tool_calls] == [
            ("lookup", {"word": "trio"}), ("lookup", {"word": "httpx"}),
        ]
        assert len(api.answers) == 2
        second = loopback.requests[1].json
        calls = self.tool_calls_sent(second)
        assert [(name, args) for _, name, args in calls] == [("lookup", {"word": "trio"}), ("lookup", {"word": "httpx"})]
        assert [call_id for call_id, _ in self.tool_results(second)] == [call_id for call_id, _, _ in calls]

    async def test_the_quickstart_agent_runs_end_to_end(self, loopback: LoopbackServer) -> None:
        """The quickstart's notes agent over the real wire: the server answers with the
        quickstart's own scripted model (reading the request the provider sent), the
        save_note call waits for approval, runs once approved, and the notes are
        remembered on the next turn."""
        quickstart = _quickstart()
        self.serve(loopback, lambda body: reply_from_kernel(quickstart.notes_model(model_request_from_wire(self.wire, body))))
        async with create_session_store(
            agent=quickstart.agent,
            providers=[{"plugin": self.plugin, "options": self.options(loopback)}],
            default_model=self.ref,
        ) as store:
            hello = await store.send("user-1", "hello")
            assert hello.text == "Hello! I keep notes for you. Ask me to remember something."
            parked = await store.send("user-1", "remember to buy milk")
            assert parked.status == "waiting_approval"
            (pending,) = store.pending_approvals("user-1")
            assert (pending.tool, dict(pending.arguments)) == ("save_note", {"title": "reminder", "text": "to buy milk"})
            done = await store.approve("user-1", pending.approval_id)
            assert done is not None
            assert (done.status, done.text) == ("completed", "Done: saved note 'reminder' (11 characters). Anything else?")
            recall = await store.send("user-1", "what do I have?")
            assert recall.text == "You have 1 note(s): saved note 'reminder' (11 characters)."
        assert loopback.requests[0].json["model"] == self.model

    async def test_model_errors_are_provider_errors(self, loopback: LoopbackServer) -> None:
        """An unknown model is a ProviderError that is not retryable (no second request)."""
        self.serve(loopback, [self.model_not_found()])
        async with self.store(loopback) as store:
            result = await store.send("s1", "hi")
        assert result.status == "failed"
        assert result.error is not None
        assert result.error.code == "provider.bad_request"
        assert len(loopback.requests) == 1

