"""Component choices resolved once: providers, default model, storage, sandbox, sinks,
retry, error policy and tools, from plugin names, option tables or ready instances.

``build_components`` is the one place a store's components are validated and built;
``create_session_store`` and the config path both go through it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ._agent import Agent
from ._logging import Redactor, build_logger, parse_level
from ._plugins import HookRunner, PluginRegistry
from ._policy import ErrorPolicy, RetrySettings
from ._tools import Tool
from ._validation import ValidationFailed, structure_strictly
from .contracts import LogSink, ModelProvider, RetryPolicy, Sandbox, SessionStorage
from .errors import ConfigError

__all__ = ["Components", "LoggingSettings", "build_components"]


@attrs.frozen
class Components:
    """What a store is built from. ``owned`` and ``built_sinks`` were created by the
    store (from names) and are closed by it; instances passed in stay the caller's."""

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


def _component(
    registry: PluginRegistry, kind: Any, spec: Any, options: Mapping[str, Any] | None, cls: type, path: str, owned: list[Any]
) -> Any:
    """An instance from a plugin name (built, owned by the store) or a ready instance."""
    if isinstance(spec, cls):
        if options:
            raise ConfigError(f"{path}: options only apply when the plugin is named, not to an instance")
        return spec
    if not isinstance(spec, str):
        raise ConfigError(f"{path}: expected a plugin name or a {cls.__name__} instance, got {type(spec).__name__}")
    instance = registry.build(kind, spec, options, path=f"{path}.options")
    if not isinstance(instance, cls):
        raise ConfigError(f"{path}: plugin '{spec}' did not build a {cls.__name__}")
    owned.append(instance)
    return instance


def _option_secrets(registry: PluginRegistry, kind: Any, name: Any, options: Mapping[str, Any] | None) -> list[str]:
    """Secret values in a plugin's (already validated) options, for the redactor."""
    if not options or not isinstance(name, str):
        return []
    reg = registry.get(kind, name)
    if reg.options is None:
        return []
    return _secret_values(structure_strictly(dict(options), reg.options))


def _secret_values(options: Any) -> list[str]:
    """String values of option fields that are marked secret or named like secrets."""
    from ._logging import SENSITIVE_KEY

    if not attrs.has(type(options)):
        return []
    values = []
    for field in attrs.fields(type(options)):
        value = getattr(options, field.name)
        if isinstance(value, str) and (field.metadata.get("secret") or SENSITIVE_KEY.search(field.name)):
            values.append(value)
    return values


@attrs.frozen
class LoggingSettings:
    """The ``logging`` argument: a default ``level``, ``sinks`` (names, tables with
    ``plugin``/``level``/``options``, or ``LogSink`` instances) and extra ``redact``
    values and ``redact_keys``."""

    level: str = "info"
    sinks: tuple[Any, ...] = ()
    redact: tuple[str, ...] = ()
    redact_keys: tuple[str, ...] = ()


def _build_sinks(
    registry: PluginRegistry, settings: Mapping[str, Any] | None
) -> tuple[list[LogSink], list[LogSink], list[str], LoggingSettings]:
    """The sinks, those the store built (and so closes), secret option values, settings."""
    raw = dict(settings or {})
    unknown = set(raw) - {f.name for f in attrs.fields(LoggingSettings)}
    if unknown:
        raise ConfigError(f"logging: unknown key(s): {', '.join(sorted(unknown))}")
    config = LoggingSettings(
        level=raw.get("level", "info"),
        sinks=tuple(raw.get("sinks", ())),
        redact=tuple(raw.get("redact", ())),
        redact_keys=tuple(raw.get("redact_keys", ())),
    )
    try:
        default_level = parse_level(config.level)
    except ValueError as exc:
        raise ConfigError(f"logging.level: {exc}") from None
    sinks: list[LogSink] = []
    built: list[LogSink] = []
    secrets: list[str] = []
    for index, spec in enumerate(config.sinks):
        path = f"logging.sinks[{index}]"
        if isinstance(spec, LogSink):
            sinks.append(spec)
            continue
        if isinstance(spec, str):
            spec = {"plugin": spec}
        if not isinstance(spec, Mapping) or "plugin" not in spec:
            raise ConfigError(f"{path}: expected a sink name, a table with 'plugin', or a LogSink")
        extra = set(spec) - {"plugin", "level", "options"}
        if extra:
            raise ConfigError(f"{path}: unknown key(s): {', '.join(sorted(extra))}")
        sink = registry.build("log_sink", spec["plugin"], spec.get("options"), path=f"{path}.options")
        secrets += _option_secrets(registry, "log_sink", spec["plugin"], spec.get("options"))
        try:
            sink.level = parse_level(spec.get("level", default_level))
        except ValueError as exc:
            raise ConfigError(f"{path}.level: {exc}") from None
        sinks.append(sink)
        built.append(sink)
    return sinks, built, secrets, config


def _resolve_tools(registry: PluginRegistry, agent: Agent, tool_options: Mapping[str, Any]) -> dict[str, Tool]:
    tools: dict[str, Tool] = {}
    for item in agent.tools:
        kit = [item] if isinstance(item, Tool) else registry.build(
            "tools", item, tool_options.get(item), path=f"tools.{item}.options"
        )
        for tool in kit:
            if not isinstance(tool, Tool):
                raise ConfigError(f"tool kit '{item}' returned {type(tool).__name__}, not a Tool")
            if tool.name in tools:
                raise ConfigError(f"agent '{agent.name}': two tools are named '{tool.name}'")
            tools[tool.name] = tool
    for mode in agent.modes:
        for entry in mode.tools or ():
            if isinstance(entry, str) and entry not in tools:
                raise ConfigError(f"mode '{mode.name}' names tool '{entry}', which the agent does not have")
    return tools




async def build_components(
    *,
    agent: Agent,
    providers: Sequence[str | ModelProvider | Mapping[str, Any]],
    default_model: str,
    storage: str | SessionStorage,
    storage_options: Mapping[str, Any] | None,
    sandbox: str | Sandbox,
    sandbox_options: Mapping[str, Any] | None,
    logging: Mapping[str, Any] | None,
    error_policy: Mapping[str, Any] | ErrorPolicy | None,
    plugins: Sequence[object],
    strict_plugins: bool,
    autoload_plugins: bool | None,
    tool_options: Mapping[str, Any] | None,
) -> Components:
    """Validate every choice and build the components; ``ConfigError`` on the first bad
    one, after closing whatever was already built."""
    if not isinstance(agent, Agent):
        raise ConfigError("agent: expected the result of define_agent(...)")
    registry = PluginRegistry(plugins=plugins, strict=strict_plugins, autoload=autoload_plugins)
    sinks, built_sinks, sink_secrets, log_settings = _build_sinks(registry, logging)
    redactor = Redactor([*log_settings.redact, *sink_secrets], log_settings.redact_keys)
    owned: list[Any] = []
    try:
        provider_map: dict[str, ModelProvider] = {}
        for index, spec in enumerate(providers):
            path = f"providers[{index}]"
            options: Mapping[str, Any] | None = None
            if isinstance(spec, Mapping):
                extra = set(spec) - {"plugin", "options"}
                if "plugin" not in spec or extra:
                    raise ConfigError(f"{path}: expected a table with 'plugin' and optional 'options'")
                spec, options = spec["plugin"], spec.get("options")
            provider = _component(registry, "provider", spec, options, ModelProvider, path, owned)
            redactor.add_values(_option_secrets(registry, "provider", spec, options))
            redactor.add_values(getattr(provider, "secret_values", lambda: [])())
            if provider.name in provider_map:
                raise ConfigError(f"{path}: two providers serve the namespace '{provider.name}'")
            provider_map[provider.name] = provider
        store_storage = _component(registry, "storage", storage, storage_options, SessionStorage, "storage", owned)
        store_sandbox = _component(registry, "sandbox", sandbox, sandbox_options, Sandbox, "sandbox", owned)
        redactor.add_values(_option_secrets(registry, "storage", storage, storage_options))
        redactor.add_values(_option_secrets(registry, "sandbox", sandbox, sandbox_options))
        if "/" not in default_model or default_model.split("/", 1)[0] not in provider_map:
            known = ", ".join(sorted(provider_map)) or "none"
            raise ConfigError(f"default_model: '{default_model}' is not '<provider>/<model>' with a configured provider (namespaces: {known})")
        if isinstance(error_policy, ErrorPolicy):
            policy = error_policy
        else:
            raw = dict(error_policy or {})
            try:
                policy = structure_strictly(raw, ErrorPolicy, root="error_policy")
            except ValidationFailed as exc:
                raise ConfigError("\n".join(exc.errors)) from None
        retry = _retry_policy(registry, policy.retry)
        tools = _resolve_tools(registry, agent, tool_options or {})
        log = build_logger(sinks, redactor, store_agent=agent.name)
    except BaseException:
        for component in [*reversed(owned), *built_sinks]:
            try:
                await component.aclose()
            except Exception:
                pass
        raise
    return Components(
        agent=agent, registry=registry, providers=provider_map, default_model=default_model,
        storage=store_storage, sandbox=store_sandbox, sinks=tuple(sinks), built_sinks=tuple(built_sinks),
        owned=tuple(owned), policy=policy, retry=retry, tools=tools, redactor=redactor, log=log,
        hooks=HookRunner(registry.pm, log),
    )


def _retry_policy(registry: PluginRegistry, settings: RetrySettings) -> RetryPolicy:
    name = settings.policy
    if name is None:
        first = registry.first("retry_policy")
        name = first.name if first else "none"
    policy = registry.build("retry_policy", name, settings.model, path="error_policy.retry.model")
    if not isinstance(policy, RetryPolicy):
        raise ConfigError(f"retry policy '{name}' did not build a RetryPolicy")
    return policy


