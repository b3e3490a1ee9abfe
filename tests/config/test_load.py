"""load_config and open_store_from_config: interpolation, imports, resolution, errors."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from harness_kernel import ErrorPolicy, MemoryLogSink
from harness_kernel.config import (
    ConfigFileError,
    interpolate,
    load_config,
    open_store_from_config,
)
from harness_kernel.errors import ConfigError
from tests.config.conftest import Deployment


def errors_of(path: Path, **environ: str) -> tuple[str, ...]:
    with pytest.raises(ConfigFileError) as caught:
        load_config(path, environ=environ)
    assert isinstance(caught.value, ConfigError)
    return caught.value.errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${A}", "alpha"),
        ("x-${A}-${B}", "x-alpha-"),
        ("${MISSING:-fallback}", "fallback"),
        ("${B:-empty means default}", "empty means default"),
        ("${MISSING:-${A}/data}", "alpha/data"),
        ("${MISSING:-${ALSO_MISSING:-deep}}", "deep"),
        ("$${A} costs $5 and $$", "${A} costs $5 and $$"),
        ("no references", "no references"),
    ],
)
def test_interpolation_replaces_variables_and_nested_defaults(text: str, expected: str) -> None:
    """${VAR} takes the variable; ${VAR:-default} the default when unset or empty, with
    nested references in the default; $${ is a literal ${; other $ stay."""
    assert interpolate(text, {"A": "alpha", "B": ""}) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${MISSING}", "environment variable MISSING is not set (write ${MISSING:-default} to give a default)"),
        ("${1BAD}", "malformed reference at character 1: write ${NAME} or ${NAME:-default}"),
        ("${A", "malformed reference ${A...: write ${A} or ${A:-default}"),
        ("${A:-open", "unterminated reference ${A:-... (missing '}')"),
    ],
)
def test_interpolation_errors_name_the_problem(text: str, message: str) -> None:
    """A missing variable or a malformed reference is an error that says which."""
    with pytest.raises(ValueError) as caught:
        interpolate(text, {"A": "alpha"})
    assert str(caught.value) == message


def test_a_minimal_config_resolves_to_the_kernel_defaults(deployment: Deployment) -> None:
    """Only `agent` is required; everything else takes the kernel's defaults."""
    config = load_config(deployment.write('agent = "MODULE:agent"\n'), environ={})
    assert config.agent.name == "cfg"
    assert (config.default_model, config.storage.plugin, config.sandbox.plugin) == ("scripted/echo", "memory", "noop")
    assert [p.plugin for p in config.providers] == ["scripted"]
    assert config.error_policy == ErrorPolicy()
    assert config.logging.sinks == ()
    assert config.path == deployment.directory / "harness.toml"


def test_the_agent_and_plugin_modules_are_imported_relative_to_the_file(deployment: Deployment, tmp_path: Path) -> None:
    """`agent` and `[[plugins]]` modules are found next to the config file whatever the
    working directory; a plugin module's registrations can be named below it."""
    path = deployment.write(
        """
        agent = "MODULE:agent"
        default_model = "extra/x"
        [[plugins]]
        module = "MODULE"
        [[providers]]
        plugin = "extra"
        """
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = os.getcwd()
    os.chdir(elsewhere)
    try:
        config = load_config(os.path.relpath(path, elsewhere), environ={})
    finally:
        os.chdir(cwd)
    assert [p.plugin for p in config.providers] == ["extra"]
    assert config.plugin_modules == (deployment.module,)


def test_every_error_is_reported_at_once_with_its_path(deployment: Deployment) -> None:
    """One load reports every problem of the file, each with the path of the bad key."""
    path = deployment.write(
        """
        agent = "MODULE:not_an_agent"
        colour = "blue"
        default_model = "nowhere/model"
        storage = { plugin = "memory", options = { path = "${NO_SUCH_VARIABLE}" } }
        sandbox = { plugn = "noop" }
        [[providers]]
        plugin = "scripted"
        [[providers]]
        plugin = "scripted"
        [logging]
        level = "loud"
        sinks = [{ plugin = "memory", options = { max_records = "many" } }, { plugin = "nosuch" }]
        redact = [1]
        [error_policy]
        context_failure = "explode"
        """
    )
    errors = errors_of(path)
    assert errors == (
        "storage.options.path: environment variable NO_SUCH_VARIABLE is not set (write ${NO_SUCH_VARIABLE:-default} to give a default)",
        "colour: unknown key (known keys: agent, default_model, strict_plugins, autoload_plugins, grace_period, plugins, providers, storage, sandbox, logging, error_policy, tools, mcp_servers, prices, budget, tracing, server)",
        f"agent: '{deployment.module}:not_an_agent' is a int, not an agent made by define_agent(...)",
        "providers[1]: two providers serve the namespace 'scripted' (also providers[0])",
        "default_model: no configured provider serves 'nowhere/model' (configured namespaces: scripted)",
        "storage.options.path: unknown key (storage 'memory' takes no options)",
        "sandbox.plugn: unknown key (did you mean 'plugin'?)",
        "logging.level: unknown log level 'loud' (use debug, info, warning, error, critical)",
        "logging.redact[0]: expected str, got int",
        "logging.sinks[0].options.max_records: expected int, got str",
        f"logging.sinks[1].plugin: unknown log sink plugin 'nosuch' (installed: {_sinks()})",
        "error_policy.context_failure: expected one of 'fail', 'skip_optional'",
    )


def _sinks() -> str:
    from harness_kernel import PluginRegistry

    return ", ".join(PluginRegistry().names("log_sink"))


def test_a_bad_retry_policy_and_its_options_are_reported(write: Callable[..., Path]) -> None:
    """The retry policy named in error_policy.retry must exist, and its options are
    validated against that policy's options class."""
    errors = errors_of(write('agent = "MODULE:agent"\n[error_policy.retry]\npolicy = "sometimes"\n'))
    assert errors[0].startswith("error_policy.retry.policy: unknown retry policy plugin 'sometimes' (installed: ")
    errors = errors_of(write('agent = "MODULE:agent"\n[error_policy.retry]\npolicy = "none"\nmodel = { attempts = 3 }\n'))
    assert errors == ("error_policy.retry.model.attempts: unknown key (retry policy 'none' takes no options)",)


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        ("no_such_module_xyz:agent", "agent: no module named 'no_such_module_xyz' (looked in {dir} and sys.path)"),
        ("MODULE:agnt", "agent: module 'MODULE' has no attribute 'agnt'"),
        ("MODULE", "agent: expected 'module:attribute', got 'MODULE'"),
        ("bad module:agent", "agent: expected 'module:attribute', got 'bad module:agent'"),
        ("broken_mod:agent", "agent: importing 'broken_mod' failed: ZeroDivisionError: division by zero (broken_mod.py, line 2)"),
        ("syntax_mod:agent", "agent: importing 'syntax_mod' failed: SyntaxError: invalid syntax (syntax_mod.py, line 1)"),
    ],
)
def test_a_bad_agent_reference_says_what_is_wrong(deployment: Deployment, agent: str, message: str) -> None:
    """The agent reference must name an importable module and an agent in it; the error
    says which part failed, with the file and line of an error raised by the module."""
    (deployment.directory / "broken_mod.py").write_text("x = 1\ny = 1 / 0\n")
    (deployment.directory / "syntax_mod.py").write_text("def (:\n")
    path = deployment.write(f'agent = "{agent}"\n')
    expected = message.replace("MODULE", deployment.module).replace("{dir}", str(deployment.directory))
    assert errors_of(path) == (expected,)


def test_tool_kit_options_are_validated_for_kits_the_agent_uses(deployment: Deployment) -> None:
    """[tools.<kit>] options go to a kit the agent names; an agent naming a kit that is
    not installed is an error."""
    (deployment.directory / "kit_agent.py").write_text(
        "from harness_kernel import define_agent\nagent = define_agent(name='kits', tools=['nosuchkit'])\n"
    )
    errors = errors_of(deployment.write('agent = "kit_agent:agent"\n[tools.files]\noptions = {}\n'))
    assert errors[0].startswith("agent: tool kit 'nosuchkit': unknown tools plugin 'nosuchkit' (installed: ")
    assert errors[1:] == ("tools.files: the agent does not use tool kit 'files' (it uses: nosuchkit)",)


def test_the_file_itself_must_be_readable_toml(tmp_path: Path) -> None:
    """A missing file, a directory, bad UTF-8 and TOML syntax errors are config errors."""
    assert errors_of(tmp_path / "absent.toml") == (
        f"no such file: {tmp_path / 'absent.toml'} (pass --config PATH or create it)",
    )
    assert errors_of(tmp_path) == ("is a directory, not a TOML file",)
    (tmp_path / "latin.toml").write_bytes(b'agent = "caf\xe9"\n')
    assert errors_of(tmp_path / "latin.toml") == ("is not UTF-8 text (byte 12)",)
    (tmp_path / "bad.toml").write_text("agent = \n")
    assert errors_of(tmp_path / "bad.toml") == ("TOML syntax error: Invalid value (at line 1, column 9)",)


async def test_open_store_from_config_opens_a_working_store(write: Callable[..., Path]) -> None:
    """The store opened from a file uses what the file names (a sink receiving logs, the
    extra provider) and takes resources from the caller."""
    path = write(
        """
        agent = "MODULE:agent"
        default_model = "extra/echo"
        [[plugins]]
        module = "MODULE"
        [[providers]]
        plugin = "extra"
        [logging]
        level = "debug"
        sinks = ["memory"]
        """
    )
    async with open_store_from_config(path, resources={"db": "handle"}) as store:
        result = await store.send("s1", "hello")
        [sink] = store.log_sinks
        assert isinstance(sink, MemoryLogSink)
        assert any(r["event"] == "store_opened" for r in sink.records)
    assert (result.status, result.text) == ("completed", "hello")


async def test_a_problem_found_only_when_the_store_opens_is_a_config_error(write: Callable[..., Path]) -> None:
    """A provider whose real namespace collides with another's (not visible from its
    options) fails the open with a ConfigFileError naming the file."""
    path = write(
        """
        agent = "MODULE:agent"
        [[plugins]]
        module = "MODULE"
        [[providers]]
        plugin = "scripted"
        [[providers]]
        plugin = "extra"
        [[providers]]
        plugin = "extra"
        """
    )
    with pytest.raises(ConfigFileError) as caught:
        async with open_store_from_config(path):
            pass  # pragma: no cover
    assert caught.value.errors == ("providers[2]: two providers serve the namespace 'extra' (also providers[1])",)
