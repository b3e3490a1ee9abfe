"""Component choices are validated once, by one resolver, for the store and the config
file alike; a store starts only with model refs its providers can serve."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from harness_kernel import (
    Mode,
    ModelProvider,
    PluginRegistry,
    create_session_store,
    define_agent,
    hookimpl,
)
from harness_kernel._choices import PluginChoice, resolve_choices
from harness_kernel._resolve import build_components
from harness_kernel.config import load_config, open_store_from_config
from harness_kernel.contracts import ModelEvent, ModelRequest
from harness_kernel.errors import ConfigError, ConfigFileError
from harness_kernel.testing import Reply, ScriptedProvider

AGENT = define_agent(name="resolve")


class Listed(ModelProvider):
    """A provider that declares the models it serves (or, with ``None``, any name)."""

    def __init__(self, models: Sequence[str] | None, name: str = "listed") -> None:
        self.name = name
        self._models = models

    def models(self) -> Sequence[str] | None:
        return self._models

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:  # pragma: no cover
        raise NotImplementedError
        yield


async def _start(**kwargs: Any) -> None:
    kwargs.setdefault("agent", AGENT)
    async with create_session_store(autoload_plugins=False, **kwargs):
        pass


async def test_a_default_model_the_scripted_provider_has_no_handler_for_fails_the_start() -> None:
    """`scripted/notes` with no `notes` handler is a ConfigError when the store starts,
    like an unknown namespace; with the handler the store starts and answers."""
    with pytest.raises(ConfigError) as caught:
        await _start(providers=[ScriptedProvider({})], default_model="scripted/notes")
    assert str(caught.value) == "default_model: provider 'scripted' does not serve model 'notes' (it serves: echo)"
    handlers = {"notes": lambda request: Reply(text="noted")}
    async with create_session_store(
        agent=AGENT, providers=[ScriptedProvider(handlers)], default_model="scripted/notes", autoload_plugins=False
    ) as store:
        assert (await store.send("s1", "hi")).text == "noted"


async def test_a_name_outside_a_providers_declared_models_fails_the_start() -> None:
    """A provider that lists its models() serves only those; one whose models() is None
    accepts any name."""
    with pytest.raises(ConfigError, match=r"^default_model: provider 'listed' does not serve model 'big' \(it serves: small, tiny\)$"):
        await _start(providers=[Listed(["small", "tiny"])], default_model="listed/big")
    await _start(providers=[Listed(["small", "tiny"])], default_model="listed/small")
    await _start(providers=[Listed(None)], default_model="listed/anything-at-all")


async def test_every_modes_model_must_be_served_too() -> None:
    """Each mode's model is checked like the default model, each at its own path."""
    agent = define_agent(
        name="modes", modes=[Mode("build"), Mode("plan", model="scripted/planner"), Mode("ask", model="scripted/echo")]
    )
    with pytest.raises(ConfigError) as caught:
        await _start(agent=agent, providers=[ScriptedProvider({})])
    assert str(caught.value) == "agent.modes[1].model: provider 'scripted' does not serve model 'planner' (it serves: echo)"
    await _start(agent=agent, providers=[ScriptedProvider({"planner": lambda r: Reply(text="plan")})])


def _deployment(directory: Path, default_model: str) -> Path:
    module = f"resolve_agent_{directory.name.replace('-', '_')}"
    (directory / f"{module}.py").write_text("from harness_kernel import define_agent\nagent = define_agent(name='cfg')\n")
    path = directory / "harness.toml"
    path.write_text(f'agent = "{module}:agent"\ndefault_model = "{default_model}"\nautoload_plugins = false\n')
    return path


async def test_the_config_path_reports_an_unserved_model_as_a_config_file_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a file, the same problem is a ConfigFileError naming the file and the key."""


    monkeypatch.setattr(sys, "path", list(sys.path))
    path = _deployment(tmp_path, "scripted/notes")
    config = load_config(path, environ={})  # the namespace is configured: nothing is built yet
    with pytest.raises(ConfigFileError) as caught:
        async with open_store_from_config(config):
            pass  # pragma: no cover
    assert caught.value.source == str(path)
    assert caught.value.errors == ("default_model: provider 'scripted' does not serve model 'notes' (it serves: echo)",)


async def test_the_store_reports_every_bad_choice_at_once_with_the_files_wording(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """create_session_store and load_config share one validation: the same bad choices
    give the same lines, all of them in one error."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(ConfigError) as caught:
        await _start(storage="nope", logging={"level": "loud"}, error_policy={"context_failure": "explode"})
    lines = str(caught.value).splitlines()
    assert lines == [
        "storage: unknown storage plugin 'nope' (installed: memory)",
        "logging.level: unknown log level 'loud' (use debug, info, warning, error, critical)",
        "error_policy.context_failure: expected one of 'fail', 'skip_optional'",
    ]
    path = _deployment(tmp_path, "scripted/echo")
    path.write_text(path.read_text() + textwrap.dedent(
        """
        storage = { plugin = "nope" }
        logging = { level = "loud" }
        error_policy = { context_failure = "explode" }
        """
    ))
    with pytest.raises(ConfigFileError) as from_file:
        load_config(path, environ={})
    assert from_file.value.errors == ("storage.plugin: " + lines[0].removeprefix("storage: "), *lines[1:])


@attrs.frozen
class CountingOptions:
    label: str = "x"


def _counting_plugin(built: list[CountingOptions]) -> object:
    from harness_kernel import MemoryStorage

    class Plugin:
        @staticmethod
        @hookimpl
        def harness_kernel_storage(register: Any) -> None:
            def factory(options: CountingOptions) -> MemoryStorage:
                built.append(options)
                return MemoryStorage()

            register("counting", factory, options=CountingOptions)

    return Plugin()


async def test_resolving_builds_nothing_and_a_resolved_choice_is_built_as_it_is() -> None:
    """resolve_choices only validates (no factory runs); build_components given the
    resolved choice keeps it (not re-read from a raw table) and calls the factory once
    with its validated options."""
    built: list[CountingOptions] = []
    plugin = _counting_plugin(built)
    registry = PluginRegistry(plugins=[plugin], autoload=False)
    errors: list[str] = []
    choices = resolve_choices(
        registry, agent=AGENT, storage={"plugin": "counting", "options": {"label": "y"}}, errors=errors
    )
    assert errors == []
    assert choices is not None
    assert built == []
    assert choices.storage == PluginChoice("counting", {"label": "y"}, CountingOptions("y"), None)
    parts = await build_components(
        agent=AGENT, providers=list(choices.providers), default_model=choices.default_model,
        storage=choices.storage, storage_options=None, sandbox=choices.sandbox, sandbox_options=None,
        logging=choices.logging, error_policy=choices.error_policy, plugins=[plugin], strict_plugins=False,
        autoload_plugins=False, tool_options=dict(choices.tools),
    )
    try:
        assert parts.choices is not None
        assert parts.choices.storage is choices.storage
        assert parts.choices.error_policy is choices.error_policy
        assert built == [CountingOptions("y")]
    finally:
        for component in parts.owned:
            await component.aclose()


def test_resolve_choices_collects_problems_without_raising() -> None:
    """Bad choices come back as lines, the Choices as None; a good default resolves."""
    registry = PluginRegistry(autoload=False)
    errors: list[str] = []
    assert resolve_choices(registry, agent=AGENT, providers=[], sandbox=42, errors=errors) is None
    assert errors == [
        "providers: configure at least one provider",
        "sandbox: expected a plugin name, a table with 'plugin', or a Sandbox instance, got int",
    ]
    errors.clear()
    choices = resolve_choices(registry, agent=AGENT, errors=errors)
    assert errors == []
    assert choices is not None
    assert [getattr(p, "plugin", None) for p in choices.providers] == ["scripted"]
    assert choices.error_policy.retry.plugin == "none"


async def test_options_passed_beside_a_files_choice_replace_its_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """open_store_from_config(config, storage_options=...) validates and uses the
    host's options for the plugin the file chose, as before the hand-over."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    path = _deployment(tmp_path, "scripted/echo")
    path.write_text(path.read_text() + 'sandbox = { plugin = "noop" }\n')
    config = load_config(path, environ={})
    with pytest.raises(ConfigFileError) as caught:
        async with open_store_from_config(config, sandbox_options={"root": "x"}):
            pass  # pragma: no cover
    assert caught.value.errors == ("sandbox.options.root: unknown key (sandbox 'noop' takes no options)",)
