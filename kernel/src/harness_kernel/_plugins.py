"""The plugin registry: one pluggy manager per store, entry points loaded one at a time.

Builtins are registered through the same hooks as third-party plugins, ``trylast``, so an
installed plugin that registers the same name wins. A plugin whose entry point fails to
import is recorded and skipped (or fails the start in strict mode); the listing shows it.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeAlias

import attrs
import pluggy

from . import hookspecs
from .errors import ConfigError, PluginError, PluginLoadError

__all__ = [
    "ENTRY_POINT_GROUP",
    "HookRunner",
    "Kind",
    "PluginInfo",
    "PluginRegistry",
    "Registration",
]

ENTRY_POINT_GROUP = "harness_kernel"
BUILTIN_MODULES = ("harness_kernel._builtins",)

Kind: TypeAlias = Literal[
    "provider", "storage", "sandbox", "log_sink", "retry_policy", "tools", "tracing"
]
_REGISTRATION_HOOKS: dict[Kind, str] = {
    "provider": "harness_kernel_providers",
    "storage": "harness_kernel_storage",
    "sandbox": "harness_kernel_sandboxes",
    "log_sink": "harness_kernel_log_sinks",
    "retry_policy": "harness_kernel_retry_policies",
    "tools": "harness_kernel_tools",
    "tracing": "harness_kernel_tracing",
}
KINDS: tuple[Kind, ...] = tuple(_REGISTRATION_HOOKS)

_log = logging.getLogger("harness_kernel.plugins")


@attrs.frozen
class Registration:
    """A component a plugin registered: ``factory(options)`` builds it."""

    kind: Kind
    name: str
    factory: Callable[..., Any]
    options: type | None
    plugin: str
    distribution: str | None
    version: str | None

    def build(self, options: Mapping[str, Any] | None = None, *, path: str = "options") -> Any:
        """Validate ``options`` against the options class and call the factory."""
        options = dict(options or {})
        if self.options is None:
            if options:
                keys = ", ".join(sorted(options))
                raise ConfigError(
                    f"{path}: {self.kind} '{self.name}' takes no options (got {keys})"
                )
            return self.factory()
        # cattrs loads when a component is built, not when plugins are only listed.
        from ._validation import ValidationFailed, structure_strictly

        try:
            value: Any = structure_strictly(options, self.options, root=path)
        except ValidationFailed as exc:
            raise ConfigError("\n".join(exc.errors)) from None
        return self.factory(value)


@attrs.frozen
class PluginInfo:
    """One row of the plugin listing."""

    kind: str
    name: str
    plugin: str
    distribution: str | None
    version: str | None
    status: Literal["loaded", "shadowed", "failed", "blocked"]
    error: str | None = None


def _env_allow_list() -> set[str] | None:
    raw = os.environ.get("HARNESS_KERNEL_PLUGINS")
    if raw is None:
        return None
    return {item.strip() for item in raw.split(",") if item.strip()}


def _env_autoload() -> bool:
    return os.environ.get("HARNESS_KERNEL_DISABLE_AUTOLOAD", "").strip().lower() not in {
        "1",
        "true",
        "yes",
        "on",
    }


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    seen: set[tuple[str, str]] = set()
    unique = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = (ep.name, ep.value)
        if key not in seen:
            seen.add(key)
            unique.append(ep)
    return sorted(unique, key=lambda ep: ep.name)


class PluginRegistry:
    """Loads plugins into a private ``PluginManager`` and indexes what they registered."""

    def __init__(
        self,
        *,
        plugins: Sequence[object] = (),
        strict: bool = False,
        autoload: bool | None = None,
        allow: Iterable[str] | None = None,
    ) -> None:
        self.pm = pluggy.PluginManager("harness_kernel")
        self.pm.add_hookspecs(hookspecs)
        self.strict = strict
        self._arguments = (tuple(plugins), strict, autoload, None if allow is None else set(allow))
        self._failures: list[PluginInfo] = []
        self._dists: dict[str, tuple[str | None, str | None]] = {}
        for module_name in BUILTIN_MODULES:
            module = importlib.import_module(module_name)
            self.pm.register(module, name=module_name)
            self._dists[module_name] = ("harness-kernel", _version("harness-kernel"))
        autoload = _env_autoload() if autoload is None else autoload
        allowed = _env_allow_list() if allow is None else set(allow)
        if autoload:
            self._load_entry_points(allowed)
        # pluggy calls the last registered first and the first registration of a name
        # wins: registering the host's objects in reverse makes the first listed win, and
        # all of them win over installed plugins (the host chose them explicitly).
        for index, plugin in reversed(list(enumerate(plugins))):
            name = getattr(plugin, "__name__", None) or f"{type(plugin).__name__}#{index}"
            if self.pm.is_registered(plugin):
                continue
            try:
                self.pm.register(plugin, name=name)
            except (pluggy.PluginValidationError, ValueError) as exc:
                raise PluginError(f"plugin object {name!r} is invalid: {exc}") from exc
            self._dists[name] = (None, None)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"a plugin implements an unknown hook: {exc}") from exc
        self._reject_wrappers()
        self._registrations: dict[Kind, dict[str, Registration]] = {kind: {} for kind in KINDS}
        self._shadowed: list[Registration] = []
        self._collect()

    def loaded_with(
        self, *, plugins: Sequence[object], strict: bool, autoload: bool | None
    ) -> bool:
        """Whether this registry was loaded from exactly these arguments (the same
        plugin objects, no allow-list argument), so a store may use it as it is."""
        objects, was_strict, was_autoload, allow = self._arguments
        return (
            allow is None
            and was_strict == strict
            and was_autoload == autoload
            and len(objects) == len(plugins)
            and all(a is b for a, b in zip(objects, plugins, strict=True))
        )

    # -- loading ---------------------------------------------------------------

    def _load_entry_points(self, allowed: set[str] | None) -> None:
        for ep in _entry_points():
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            if allowed is not None and ep.name not in allowed and dist not in allowed:
                self._failures.append(
                    PluginInfo(
                        "?",
                        ep.name,
                        ep.name,
                        dist,
                        version,
                        "blocked",
                        "not in HARNESS_KERNEL_PLUGINS",
                    )
                )
                continue
            if self.pm.has_plugin(ep.name) or self.pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
                self.pm.register(plugin, name=ep.name)
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                if self.strict:
                    raise PluginLoadError(
                        f"plugin '{ep.name}' ({dist}) failed to load: {message}"
                    ) from exc
                _log.warning(
                    "plugin %r from %s failed to load and was skipped: %s", ep.name, dist, message
                )
                self._failures.append(
                    PluginInfo("?", ep.name, ep.name, dist, version, "failed", message)
                )
                continue
            self._dists[ep.name] = (dist, version)

    def _reject_wrappers(self) -> None:
        for name in _LIFECYCLE_HOOKS:
            for impl in getattr(self.pm.hook, name).get_hookimpls():
                if impl.hookwrapper or impl.wrapper:
                    raise PluginError(
                        f"plugin '{impl.plugin_name}': hook wrappers are not supported for {name}"
                    )

    def _collect(self) -> None:
        for kind, hook_name in _REGISTRATION_HOOKS.items():
            hook = getattr(self.pm.hook, hook_name)
            for impl in reversed(hook.get_hookimpls()):
                dist, version = self._dists.get(impl.plugin_name, (None, None))

                def register(
                    name: str,
                    factory: Callable[..., Any],
                    *,
                    options: type | None = None,
                    _kind: Kind = kind,
                    _plugin: str = impl.plugin_name,
                    _dist: str | None = dist,
                    _version: str | None = version,
                ) -> None:
                    if not isinstance(name, str) or not name or "/" in name:
                        raise PluginError(
                            f"plugin '{_plugin}' registered an invalid {_kind} name {name!r}"
                        )
                    if options is not None and not attrs.has(options):
                        raise PluginError(
                            f"plugin '{_plugin}': options for {_kind} '{name}' must be an attrs class"
                        )
                    reg = Registration(_kind, name, factory, options, _plugin, _dist, _version)
                    if name in self._registrations[_kind]:
                        self._shadowed.append(reg)
                    else:
                        self._registrations[_kind][name] = reg

                try:
                    impl.function(register=register)
                except PluginError:
                    raise
                except Exception as exc:
                    if self.strict:
                        raise PluginLoadError(
                            f"plugin '{impl.plugin_name}' failed in {hook_name}: {exc}"
                        ) from exc
                    _log.warning("plugin %r failed in %s: %s", impl.plugin_name, hook_name, exc)
                    self._failures.append(
                        PluginInfo(
                            kind,
                            "?",
                            impl.plugin_name,
                            dist,
                            version,
                            "failed",
                            f"{type(exc).__name__}: {exc}",
                        )
                    )

    # -- lookup ----------------------------------------------------------------

    def names(self, kind: Kind) -> list[str]:
        return sorted(self._registrations[kind])

    def get(self, kind: Kind, name: str) -> Registration:
        """The registration of ``name``; ``ConfigError`` listing the known names if absent."""
        try:
            return self._registrations[kind][name]
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            label = kind.replace("_", " ")
            raise ConfigError(f"unknown {label} plugin '{name}' (installed: {known})") from None

    def first(self, kind: Kind) -> Registration | None:
        """The first registered component of ``kind`` (installed plugins before builtins)."""
        return next(iter(self._registrations[kind].values()), None)

    def build(
        self,
        kind: Kind,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        path: str = "options",
    ) -> Any:
        return self.get(kind, name).build(options, path=path)

    def listing(self) -> list[PluginInfo]:
        """Every registered component and every plugin that failed, sorted by kind and name."""
        rows = [
            PluginInfo(r.kind, r.name, r.plugin, r.distribution, r.version, "loaded")
            for regs in self._registrations.values()
            for r in regs.values()
        ]
        rows += [
            PluginInfo(
                r.kind,
                r.name,
                r.plugin,
                r.distribution,
                r.version,
                "shadowed",
                f"'{r.name}' is already registered by another plugin",
            )
            for r in self._shadowed
        ]
        rows += self._failures
        return sorted(rows, key=lambda r: (r.kind, r.name, r.plugin))


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


_LIFECYCLE_HOOKS = (
    "session_opened",
    "session_closed",
    "run_started",
    "run_finished",
    "before_model_call",
    "after_model_call",
    "before_provider_request",
    "before_tool_call",
    "after_tool_call",
    "on_event",
    "classify_error",
)


@attrs.frozen
class _Impl:
    key: str
    function: Callable[..., Any]
    argnames: tuple[str, ...]


class HookRunner:
    """Calls lifecycle hooks one implementation at a time, awaiting awaitables.

    Going implementation by implementation (instead of through pluggy's caller) is what
    lets one raising observer be disabled while the others, and the run, go on.
    """

    def __init__(self, pm: pluggy.PluginManager, log: Any, *, deadline: float = 10.0) -> None:
        import trio  # here, not at the top: listing plugins needs no event loop

        self._move_on_after = trio.move_on_after
        self._log = log
        self.deadline = deadline
        self._impls: dict[str, tuple[_Impl, ...]] = {}
        for name in _LIFECYCLE_HOOKS:
            impls = reversed(getattr(pm.hook, name).get_hookimpls())
            self._impls[name] = tuple(
                _Impl(f"{impl.plugin_name}:{name}", impl.function, tuple(impl.argnames))
                for impl in impls
            )

    def has(self, name: str) -> bool:
        return bool(self._impls[name])

    async def notify(self, name: str, disabled: set[str], **kwargs: Any) -> None:
        """Call every observer; one that raises, or whose awaitable outlives the
        deadline, is logged and added to ``disabled`` (the caller's run goes on)."""
        for impl in self._impls[name]:
            if impl.key in disabled:
                continue
            try:
                result = impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception as exc:
                self._failed(name, impl, exc, disabled)
                continue
            if result is None or not inspect.isawaitable(result):
                continue
            # Only an awaitable can outlive the deadline (a synchronous observer has
            # returned already), so only an awaitable gets a cancel scope: it costs more
            # than a plain observer's whole call.
            with self._move_on_after(self.deadline) as scope:
                try:
                    await result
                except Exception as exc:
                    self._failed(name, impl, exc, disabled)
            if scope.cancelled_caught:
                disabled.add(impl.key)
                self._log.error(
                    "hook_timed_out",
                    hook=name,
                    plugin=impl.key.rpartition(":")[0],
                    deadline=self.deadline,
                    disabled=True,
                )

    def _failed(self, name: str, impl: _Impl, exc: Exception, disabled: set[str]) -> None:
        disabled.add(impl.key)
        self._log.error(
            "hook_failed",
            hook=name,
            plugin=impl.key.rpartition(":")[0],
            error=f"{type(exc).__name__}: {exc}",
            disabled=True,
        )

    async def first(self, name: str, **kwargs: Any) -> tuple[Any, str | None]:
        """The first non-None result and the plugin that gave it. Exceptions propagate,
        annotated with the plugin's name."""
        for impl in self._impls[name]:
            try:
                result = impl.function(**{k: kwargs[k] for k in impl.argnames})
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                raise PluginError(
                    f"plugin '{impl.key.rpartition(':')[0]}' raised in {name}"
                ) from exc
            if result is not None:
                return result, impl.key.rpartition(":")[0]
        return None, None

    async def chain(self, name: str, key: str, value: Any, **kwargs: Any) -> Any:
        """Pass ``value`` (as keyword ``key``) through every implementation in turn."""
        for impl in self._impls[name]:
            try:
                result = impl.function(
                    **{k: (value if k == key else kwargs[k]) for k in impl.argnames}
                )
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                raise PluginError(
                    f"plugin '{impl.key.rpartition(':')[0]}' raised in {name}"
                ) from exc
            if result is not None:
                value = result
        return value
