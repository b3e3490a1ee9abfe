"""Component choices resolved without building anything: the one validation of what a
store is made of, shared by ``create_session_store`` and ``load_config``.

``resolve_choices`` takes the store's arguments as a host writes them (plugin names,
``{"plugin", "options"}`` tables, ready instances) or as ``load_config`` read them from a
file, looks every plugin name up in a ``PluginRegistry`` and validates each options
table against the plugin's options class. It reports every problem as a
``"key.path: message"`` line and returns ``Choices``: validated, nothing built, no file
opened. ``_resolve.build_components`` then instantiates from them.

A choice that is already resolved (a ``PluginChoice``, ``SinkChoice``, ``LoggingChoice``
or ``PolicyChoice``) passes through: its plugin is looked up in the registry at hand and
its validated options are kept, never re-read from a raw table.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from typing import Any, TypeAlias

import attrs

from ._agent import Agent
from ._logging import parse_level
from ._plugins import Kind, PluginRegistry, Registration
from ._policy import ErrorPolicy
from ._secrets import secret_option_values
from ._tables import Shape, check_table, expect, key_path, type_name
from ._validation import ValidationFailed, structure_strictly
from .contracts import LogSink, ModelProvider, Sandbox, SessionStorage
from .errors import ConfigError

__all__ = [
    "Choices",
    "LoggingChoice",
    "PluginChoice",
    "PolicyChoice",
    "SinkChoice",
    "missing_secrets",
    "resolve_choices",
]


@attrs.frozen
class PluginChoice:
    """A plugin chosen by name: ``options`` is the table as written, ``settings`` the
    validated options instance (``None`` for a plugin without options)."""

    plugin: str
    options: Mapping[str, Any] = attrs.field(factory=dict)
    settings: Any = None
    distribution: str | None = None


@attrs.frozen
class SinkChoice:
    """A log sink chosen by name, with its effective level."""

    plugin: str
    level: str
    options: Mapping[str, Any] = attrs.field(factory=dict)
    settings: Any = None
    distribution: str | None = None


@attrs.frozen
class LoggingChoice:
    """The ``logging`` choices: a default level, the sinks (chosen by name, or instances
    the host passed in) and the extra values and key names to redact."""

    level: str = "info"
    sinks: tuple[SinkChoice | LogSink, ...] = ()
    redact: tuple[str, ...] = ()
    redact_keys: tuple[str, ...] = ()


@attrs.frozen
class PolicyChoice:
    """The error policy and the retry policy it resolves to (``policy.retry.policy``, or
    the first registered retry policy)."""

    policy: ErrorPolicy
    retry: PluginChoice


ProviderSpec: TypeAlias = PluginChoice | ModelProvider


@attrs.frozen
class Choices:
    """Everything a store is built from, validated; nothing in it has been built.

    ``tools`` holds a choice for every tool kit the agent names. ``plugins``,
    ``strict_plugins`` and ``autoload_plugins`` say how the store's registry is loaded.
    """

    agent: Agent
    providers: tuple[ProviderSpec, ...]
    default_model: str
    storage: PluginChoice | SessionStorage
    sandbox: PluginChoice | Sandbox
    logging: LoggingChoice
    error_policy: PolicyChoice
    tools: Mapping[str, PluginChoice] = attrs.field(factory=dict)
    plugins: tuple[object, ...] = ()
    strict_plugins: bool = False
    autoload_plugins: bool | None = None

    def secret_values(self) -> list[str]:
        """The secret option values of every chosen plugin and the ``redact`` values."""
        choices: list[Any] = [
            *self.providers,
            self.storage,
            self.sandbox,
            *self.logging.sinks,
            self.error_policy.retry,
            *self.tools.values(),
        ]
        values = list(self.logging.redact)
        for choice in choices:
            if isinstance(choice, PluginChoice | SinkChoice):
                values += secret_option_values(choice.settings)
        return list(dict.fromkeys(values))

    def missing_secrets(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """One ``"path: ..."`` line for each required secret (see ``missing_secrets``)
        that no chosen plugin's options or ``environ`` (``os.environ``) supply."""
        env = os.environ if environ is None else environ
        chosen: list[tuple[str, Any]] = [
            (f"providers[{i}].options", p) for i, p in enumerate(self.providers)
        ]
        chosen += [("storage.options", self.storage), ("sandbox.options", self.sandbox)]
        chosen += [(f"logging.sinks[{i}].options", s) for i, s in enumerate(self.logging.sinks)]
        chosen.append(("error_policy.retry.model", self.error_policy.retry))
        chosen += [(f"{key_path('tools', kit)}.options", c) for kit, c in self.tools.items()]
        lines: list[str] = []
        for path, choice in chosen:
            if isinstance(choice, PluginChoice | SinkChoice):
                lines += missing_secrets(choice.settings, path, env)
        return lines


def missing_secrets(settings: object, path: str, environ: Mapping[str, str]) -> list[str]:
    """The required secrets an options instance lacks, each as ``"path.field: ..."``.

    A field declares itself a required secret with ``metadata={"secret": True,
    "required": True}``. ``"required"`` may instead be a function of the options
    instance (a key needed for the vendor's own API only), and ``"env"`` names the
    environment variable that supplies the value when the option is unset, or is a
    function of the options returning that name (or ``None``). A secret is missing when
    the field is empty and that variable is unset or empty.
    """
    cls = type(settings)
    if not attrs.has(cls):
        return []
    lines = []
    for field in attrs.fields(cls):
        required = field.metadata.get("required", False)
        if not field.metadata.get("secret") or not required:
            continue
        if callable(required) and not required(settings):
            continue
        if getattr(settings, field.name):
            continue
        variable = field.metadata.get("env")
        if callable(variable):
            variable = variable(settings)
        if isinstance(variable, str) and variable:
            if environ.get(variable):
                continue
            where = f"set it, or the environment variable {variable}"
        else:
            where = "set it"
        lines.append(f"{path}.{field.name}: required secret not set ({where})")
    return lines


def namespace_of(spec: ProviderSpec) -> str:
    """The namespace a provider serves: an instance's ``name``; for a chosen plugin its
    ``namespace`` / ``name`` / ``alias`` option when it has one, else the plugin name.
    (What a chosen plugin really serves is checked again once it is built.)"""
    if isinstance(spec, ModelProvider):
        return spec.name
    for attr in ("namespace", "name", "alias"):
        value = getattr(spec.settings, attr, None)
        if isinstance(value, str) and value:
            return value
    return spec.plugin


def resolve_choices(
    registry: PluginRegistry,
    *,
    agent: Agent | None,
    providers: Sequence[Any] = ("scripted",),
    default_model: Any = "scripted/echo",
    storage: Any = "memory",
    storage_options: Mapping[str, Any] | None = None,
    sandbox: Any = "noop",
    sandbox_options: Mapping[str, Any] | None = None,
    logging: Any = None,
    error_policy: Any = None,
    tool_options: Mapping[str, Any] | None = None,
    plugins: Sequence[object] = (),
    strict_plugins: bool = False,
    autoload_plugins: bool | None = None,
    errors: list[str],
) -> Choices | None:
    """Validate every choice against ``registry``, appending one line per problem to
    ``errors``; the ``Choices`` when there was none (and ``agent`` is known).

    ``agent=None`` means the agent could not be had (the caller reported why): the
    checks that need it are skipped. ``storage``, ``sandbox`` and each provider may be a
    plugin name (with ``*_options``), a ``{"plugin", "options"}`` table, an instance or
    a resolved ``PluginChoice``; ``logging`` a table or a ``LoggingChoice``;
    ``error_policy`` a table, an ``ErrorPolicy`` or a ``PolicyChoice``; ``tool_options``
    maps a kit name to its options table or its ``PluginChoice``.
    """
    mine: list[str] = []
    chosen = _providers(registry, providers, mine)
    namespaces = {namespace_of(spec) for spec in chosen}
    model = default_model if isinstance(default_model, str) else ""
    if expect(default_model, str, "default_model", mine):
        check_model_ref(default_model, "default_model", namespaces, mine)
    if agent is not None:
        for index, mode in enumerate(agent.modes):
            if mode.model:
                check_model_ref(mode.model, f"agent.modes[{index}].model", namespaces, mine)
    store = _component(
        registry, "storage", storage, storage_options, SessionStorage, "storage", mine
    )
    box = _component(registry, "sandbox", sandbox, sandbox_options, Sandbox, "sandbox", mine)
    log = _logging(registry, logging, mine)
    policy = _error_policy(registry, error_policy, mine)
    kits = _tool_kits(registry, agent, tool_options or {}, mine)
    errors.extend(mine)
    if mine or agent is None or store is None or box is None or log is None or policy is None:
        return None
    return Choices(
        agent=agent,
        providers=tuple(chosen),
        default_model=model,
        storage=store,
        sandbox=box,
        logging=log,
        error_policy=policy,
        tools=kits,
        plugins=tuple(plugins),
        strict_plugins=strict_plugins,
        autoload_plugins=autoload_plugins,
    )


def check_model_ref(ref: str, path: str, namespaces: set[str], errors: list[str]) -> None:
    """A model ref must read ``<namespace>/<model>`` with a configured namespace (not
    checked when no provider could be resolved: that was reported already)."""
    problem = model_ref_problem(ref, namespaces or None)
    if problem is not None:
        errors.append(f"{path}: {problem}")


def model_ref_problem(ref: str, namespaces: Collection[str] | None) -> str | None:
    """Why ``ref`` is not ``<namespace>/<model>`` with one of ``namespaces`` (any, when
    ``None``), as a message without a path; ``None`` when it is."""
    namespace, sep, name = ref.partition("/")
    if not (sep and namespace and name):
        return f"model ref '{ref}' must look like '<provider>/<model>'"
    if namespaces is not None and namespace not in namespaces:
        known = ", ".join(sorted(namespaces)) or "none"
        return f"no configured provider serves '{ref}' (configured namespaces: {known})"
    return None


# -- one plugin ---------------------------------------------------------------------------


def _registration(
    registry: PluginRegistry, kind: Kind, name: str, path: str, errors: list[str]
) -> Registration | None:
    try:
        return registry.get(kind, name)
    except ConfigError as exc:
        errors.append(f"{path}: {exc}")
        return None


def _settings(
    reg: Registration, options: Mapping[str, Any], path: str, errors: list[str]
) -> tuple[bool, Any]:
    """Validate ``options`` against the registration's options class: ``(ok, instance)``."""
    if reg.options is None:
        label = reg.kind.replace("_", " ")
        errors.extend(
            f"{key_path(path, str(key))}: unknown key ({label} '{reg.name}' takes no options)"
            for key in options
        )
        return not options, None
    try:
        return True, structure_strictly(dict(options), reg.options, root=path)
    except ValidationFailed as exc:
        errors.extend(exc.errors)
        return False, None


def _plugin(
    registry: PluginRegistry,
    kind: Kind,
    name: str,
    options: Any,
    options_path: str,
    name_path: str,
    errors: list[str],
) -> PluginChoice | None:
    """A plugin chosen by name with its options validated."""
    if options is None:
        options = {}
    if not expect(options, Mapping, options_path, errors):
        return None
    reg = _registration(registry, kind, name, name_path, errors)
    if reg is None:
        return None
    ok, settings = _settings(reg, options, options_path, errors)
    return PluginChoice(reg.name, dict(options), settings, reg.distribution) if ok else None


def _resolved(
    registry: PluginRegistry,
    kind: Kind,
    choice: PluginChoice,
    options_path: str,
    name_path: str,
    errors: list[str],
) -> PluginChoice | None:
    """A choice resolved before (by ``load_config``): kept as it is when the registry at
    hand has the same plugin with the same options class, else validated afresh."""
    reg = _registration(registry, kind, choice.plugin, name_path, errors)
    if reg is None:
        return None
    same = (
        choice.settings is None if reg.options is None else isinstance(choice.settings, reg.options)
    )
    if same:
        return choice
    return _plugin(registry, kind, choice.plugin, choice.options, options_path, name_path, errors)


def _table_choice(
    registry: PluginRegistry, kind: Kind, spec: Any, at: str, errors: list[str]
) -> PluginChoice | None:
    table = check_table(spec, at, {"plugin": str, "options": Mapping}, errors, required=("plugin",))
    if table is None or "plugin" not in table:
        return None
    return _plugin(
        registry,
        kind,
        table["plugin"],
        table.get("options", {}),
        f"{at}.options",
        f"{at}.plugin",
        errors,
    )


def _component(
    registry: PluginRegistry,
    kind: Kind,
    spec: Any,
    options: Mapping[str, Any] | None,
    cls: type,
    at: str,
    errors: list[str],
) -> Any:
    """An instance, a resolved choice, a ``{"plugin", "options"}`` table or a name.

    Options given beside a resolved choice replace its options (``open_store_from_config``
    passes a host's ``storage_options=`` over the file's choice that way)."""
    if isinstance(spec, cls) and options:
        errors.append(f"{at}: options only apply when the plugin is named, not to an instance")
        return None
    if isinstance(spec, cls):
        return spec
    if isinstance(spec, PluginChoice):
        if options:
            return _plugin(
                registry, kind, spec.plugin, options, f"{at}.options", f"{at}.plugin", errors
            )
        return _resolved(registry, kind, spec, f"{at}.options", f"{at}.plugin", errors)
    if isinstance(spec, Mapping):
        if options:
            errors.append(f"{at}: give the options inside the table, not as well beside it")
            return None
        return _table_choice(registry, kind, spec, at, errors)
    if isinstance(spec, str):
        return _plugin(registry, kind, spec, options, f"{at}.options", at, errors)
    errors.append(
        f"{at}: expected a plugin name, a table with 'plugin', or a {cls.__name__} instance, got {type_name(spec)}"
    )
    return None


# -- the choices --------------------------------------------------------------------------


def _providers(registry: PluginRegistry, specs: Any, errors: list[str]) -> list[ProviderSpec]:
    if isinstance(specs, str | Mapping) or not isinstance(specs, Sequence):
        errors.append(f"providers: expected an array of providers, got {type_name(specs)}")
        return []
    if not specs:
        errors.append("providers: configure at least one provider")
    chosen: list[ProviderSpec] = []
    seen: dict[str, str] = {}
    for index, spec in enumerate(specs):
        at = f"providers[{index}]"
        choice = _component(registry, "provider", spec, None, ModelProvider, at, errors)
        if choice is None:
            continue
        namespace = namespace_of(choice)
        if namespace in seen:
            errors.append(
                f"{at}: two providers serve the namespace '{namespace}' (also {seen[namespace]})"
            )
        seen.setdefault(namespace, at)
        chosen.append(choice)
    return chosen


_LOGGING_KEYS: dict[str, Shape] = {
    "level": str,
    "sinks": (list, tuple),
    "redact": (list, tuple),
    "redact_keys": (list, tuple),
}


def _logging(registry: PluginRegistry, raw: Any, errors: list[str]) -> LoggingChoice | None:
    if isinstance(raw, LoggingChoice):
        resolved = [
            _sink(registry, s, f"logging.sinks[{i}]", raw.level, errors)
            for i, s in enumerate(raw.sinks)
        ]
        kept = tuple(s for s in resolved if s is not None)
        if len(kept) < len(resolved):
            return None
        return raw if kept == raw.sinks else attrs.evolve(raw, sinks=kept)
    table = check_table({} if raw is None else raw, "logging", _LOGGING_KEYS, errors)
    if table is None:
        return None
    count = len(errors)
    level = table.get("level", "info")
    try:
        parse_level(level)
    except ValueError as exc:
        errors.append(f"logging.level: {exc}")
    words: dict[str, tuple[str, ...]] = {}
    for key in ("redact", "redact_keys"):
        items = table.get(key, ())
        for index, item in enumerate(items):
            expect(item, str, f"logging.{key}[{index}]", errors)
        words[key] = tuple(i for i in items if isinstance(i, str))
    sinks: list[SinkChoice | LogSink] = []
    for index, entry in enumerate(table.get("sinks", ())):
        sink = _sink(registry, entry, f"logging.sinks[{index}]", level, errors)
        if sink is not None:
            sinks.append(sink)
    if len(errors) > count:
        return None
    return LoggingChoice(level, tuple(sinks), words["redact"], words["redact_keys"])


def _sink(
    registry: PluginRegistry, entry: Any, at: str, level: str, errors: list[str]
) -> SinkChoice | LogSink | None:
    if isinstance(entry, LogSink):
        return entry
    if isinstance(entry, SinkChoice):
        plugin = _resolved(
            registry,
            "log_sink",
            PluginChoice(entry.plugin, entry.options, entry.settings),
            f"{at}.options",
            f"{at}.plugin",
            errors,
        )
        if plugin is None:
            return None
        return (
            entry
            if plugin.settings is entry.settings
            else attrs.evolve(entry, settings=plugin.settings)
        )
    if isinstance(entry, str):
        entry = {"plugin": entry}
    spec = check_table(
        entry, at, {"plugin": str, "level": str, "options": Mapping}, errors, required=("plugin",)
    )
    if spec is None or "plugin" not in spec:
        return None
    sink_level = spec.get("level", level)
    if "level" in spec:
        try:
            parse_level(sink_level)
        except ValueError as exc:
            errors.append(f"{at}.level: {exc}")
            return None
    plugin = _plugin(
        registry,
        "log_sink",
        spec["plugin"],
        spec.get("options", {}),
        f"{at}.options",
        f"{at}.plugin",
        errors,
    )
    if plugin is None:
        return None
    return SinkChoice(
        plugin.plugin, sink_level, plugin.options, plugin.settings, plugin.distribution
    )


def _error_policy(registry: PluginRegistry, raw: Any, errors: list[str]) -> PolicyChoice | None:
    if isinstance(raw, PolicyChoice):
        retry = _resolved(
            registry,
            "retry_policy",
            raw.retry,
            "error_policy.retry.model",
            "error_policy.retry.policy",
            errors,
        )
        if retry is None:
            return None
        return raw if retry is raw.retry else attrs.evolve(raw, retry=retry)
    if isinstance(raw, ErrorPolicy):
        policy = raw
    else:
        if raw is not None and not isinstance(raw, Mapping):
            errors.append(f"error_policy: expected a table or an ErrorPolicy, got {type_name(raw)}")
            return None
        try:
            policy = structure_strictly(dict(raw or {}), ErrorPolicy, root="error_policy")
        except ValidationFailed as exc:
            errors.extend(exc.errors)
            return None
    name = policy.retry.policy
    if name is None:
        first = registry.first("retry_policy")
        name = first.name if first else "none"
    reg = _registration(registry, "retry_policy", name, "error_policy.retry.policy", errors)
    if reg is None:
        return None
    ok, settings = _settings(reg, policy.retry.model, "error_policy.retry.model", errors)
    return (
        PolicyChoice(
            policy, PluginChoice(reg.name, dict(policy.retry.model), settings, reg.distribution)
        )
        if ok
        else None
    )


def _tool_kits(
    registry: PluginRegistry, agent: Agent | None, options: Any, errors: list[str]
) -> dict[str, PluginChoice]:
    """A choice for every tool kit the agent names; options for another kit are an error."""
    if not expect(options, Mapping, "tools", errors):
        return {}
    if agent is None:
        return {}
    kits = [item for item in agent.tools if isinstance(item, str)]
    chosen: dict[str, PluginChoice] = {}
    for kit in kits:
        at = key_path("tools", kit)
        given = options.get(kit)
        if isinstance(given, PluginChoice):
            choice = _resolved(
                registry, "tools", given, f"{at}.options", f"agent: tool kit '{kit}'", errors
            )
        else:
            choice = _plugin(
                registry, "tools", kit, given, f"{at}.options", f"agent: tool kit '{kit}'", errors
            )
        if choice is not None:
            chosen[kit] = choice
    for kit in options:
        if kit not in kits:
            uses = ", ".join(kits) or "none"
            errors.append(
                f"{key_path('tools', str(kit))}: the agent does not use tool kit '{kit}' (it uses: {uses})"
            )
    return chosen
