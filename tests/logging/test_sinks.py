"""The console and jsonl sinks: levels per sink, redaction, rotation, buffering."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import types
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness_kernel import ToolContext, create_session_store, define_agent, hookimpl, tool
from harness_kernel.testing import Reply, ScriptedProvider, ToolCall
from harness_kernel_logging import ConsoleSink, JsonlSink


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@tool
async def chatty(ctx: ToolContext, level: str) -> str:
    """Log one record at ``level`` with a secret-looking payload."""
    getattr(ctx.log, level)(
        "tool_says", level_asked=level, api_key="plain-key-0000", note="the key sk-test-SECRET-123456 leaked",
        detail="hunter2-password inside",
    )
    return "logged"


def model(request: Any) -> Reply:
    last = request.messages[-1]
    if last.role == "tool":
        return Reply(text="ok")
    if last.text == "fail":
        raise RuntimeError("boom")
    return Reply(tool_calls=[ToolCall("chatty", {"level": last.text})])


@attrs.frozen
class KeyedOptions:
    api_key: str = attrs.field(metadata={"secret": True})


@hookimpl
def harness_kernel_providers(register: Any) -> None:
    register("keyed", lambda options: ScriptedProvider({"main": model}, name="keyed"), options=KeyedOptions)


KEYED = types.SimpleNamespace(harness_kernel_providers=harness_kernel_providers, __name__="keyed_test_plugin")


async def test_each_sink_keeps_the_records_at_or_above_its_own_level(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three sinks on one store, at debug, error and warning: each receives exactly the
    records at or above its level; the jsonl files are complete once the store closed."""
    everything, errors = tmp_path / "all.jsonl", tmp_path / "errors.jsonl"
    async with create_session_store(
        agent=define_agent(name="logger", tools=[chatty]),
        providers=[{"plugin": "keyed", "options": {"api_key": "sk-test-SECRET-123456"}}],
        default_model="keyed/main",
        plugins=[KEYED],
        logging={
            "level": "info",
            "sinks": [
                {"plugin": "jsonl", "level": "debug", "options": {"path": str(everything)}},
                {"plugin": "jsonl", "level": "error", "options": {"path": str(errors)}},
                {"plugin": "console", "level": "warning", "options": {"format": "json"}},
            ],
        },
    ) as store:
        for level in ("debug", "info", "warning"):
            assert (await store.send("s1", level)).status == "completed"
        assert (await store.send("s1", "fail")).status == "failed"

    levels = [(r["event"], r["level"]) for r in read_records(everything)]
    said = [r["level_asked"] for r in read_records(everything) if r["event"] == "tool_says"]
    assert said == ["debug", "info", "warning"]
    assert ("store_opened", "info") in levels
    assert ("run_failed", "error") in levels
    assert [r["event"] for r in read_records(errors)] == ["run_failed"]
    console = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert {r["level"] for r in console} == {"warning", "error"}
    assert [r["level_asked"] for r in console if r["event"] == "tool_says"] == ["warning"]


async def test_secrets_never_reach_a_sink(tmp_path: Path) -> None:
    """Sensitive keys, secret option values (wherever they appear in a string) and the
    values listed in logging.redact are masked before any sink writes."""
    path = tmp_path / "log.jsonl"
    async with create_session_store(
        agent=define_agent(name="logger", tools=[chatty]),
        providers=[{"plugin": "keyed", "options": {"api_key": "sk-test-SECRET-123456"}}],
        default_model="keyed/main",
        plugins=[KEYED],
        logging={"sinks": [{"plugin": "jsonl", "options": {"path": str(path)}}], "redact": ["hunter2-password"]},
    ) as store:
        await store.send("s1", "info")
    text = path.read_text()
    for secret in ("plain-key-0000", "sk-test-SECRET-123456", "hunter2-password"):
        assert secret not in text
    [said] = [r for r in read_records(path) if r["event"] == "tool_says"]
    assert said["api_key"] == "[redacted]"
    assert said["note"] == "the key [redacted] leaked"
    assert said["detail"] == "[redacted] inside"


def record(seq: int, size: int = 0, level: str = "info") -> dict[str, Any]:
    return {"timestamp": "2025-01-01T00:00:00Z", "level": level, "event": "e", "seq": seq, "pad": "x" * size}


def log_files(path: Path) -> list[Path]:
    """Rotated files oldest first, then the current one."""
    rotated = sorted(path.parent.glob(path.name + ".*"), key=lambda p: int(p.suffix[1:]))
    return [*rotated, path] if path.exists() else rotated


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=600), min_size=1, max_size=80),
    max_bytes=st.integers(min_value=50, max_value=2000),
    buffer_bytes=st.sampled_from([0, 100, 4096, 1 << 20]),
    flush_every=st.integers(min_value=0, max_value=10),
)
def test_rotation_keeps_every_record_whole_and_in_order(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], max_bytes: int, buffer_bytes: int, flush_every: int
) -> None:
    """Whatever the record sizes, limits and flushes: reading the rotated files oldest
    first, then the current file, gives every record exactly once, in order, each line
    whole; no file passes max_bytes unless it holds a single record larger than that."""
    path = tmp_path_factory.mktemp("rot") / "log.jsonl"
    sink = JsonlSink(path, max_bytes=max_bytes, buffer_bytes=buffer_bytes)
    for seq, size in enumerate(sizes):
        sink.write(record(seq, size))
        if flush_every and seq % flush_every == 0:
            sink.flush()
    sink.close()
    seen = []
    for file in log_files(path):
        lines = file.read_bytes().split(b"\n")
        assert lines[-1] == b""  # every record ends with its newline
        parsed = [json.loads(line) for line in lines[:-1]]
        seen += [r["seq"] for r in parsed]
        assert file.stat().st_size <= max_bytes or len(parsed) == 1
    assert seen == list(range(len(sizes)))


def test_keep_bounds_the_rotated_files_and_numbering_continues_after_a_restart(tmp_path: Path) -> None:
    """With keep=N only the N newest rotated files stay; a new sink on the same path
    (a restarted process) appends and numbers its rotations after the existing ones."""
    path = tmp_path / "log.jsonl"
    sink = JsonlSink(path, max_bytes=300, buffer_bytes=0, keep=2)
    for seq in range(20):
        sink.write(record(seq, 100))
    sink.close()
    first = [p.name for p in log_files(path)]
    assert len(first) == 3
    restarted = JsonlSink(path, max_bytes=300, buffer_bytes=0, keep=2)
    for seq in range(20, 30):
        restarted.write(record(seq, 100))
    restarted.close()
    names = [p.name for p in log_files(path)]
    assert len(names) == 3
    numbers = [int(n.rpartition(".")[2]) for n in names[:-1]]
    assert numbers[0] > int(first[0].rpartition(".")[2])
    seqs = [r["seq"] for p in log_files(path) for r in read_records(p)]
    assert seqs == list(range(seqs[0], 30))  # the newest records, contiguous


def test_records_are_buffered_until_a_warning_a_flush_or_close(tmp_path: Path) -> None:
    """Info records wait in memory (no write per record on the event loop); a record at
    flush_level writes everything before it too; close writes the rest."""
    path = tmp_path / "log.jsonl"
    sink = JsonlSink(path, buffer_bytes=1 << 20, flush_level="warning")
    sink.write(record(0))
    sink.write(record(1))
    assert not path.exists() or path.read_text() == ""
    sink.write(record(2, level="warning"))
    assert [r["seq"] for r in read_records(path)] == [0, 1, 2]
    sink.write(record(3))
    sink.flush()
    assert [r["seq"] for r in read_records(path)] == [0, 1, 2, 3]
    sink.write(record(4))
    sink.close()
    assert [r["seq"] for r in read_records(path)] == [0, 1, 2, 3, 4]
    sink.write(record(5))  # a record after close reopens the file
    sink.close()
    assert [r["seq"] for r in read_records(path)] == [0, 1, 2, 3, 4, 5]


async def test_aclose_flushes_in_a_worker_thread(tmp_path: Path) -> None:
    """The store's aclose of the sink leaves every buffered record in the file."""
    path = tmp_path / "log.jsonl"
    sink = JsonlSink(path)
    for seq in range(100):
        sink.write(record(seq))
    await sink.aclose()
    assert [r["seq"] for r in read_records(path)] == list(range(100))


def test_bad_jsonl_options_are_refused() -> None:
    """Negative sizes, keep < 1 and unknown flush levels are refused with the option name."""
    with pytest.raises(ValueError, match="max_bytes must be 0 or more, got -1"):
        JsonlSink("x.jsonl", max_bytes=-1)
    with pytest.raises(ValueError, match="keep must be at least 1"):
        JsonlSink("x.jsonl", keep=0)
    with pytest.raises(ValueError, match="flush_level must be one of"):
        JsonlSink("x.jsonl", flush_level="loud")


def test_console_is_json_when_piped_and_pretty_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """format=auto: JSON lines when stderr is not a terminal; on a terminal, a readable
    line with colours (unless NO_COLOR is set); format=pretty/json force either."""
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    ConsoleSink().write(record(1))
    assert json.loads(piped.getvalue()) == record(1)

    master, slave = os.openpty()
    terminal = os.fdopen(slave, "w")
    try:
        monkeypatch.setattr(sys, "stderr", terminal)
        monkeypatch.delenv("NO_COLOR", raising=False)
        ConsoleSink().write({"timestamp": "2025-01-01T12:00:01.123456Z", "level": "warning", "event": "slow", "ms": 12})
        colored = os.read(master, 4096).decode()
        assert "\x1b[33mwarning" in colored
        assert "12:00:01.123" in colored
        monkeypatch.setenv("NO_COLOR", "1")
        ConsoleSink().write({"timestamp": "2025-01-01T12:00:01Z", "level": "info", "event": "ready", "port": 80})
        plain = os.read(master, 4096).decode()
        assert plain.strip() == "12:00:01 info     ready                    port=80"
    finally:
        terminal.close()
        os.close(master)

    forced = io.StringIO()
    monkeypatch.setattr(sys, "stderr", forced)
    ConsoleSink(format="pretty").write({"level": "error", "event": "oops", "why": "a b"})
    assert forced.getvalue().strip() == 'error    oops                     why="a b"'


def test_console_writes_to_stdout_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    """stream=stdout sends records to standard output instead of standard error."""
    sink = ConsoleSink(stream="stdout", level=logging.DEBUG)
    sink.write(record(7))
    captured = capsys.readouterr()
    assert (json.loads(captured.out)["seq"], captured.err) == (7, "")
