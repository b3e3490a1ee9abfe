"""A store's components built from its choices: providers, default model, storage,
sandbox, sinks, retry, error policy and tools.

``build_components`` is the one way in. It loads the store's own ``PluginRegistry``,
has ``_choices.resolve_choices`` validate every argument (the same validation
``load_config`` runs; choices it already resolved pass through), then instantiates from
the validated choices. What only a built component can tell is checked here: the
namespace each provider really serves, and that it serves every model ref the store
starts with (``default_model`` and each mode's model, against ``models()``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import attrs

from ._agent import Agent
from ._choices import (
    Choices,
    LoggingChoice,
    PluginChoice,
    PolicyChoice,
    SinkChoice,
    model_ref_problem,
    resolve_choices,
)
from ._logging import Redactor, build_logger, parse_level
from ._plugins import HookRunner, Kind, PluginRegistry
from ._policy import ErrorPolicy
from ._tools import Tool
from .contracts import LogSink, ModelProvider, RetryPolicy, Sandbox, SessionStorage
from .errors import ConfigError

__all__ = ["Components", "build_components", "preloaded", "served_model_error"]

_preloaded: ContextVar[PluginRegistry | None] = ContextVar("_preloaded", default=None)


@contextmanager
def preloaded(registry: PluginRegistry | None) -> Iterator[None]:
    """Stores opened inside use ``registry`` if it was loaded from their own plugin
    arguments, instead of loading the plugins again (``open_store_from_config`` passes
    the registry ``load_config`` resolved the file against: one load per command)."""
    token = _preloaded.set(registry)
    try:
        yield
    finally:
        _preloaded.reset(token)


@attrs.frozen
class Components:
    """What a store is built from. ``owned`` and ``built_sinks`` were created by the
    store (from names) and are closed by it; instances passed in stay the caller's.
    ``choices`` are the validated choices they were built from."""

    agent: Agent
    registry: PluginRegistry
    providers: Mapping[str, ModelProvider]
    default_model: str
    storage: SessionStorage
    sandbox: Sandbox
    sinks: tuple[LogSink, ...]
    built_sinks: tuple[LogSink, ...]
    owned: tuple[Any, ...]
    policy: ErrorPolicy
    retry: RetryPolicy
    tools: Mapping[str, Tool]
    redactor: Redactor
    log: Any
    hooks: HookRunner
    choices: Choices | None = None


async def build_components(
    *,
    agent: Agent,
    providers: Sequence[str | ModelProvider | Mapping[str, Any] | PluginChoice],
    default_model: str,
    storage: str | SessionStorage | PluginChoice,
    storage_options: Mapping[str, Any] | None,
    sandbox: str | Sandbox | PluginChoice,
    sandbox_options: Mapping[str, Any] | None,
    logging: Mapping[str, Any] | LoggingChoice | None,
    error_policy: Mapping[str, Any] | ErrorPolicy | PolicyChoice | None,
    plugins: Sequence[object],
    strict_plugins: bool,
    autoload_plugins: bool | None,
    tool_options: Mapping[str, Any] | None,
) -> Components:
    """Validate every choice (``ConfigError`` listing every problem, one line each) and
    build the components; a failure while building closes what was already built."""
    if not isinstance(agent, Agent):
        raise ConfigError("agent: expected the result of define_agent(...)")
    registry = _preloaded.get()
    if registry is None or not registry.loaded_with(
        plugins=plugins, strict=strict_plugins, autoload=autoload_plugins
    ):
        registry = PluginRegistry(plugins=plugins, strict=strict_plugins, autoload=autoload_plugins)
    errors: list[str] = []
    choices = resolve_choices(
        registry,
        agent=agent,
        providers=providers,
        default_model=default_model,
        storage=storage,
        storage_options=storage_options,
        sandbox=sandbox,
        sandbox_options=sandbox_options,
        logging=logging,
        error_policy=error_policy,
        tool_options=tool_options,
        plugins=plugins,
        strict_plugins=strict_plugins,
        autoload_plugins=autoload_plugins,
        errors=errors,
    )
    if choices is None:
        raise ConfigError("\n".join(errors))
    return await _build(registry, choices)


async def _build(registry: PluginRegistry, choices: Choices) -> Components:
    owned: list[Any] = []
    built_sinks: list[LogSink] = []
    try:
        sinks = [_sink(registry, spec, built_sinks) for spec in choices.logging.sinks]
        redactor = Redactor(choices.secret_values(), choices.logging.redact_keys)
        providers = [
            _component(registry, "provider", spec, ModelProvider, f"providers[{index}]", owned)
            for index, spec in enumerate(choices.providers)
        ]
        for provider in providers:
            redactor.add_values(getattr(provider, "secret_values", lambda: [])())
        storage = _component(registry, "storage", choices.storage, SessionStorage, "storage", owned)
        sandbox = _component(registry, "sandbox", choices.sandbox, Sandbox, "sandbox", owned)
        retry = _instantiate(
            registry,
            "retry_policy",
            choices.error_policy.retry,
            RetryPolicy,
            "error_policy.retry.policy",
        )
        tools = _tools(registry, choices, owned)
        errors: list[str] = []
        served = _served(providers, errors)
        _check_models(choices, served, errors)
        _check_tools(choices.agent, tools, errors)
        if errors:
            raise ConfigError("\n".join(errors))
        log = build_logger(sinks, redactor, store_agent=choices.agent.name)
    except BaseException:
        for component in [*reversed(owned), *built_sinks]:
            try:
                await component.aclose()
            except Exception:
                pass  # the start already failed; the original error is what matters
        raise
    return Components(
        agent=choices.agent,
        registry=registry,
        providers=served,
        default_model=choices.default_model,
        storage=storage,
        sandbox=sandbox,
        sinks=tuple(sinks),
        built_sinks=tuple(built_sinks),
        owned=tuple(owned),
        policy=choices.error_policy.policy,
        retry=retry,
        tools=tools,
        redactor=redactor,
        log=log,
        hooks=HookRunner(registry.pm, log),
        choices=choices,
    )


def _instantiate(
    registry: PluginRegistry, kind: Kind, choice: PluginChoice, cls: type, path: str
) -> Any:
    """Call the plugin's factory with the options validated when it was chosen."""
    reg = registry.get(kind, choice.plugin)
    instance = reg.factory() if reg.options is None else reg.factory(choice.settings)
    if not isinstance(instance, cls):
        raise ConfigError(f"{path}: plugin '{choice.plugin}' did not build a {cls.__name__}")
    return instance


def _component(
    registry: PluginRegistry, kind: Kind, spec: Any, cls: type, path: str, owned: list[Any]
) -> Any:
    """A ready instance as it is, or one built from its choice (and then owned)."""
    if not isinstance(spec, PluginChoice):
        return spec
    instance = _instantiate(registry, kind, spec, cls, f"{path}.plugin")
    owned.append(instance)
    return instance


def _sink(registry: PluginRegistry, spec: SinkChoice | LogSink, built: list[LogSink]) -> LogSink:
    if isinstance(spec, LogSink):
        return spec
    sink: LogSink = _instantiate(
        registry,
        "log_sink",
        PluginChoice(spec.plugin, spec.options, spec.settings),
        LogSink,
        "logging.sinks",
    )
    built.append(sink)
    sink.level = parse_level(spec.level)
    return sink


def _served(providers: Sequence[ModelProvider], errors: list[str]) -> dict[str, ModelProvider]:
    """Providers by the namespace they really serve; two on one namespace are an error."""
    served: dict[str, ModelProvider] = {}
    first: dict[str, int] = {}
    for index, provider in enumerate(providers):
        if provider.name in served:
            errors.append(
                f"providers[{index}]: two providers serve the namespace '{provider.name}' "
                f"(also providers[{first[provider.name]}])"
            )
            continue
        served[provider.name] = provider
        first[provider.name] = index
    return served


def served_model_error(ref: str, providers: Mapping[str, ModelProvider]) -> str | None:
    """Why no provider can serve ``ref`` (a message without a path), or ``None``.

    The namespace must be configured, and a provider that declares its ``models()``
    must list the name; a provider whose ``models()`` is ``None`` accepts any name.
    """
    problem = model_ref_problem(ref, providers.keys())
    if problem is not None:
        return problem
    namespace, _, name = ref.partition("/")
    models = providers[namespace].models()
    if models is not None and name not in models:
        listed = ", ".join(models) or "none"
        return f"provider '{namespace}' does not serve model '{name}' (it serves: {listed})"
    return None


def _check_models(
    choices: Choices, providers: Mapping[str, ModelProvider], errors: list[str]
) -> None:
    refs = [("default_model", choices.default_model)]
    refs += [
        (f"agent.modes[{i}].model", mode.model)
        for i, mode in enumerate(choices.agent.modes)
        if mode.model
    ]
    for path, ref in refs:
        problem = served_model_error(ref, providers)
        if problem is not None:
            errors.append(f"{path}: {problem}")


def _tools(registry: PluginRegistry, choices: Choices, owned: list[Any]) -> dict[str, Tool]:
    """The agent's tools, kits expanded; two tools with one name are an error. A kit
    whose result has ``aclose()`` (servers it started) is closed with the store."""
    tools: dict[str, Tool] = {}
    for item in choices.agent.tools:
        if isinstance(item, Tool):
            kit = [item]
        else:
            kit = _instantiate(
                registry, "tools", choices.tools[item], object, f"agent: tool kit '{item}'"
            )
            if callable(getattr(kit, "aclose", None)):
                owned.append(kit)
        for tool in kit:
            if not isinstance(tool, Tool):
                raise ConfigError(f"tool kit '{item}' returned {type(tool).__name__}, not a Tool")
            if tool.name in tools:
                raise ConfigError(
                    f"agent '{choices.agent.name}': two tools are named '{tool.name}'"
                )
            tools[tool.name] = tool
    return tools


def _check_tools(agent: Agent, tools: Mapping[str, Tool], errors: list[str]) -> None:
    for mode in agent.modes:
        for entry in mode.tools or ():
            if isinstance(entry, str) and entry not in tools:
                errors.append(
                    f"mode '{mode.name}' names tool '{entry}', which the agent does not have"
                )
