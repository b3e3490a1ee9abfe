"""Tracing set up from the config: ``[tracing]`` names a registered tracing plugin.

``harness.toml``'s ``[tracing] plugin = "otel" options = {...}`` (or
``create_session_store(tracing=...)``) chooses a factory registered with
``harness_kernel_tracing``; its options are validated like any plugin's. When the store
opens, the factory builds a plugin object (hook implementations, such as a tracer with
its exporter) that is registered in the store's plugin manager before the hooks are
read, and closed with the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._choices import PluginChoice
from ._plugins import PluginRegistry
from ._tables import check_table, type_name
from ._validation import ValidationFailed, structure_strictly
from .errors import ConfigError

__all__ = ["build_tracing", "resolve_tracing"]


def resolve_tracing(registry: PluginRegistry, spec: Any, errors: list[str]) -> PluginChoice | None:
    """The chosen tracing plugin with validated options, ``None`` when there is none (or
    it has a problem, appended to ``errors``)."""
    if spec is None or (isinstance(spec, Mapping) and not spec):
        return None
    if isinstance(spec, PluginChoice):
        spec = {"plugin": spec.plugin, "options": dict(spec.options)}
    if isinstance(spec, str):
        spec = {"plugin": spec}
    if not isinstance(spec, Mapping):
        errors.append(f"tracing: expected a table with 'plugin', got {type_name(spec)}")
        return None
    table = check_table(
        spec, "tracing", {"plugin": str, "options": Mapping}, errors, required=("plugin",)
    )
    if table is None or "plugin" not in table:
        return None
    try:
        reg = registry.get("tracing", table["plugin"])
    except ConfigError as exc:
        errors.append(f"tracing.plugin: {exc}")
        return None
    options = dict(table.get("options", {}))
    if reg.options is None:
        errors.extend(f"tracing.options.{key}: unknown key" for key in options)
        return PluginChoice(reg.name, options, None, reg.distribution) if not options else None
    try:
        settings: Any = structure_strictly(options, reg.options, root="tracing.options")
    except ValidationFailed as exc:
        errors.extend(exc.errors)
        return None
    return PluginChoice(reg.name, options, settings, reg.distribution)


def build_tracing(registry: PluginRegistry, choice: PluginChoice) -> object:
    """Build the chosen tracing plugin and register it in ``registry``'s plugin manager."""
    reg = registry.get("tracing", choice.plugin)
    built = reg.factory() if reg.options is None else reg.factory(choice.settings)
    registry.pm.register(built, name=f"tracing:{choice.plugin}:{id(built)}")
    registry.pm.check_pending()
    return built


async def attach_tracing(parts: Any, spec: Any) -> tuple[Any, ...]:
    """Resolve and build ``spec`` for a store whose components ``parts`` are built; the
    components the store owns then, the tracing plugin last. On a problem the built
    components are closed and ``ConfigError`` raised."""
    if spec is None:
        return tuple(parts.owned)
    try:
        errors: list[str] = []
        choice = resolve_tracing(parts.registry, spec, errors)
        if errors:
            raise ConfigError("\n".join(errors))
        if choice is None:
            return tuple(parts.owned)
        built = build_tracing(parts.registry, choice)
    except BaseException:
        for component in [*reversed(parts.owned), *parts.built_sinks]:
            try:
                await component.aclose()
            except Exception:
                pass  # the start already failed; the original error is what matters
        raise
    closes = callable(getattr(built, "aclose", None))
    return (*parts.owned, built) if closes else tuple(parts.owned)
