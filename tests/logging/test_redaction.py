"""Secrets in free text never reach a sink: the memory, jsonl and console sinks all
receive records whose strings (exception text included) went through one scrubber."""

from __future__ import annotations

import contextlib
import io
import json
import re
import types
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness_kernel import (
    MemoryLogSink,
    RunResult,
    ToolContext,
    create_session_store,
    define_agent,
    hookimpl,
    tool,
)
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall

MASK = "[redacted]"

# Passwords an operator might put in a DSN, unencoded characters included; drawn from
# characters the mask and the record keys do not use, so a hit is a real leak.
_passwords = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="\"'<>`\\[]redacting_sfoumlpvhwbk"),
    min_size=6, max_size=20,
).filter(lambda p: not p.isdigit())


@attrs.frozen
class KeyedOptions:
    api_key: str = attrs.field(metadata={"secret": True})


def _model(request: Any) -> Reply:
    last = request.messages[-1]
    if last.role == "tool":
        return Reply(text="done")
    if last.text.startswith("fail "):
        raise RuntimeError(last.text.removeprefix("fail "))
    return Reply(tool_calls=[ToolCall("connect", {})])


@hookimpl
def harness_kernel_providers(register: Any) -> None:
    register("keyed", lambda options: ScriptedProvider({"main": _model}, name="keyed"), options=KeyedOptions)


KEYED = types.SimpleNamespace(harness_kernel_providers=harness_kernel_providers, __name__="keyed_redaction_plugin")


async def _scenario(
    tmp: Path, failure: str, api_key: str, *, tools: list[Any], redact: tuple[str, ...] = ()
) -> tuple[MemoryLogSink, str, str, list[RunResult]]:
    """Two runs, with a memory, a jsonl and a console sink: one calls the ``connect``
    tool, the other's model call raises ``RuntimeError(failure)``. Returns the memory
    sink, the jsonl and console texts and both results."""
    memory = MemoryLogSink(level="debug")
    path = tmp / "log.jsonl"
    console = io.StringIO()
    results = []
    with contextlib.redirect_stderr(console):
        async with create_session_store(
            agent=define_agent(name="leaky", tools=tools),
            providers=[{"plugin": "keyed", "options": {"api_key": api_key}}],
            default_model="keyed/main", plugins=[KEYED], autoload_plugins=None,
            error_policy={"expose_internal_errors": True},
            logging={
                "level": "debug", "redact": list(redact),
                "sinks": [memory, {"plugin": "jsonl", "options": {"path": str(path)}},
                          {"plugin": "console", "options": {"format": "json"}}],
            },
        ) as store:
            results.append(await store.send("s1", "connect"))
            results.append(await store.send("s2", f"fail {failure}"))
    return memory, path.read_text(), console.getvalue(), results


def _connect_tool(dsn: str) -> Any:
    @tool
    async def connect(ctx: ToolContext) -> str:
        """Connect to the database."""
        ctx.log.warning("connecting", detail=f"opening {dsn}")
        raise RuntimeError(f"could not connect to {dsn}")

    return connect


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=_passwords)
def test_a_dsn_password_in_an_exception_reaches_no_sink(tmp_path_factory: pytest.TempPathFactory, password: str) -> None:
    """A tool raising ``RuntimeError("could not connect to postgres://app:PW@db/main")``
    and a model call raising the same: the ``tool_failed`` and ``run_failed`` records in
    the memory, jsonl and console sinks, and the run's error, show the URL with the
    password masked (scheme, user and host kept). The password was never configured."""
    dsn = f"postgres://app:{password}@db/main"
    memory, jsonl, console, results = trio.run(
        lambda: _scenario(
            tmp_path_factory.mktemp("dsn"), f"could not connect to {dsn}", "sk-unrelated-key-000",
            tools=[_connect_tool(dsn)],
        )
    )
    masked = "postgres://app:[redacted]@db/main"
    for name, text in (("memory", memory.text()), ("jsonl", jsonl), ("console", console)):
        assert password not in text, name
        assert masked in text, name
    failed = [r for r in memory.records if r["event"] == "tool_failed"]
    assert failed
    assert all(masked in r["error"] for r in failed)
    [run_failed] = [r for r in memory.records if r["event"] == "run_failed"]
    assert run_failed["error"] == f"RuntimeError: could not connect to {masked}"
    assert [json.loads(line)["event"] for line in console.splitlines()].count("run_failed") == 1
    error = results[1].error
    assert error is not None
    assert error.message == f"RuntimeError: could not connect to {masked}"


_short = st.text(st.sampled_from("QZ9xq#%"), min_size=1, max_size=3).filter(lambda s: re.search(r"\w", s) is not None)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(api_key=_short, pin=_short)
def test_a_configured_secret_of_three_characters_or_fewer_reaches_no_sink(
    tmp_path_factory: pytest.TempPathFactory, api_key: str, pin: str
) -> None:
    """A provider's ``api_key`` and a ``logging.redact`` value of one to three
    characters, logged by a tool and raised in an error as words of their own, are
    masked in every sink and in the run's error."""

    @tool
    async def connect(ctx: ToolContext) -> str:
        """Log both secrets, then fail with them."""
        ctx.log.warning("connecting", detail=f"key {api_key} pin ({pin})")
        raise RuntimeError(f"refused key {api_key}, pin {pin}")

    memory, jsonl, console, results = trio.run(
        lambda: _scenario(
            tmp_path_factory.mktemp("short"), f"refused key {api_key}, pin {pin}", api_key, tools=[connect],
            redact=(pin,),
        )
    )
    for name, text in (("memory", memory.text()), ("jsonl", jsonl), ("console", console)):
        records = [json.loads(line) for line in text.splitlines() if line]
        [said] = [r for r in records if r["event"] == "connecting"]
        assert said["detail"] == f"key {MASK} pin ({MASK})", name
        failed = [r for r in records if r["event"] == "tool_failed"]
        assert failed, name
        assert all(r["error"] == f"RuntimeError: refused key {MASK}, pin {MASK}" for r in failed), name
    error = results[1].error
    assert error is not None
    assert error.message == f"RuntimeError: refused key {MASK}, pin {MASK}"


async def test_an_exposed_tool_failure_reaches_the_model_without_url_credentials() -> None:
    """With expose_internal_errors, the tool's exception text becomes the result the
    model sees and the log keeps: a URL's password is masked there too."""
    from harness_kernel import (
        ModelRequest,
        ToolResultPart,
        create_session_store,
        define_agent,
        tool,
    )
    from harness_kernel.testing import Reply, ScriptedProvider, ToolCall

    @tool
    async def connect() -> str:
        """Connect."""
        raise RuntimeError("could not connect to postgres://app:S3cretDsnPw77@db/main")

    def brain(request: ModelRequest) -> Reply:
        last = request.messages[-1]
        if any(isinstance(p, ToolResultPart) for p in last.parts):
            return Reply(text=last.parts[0].content)
        return Reply(tool_calls=[ToolCall("connect", {})])

    async with create_session_store(
        agent=define_agent(name="a", tools=[connect]), providers=[ScriptedProvider({"main": brain})],
        default_model="scripted/main", autoload_plugins=False, error_policy={"expose_internal_errors": True},
    ) as store:
        result = await store.send("s1", "go")
        events = await store.storage.read("s1")
    assert "S3cretDsnPw77" not in result.text
    assert "postgres://app:[redacted]@db/main" in result.text
    assert not any("S3cretDsnPw77" in str(e.payload) for e in events)
