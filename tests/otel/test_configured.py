"""Tracing set up from the config: ``[tracing] plugin = "otel"`` (and
``create_session_store(tracing=...)``) builds the exporter, and a missing OTLP exporter
package is a clear configuration error."""

from __future__ import annotations

import importlib
import json
import textwrap
from pathlib import Path

import pytest

from harness_kernel import create_session_store, define_agent
from harness_kernel.errors import ConfigError
from harness_kernel.testing import Reply, ScriptedProvider
from tests.cli.support import child_env, run_cli, write_deployment

ENV = child_env("sqlite,logging,otel")


def otlp_installed() -> bool:
    try:
        importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    except ImportError:
        return False
    return True


def spans_in(text: str) -> list[dict[str, object]]:
    """The JSON span objects the console exporter wrote (each spans several lines)."""
    decoder, spans, at = json.JSONDecoder(), [], 0
    while (start := text.find('{\n    "name"', at)) != -1:
        span, at = decoder.raw_decode(text, start)
        spans.append(span)
    return spans


async def test_the_store_exports_its_runs_through_the_configured_exporter(capsys: pytest.CaptureFixture[str]) -> None:
    """A console exporter from ``tracing=``: the run's spans are written, with the
    configured service name, by the time the store has closed (the batch is flushed)."""
    async with create_session_store(
        agent=define_agent(name="traced"),
        providers=[ScriptedProvider({"m": lambda request: Reply(text="hi")})],
        default_model="scripted/m",
        tracing={"plugin": "otel", "options": {"exporter": "console", "service_name": "test-svc"}},
    ) as store:
        await store.send("s1", "hello")
    spans = spans_in(capsys.readouterr().err)
    assert sorted(str(s["name"]) for s in spans) == ["chat m", "invoke_agent traced"]
    assert all(s["resource"]["attributes"]["service.name"] == "test-svc" for s in spans)  # type: ignore[index]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"exporter": "zipkin"}, "tracing.options.exporter: expected one of 'otlp', 'console'"),
        ({"exporter": "console", "endpoint": "127.0.0.1:4318"}, "tracing.options.endpoint: must start with http://"),
        ({"exporter": "console", "sample": 1}, "tracing.options: unknown key(s): sample"),
    ],
)
async def test_bad_tracing_options_are_config_errors_with_their_path(options: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        async with create_session_store(
            agent=define_agent(name="a"), tracing={"plugin": "otel", "options": options}
        ):
            pass
    assert expected in str(info.value)


async def test_an_unknown_tracing_plugin_is_named() -> None:
    with pytest.raises(ConfigError, match=r"tracing.plugin: unknown tracing plugin 'jaeger'"):
        async with create_session_store(agent=define_agent(name="a"), tracing={"plugin": "jaeger"}):
            pass


def test_a_deployment_traces_from_harness_toml(tmp_path: Path) -> None:
    """`harness-kernel send` with a [tracing] table: the spans of the run reach the
    configured exporter (console: stderr) before the command exits."""
    config = write_deployment(
        tmp_path / "d",
        module="otel_cli_agent",
        extra=textwrap.dedent(
            """
            [tracing]
            plugin = "otel"
            options = { exporter = "console", service_name = "cli-svc" }
            """
        ),
    )
    sent = run_cli("send", "s1", "hello", config=config, env=ENV)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout == "You said: hello\n"
    names = sorted(str(s["name"]) for s in spans_in(sent.stderr))
    assert names == ["chat main", "invoke_agent tester"]


def test_otlp_without_its_exporter_package_fails_the_config_clearly(tmp_path: Path) -> None:
    """`exporter = "otlp"` names the package it needs when that is not installed (and is
    a valid configuration where it is)."""
    config = write_deployment(
        tmp_path / "d",
        module="otel_otlp_agent",
        extra=textwrap.dedent(
            """
            [tracing]
            plugin = "otel"
            options = { exporter = "otlp", endpoint = "http://127.0.0.1:4318/v1/traces" }
            """
        ),
    )
    checked = run_cli("config", "check", config=config, env=ENV)
    if otlp_installed():
        assert checked.returncode == 0, checked.stderr
        assert "[tracing]" in checked.stdout
    else:
        assert checked.returncode == 2
        assert "tracing.options" in checked.stderr
        assert "needs the package opentelemetry-exporter-otlp-proto-http, which is not installed" in checked.stderr
