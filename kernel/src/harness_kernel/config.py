"""Deploy from a file: ``harness.toml`` read, interpolated, validated and resolved.

``load_config(path)`` reads the file (stdlib ``tomllib``), replaces ``${VAR}`` and
``${VAR:-default}`` in every string, imports the agent and the extra plugin modules,
resolves every ``plugin = "name"`` through a ``PluginRegistry`` and validates each
``options`` table against the plugin's attrs options class. It reports every problem at
once, each as ``"key.path: message"``, in a ``ConfigFileError``; it never builds a
component (no file is created, no connection opened). ``open_store_from_config(path)``
then opens a ``SessionStore`` from the resolved configuration.

The file's keys, with their defaults::

    agent = "module:attribute"          # required; imported relative to the file too
    default_model = "scripted/echo"
    strict_plugins = false
    autoload_plugins = true
    grace_period = 5.0
    [[plugins]]        module = "my_hooks"                  # extra hook modules
    [[providers]]      plugin = "scripted"   options = {}
    [storage]          plugin = "memory"     options = {}
    [sandbox]          plugin = "noop"       options = {}
    [logging]          level = "info"  redact = []  redact_keys = []
    [[logging.sinks]]  plugin = "console"  level = "info"  options = {}
    [error_policy]     (the fields of ErrorPolicy)
    [tools.<kit>]      options = {}                          # options of a tool kit
"""

from __future__ import annotations

import difflib
import importlib
import math
import os
import re
import sys
import tomllib
import traceback
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Final

import attrs

from ._agent import Agent
from ._logging import MASK, SENSITIVE_KEY, parse_level
from ._plugins import Kind, PluginRegistry, Registration
from ._policy import ErrorPolicy
from ._validation import ValidationFailed, structure_strictly
from .codec import converter
from .errors import ConfigError, ConfigFileError, HarnessError, PluginError

__all__ = [
    "DEFAULT_CONFIG",
    "ConfigFileError",
    "HarnessConfig",
    "LoggingChoice",
    "PluginChoice",
    "SinkChoice",
    "interpolate",
    "load_config",
    "open_store_from_config",
    "render_toml",
]

DEFAULT_CONFIG: Final = "harness.toml"
CONFIG_DIR_VARIABLE: Final = "CONFIG_DIR"
"""``${CONFIG_DIR}`` is always the absolute directory of the file being loaded."""


# -- the resolved configuration ---------------------------------------------------------


@attrs.frozen
class PluginChoice:
    """A plugin named in the file: ``options`` is the table as written (after
    interpolation), ``settings`` the validated options instance (``None`` for a plugin
    without options)."""

    plugin: str
    options: Mapping[str, Any] = attrs.field(factory=dict)
    settings: Any = None
    distribution: str | None = None


@attrs.frozen
class SinkChoice:
    """A ``[[logging.sinks]]`` entry with its effective level."""

    plugin: str
    level: str
    options: Mapping[str, Any] = attrs.field(factory=dict)
    settings: Any = None
    distribution: str | None = None


@attrs.frozen
class LoggingChoice:
    """The ``[logging]`` table."""

    level: str = "info"
    sinks: tuple[SinkChoice, ...] = ()
    redact: tuple[str, ...] = ()
    redact_keys: tuple[str, ...] = ()


@attrs.frozen
class HarnessConfig:
    """A loaded, validated configuration: what ``load_config`` returns."""

    path: Path
    agent_ref: str
    agent: Agent
    default_model: str
    providers: tuple[PluginChoice, ...]
    storage: PluginChoice
    sandbox: PluginChoice
    logging: LoggingChoice
    error_policy: ErrorPolicy
    plugin_modules: tuple[str, ...] = ()
    plugin_objects: tuple[object, ...] = ()
    tools: Mapping[str, PluginChoice] = attrs.field(factory=dict)
    strict_plugins: bool = False
    autoload_plugins: bool | None = None
    grace_period: float = 5.0
    retry: PluginChoice | None = None
    """The retry policy in effect: ``error_policy.retry.policy`` or the default one."""

    def store_arguments(self) -> dict[str, Any]:
        """Keyword arguments for ``create_session_store`` (add ``resources`` yourself)."""
        return {
            "agent": self.agent,
            "providers": [{"plugin": p.plugin, "options": dict(p.options)} for p in self.providers],
            "default_model": self.default_model,
            "storage": self.storage.plugin,
            "storage_options": dict(self.storage.options),
            "sandbox": self.sandbox.plugin,
            "sandbox_options": dict(self.sandbox.options),
            "logging": {
                "level": self.logging.level,
                "sinks": [
                    {"plugin": s.plugin, "level": s.level, "options": dict(s.options)}
                    for s in self.logging.sinks
                ],
                "redact": list(self.logging.redact),
                "redact_keys": list(self.logging.redact_keys),
            },
            "error_policy": self.error_policy,
            "plugins": list(self.plugin_objects),
            "strict_plugins": self.strict_plugins,
            "autoload_plugins": self.autoload_plugins,
            "tool_options": {kit: dict(choice.options) for kit, choice in self.tools.items()},
            "grace_period": self.grace_period,
        }

    def to_data(self, *, mask_secrets: bool = True) -> dict[str, Any]:
        """The resolved configuration as plain TOML-ready data, every default filled in.

        With ``mask_secrets``, option fields marked ``metadata={"secret": True}`` or named
        like secrets (``api_key``, ``token``, ...), the ``logging.redact`` values, and any
        occurrence of those values inside other strings are replaced by ``[redacted]``.
        """
        secrets: set[str] = set(self.logging.redact)

        def options(choice: PluginChoice | SinkChoice) -> dict[str, Any]:
            if choice.settings is None:
                return dict(choice.options)
            return _public_options(choice.settings, secrets if mask_secrets else None)

        data: dict[str, Any] = {
            "agent": self.agent_ref,
            "default_model": self.default_model,
            "strict_plugins": self.strict_plugins,
            "autoload_plugins": True if self.autoload_plugins is None else self.autoload_plugins,
            "grace_period": self.grace_period,
            "plugins": [{"module": m} for m in self.plugin_modules],
            "providers": [{"plugin": p.plugin, "options": options(p)} for p in self.providers],
            "storage": {"plugin": self.storage.plugin, "options": options(self.storage)},
            "sandbox": {"plugin": self.sandbox.plugin, "options": options(self.sandbox)},
            "logging": {
                "level": self.logging.level,
                "redact": list(self.logging.redact),
                "redact_keys": list(self.logging.redact_keys),
                "sinks": [
                    {"plugin": s.plugin, "level": s.level, "options": options(s)}
                    for s in self.logging.sinks
                ],
            },
            "error_policy": converter.unstructure(self.error_policy),
            "tools": {kit: {"options": options(choice)} for kit, choice in self.tools.items()},
        }
        if self.retry is not None:
            data["error_policy"]["retry"] = {
                "policy": self.retry.plugin,
                "model": options(self.retry),
            }
        if not mask_secrets:
            return data
        masked: dict[str, Any] = _mask_values(
            data, sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)
        )
        masked["logging"]["redact"] = [MASK for _ in self.logging.redact]
        return masked

    def to_toml(self, *, mask_secrets: bool = True) -> str:
        """``to_data`` rendered as TOML that ``load_config`` reads back (unmasked)."""
        return render_toml(self.to_data(mask_secrets=mask_secrets))


def _public_options(settings: Any, secrets: set[str] | None) -> dict[str, Any]:
    """Unstructure an options instance; with ``secrets`` (a set to fill), mask secret
    fields and record their values."""
    data: dict[str, Any] = dict(converter.unstructure(settings))
    if secrets is None or not attrs.has(type(settings)):
        return data
    for field in attrs.fields(type(settings)):
        value = getattr(settings, field.name)
        secret = field.metadata.get("secret") or SENSITIVE_KEY.search(field.name)
        if secret and isinstance(value, str) and value:
            secrets.add(value)
            data[field.name] = MASK
        elif attrs.has(type(value)):
            data[field.name] = _public_options(value, secrets)
        elif isinstance(data.get(field.name), Mapping):
            data[field.name] = _mask_keys(data[field.name], secrets)
    return data


def _mask_keys(value: Any, secrets: set[str]) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if (
                isinstance(key, str)
                and SENSITIVE_KEY.search(key)
                and isinstance(item, str)
                and item
            ):
                secrets.add(item)
                out[key] = MASK
            else:
                out[key] = _mask_keys(item, secrets)
        return out
    if isinstance(value, list | tuple):
        return [_mask_keys(v, secrets) for v in value]
    return value


def _mask_values(value: Any, secrets: Sequence[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASK)
        return value
    if isinstance(value, Mapping):
        return {k: _mask_values(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_values(v, secrets) for v in value]
    return value


# -- interpolation ----------------------------------------------------------------------

_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Interpolation(Exception):
    pass


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Replace ``${NAME}`` and ``${NAME:-default}`` in ``text`` from ``environ``.

    ``${NAME}`` of an unset variable is an error; ``${NAME:-default}`` uses ``default``
    (itself interpolated, so defaults nest) when the variable is unset or empty. ``$${``
    writes a literal ``${``; any other ``$`` is left alone. Raises ``ValueError`` with a
    message naming the variable.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("$${", i):
            out.append("${")
            i += 3
            continue
        if not text.startswith("${", i):
            out.append(text[i])
            i += 1
            continue
        match = _VAR_NAME.match(text, i + 2)
        if match is None:
            raise ValueError(
                f"malformed reference at character {i + 1}: write ${{NAME}} or ${{NAME:-default}}"
            )
        name, j = match.group(), match.end()
        if text.startswith("}", j):
            value = environ.get(name)
            if value is None:
                raise ValueError(
                    f"environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
                )
            out.append(value)
            i = j + 1
        elif text.startswith(":-", j):
            depth, k = 1, j + 2
            while k < n:
                if text.startswith("${", k):
                    depth, k = depth + 1, k + 2
                    continue
                if text[k] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                k += 1
            if k >= n:
                raise ValueError(f"unterminated reference ${{{name}:-... (missing '}}')")
            value = environ.get(name)
            out.append(value if value else interpolate(text[j + 2 : k], environ))
            i = k + 1
        else:
            raise ValueError(
                f"malformed reference ${{{name}...: write ${{{name}}} or ${{{name}:-default}}"
            )
    return "".join(out)


def _interpolate_tree(value: Any, path: str, environ: Mapping[str, str], errors: list[str]) -> Any:
    if isinstance(value, str):
        try:
            return interpolate(value, environ)
        except ValueError as exc:
            errors.append(f"{path}: {exc}")
            return value
    if isinstance(value, dict):
        return {
            k: _interpolate_tree(v, _key_path(path, k), environ, errors) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate_tree(v, f"{path}[{i}]", environ, errors) for i, v in enumerate(value)]
    return value


# -- shape checking ---------------------------------------------------------------------


def _key_path(parent: str, key: str) -> str:
    shown = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f'"{key}"'
    return f"{parent}.{shown}" if parent else shown


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _expect(
    value: Any, kind: type | tuple[type, ...], label: str, path: str, errors: list[str]
) -> bool:
    ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _as_tuple(kind))
    if not ok:
        errors.append(f"{path}: expected {label}, got {_type_name(value)}")
    return ok


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


_SHAPES: dict[type | tuple[type, ...], str] = {
    str: "str",
    bool: "bool",
    dict: "a table",
    list: "an array",
    (int, float): "a number",
}


def _table(
    value: Any,
    path: str,
    keys: Mapping[str, type | tuple[type, ...]],
    errors: list[str],
    *,
    required: Sequence[str] = (),
) -> dict[str, Any] | None:
    """The keys of ``value`` whose types fit; an error for each unknown, missing or
    mistyped key. ``None`` if ``value`` is not a table at all."""
    if not isinstance(value, dict):
        errors.append(f"{path}: expected a table, got {_type_name(value)}")
        return None
    clean: dict[str, Any] = {}
    for key, item in value.items():
        kind = keys.get(key)
        if kind is None:
            close = difflib.get_close_matches(key, list(keys), n=1)
            hint = (
                f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(keys)})"
            )
            errors.append(f"{_key_path(path, key)}: unknown key{hint}")
        elif _expect(item, kind, _SHAPES[kind], _key_path(path, key), errors):
            clean[key] = item
    for key in required:
        if key not in value:
            errors.append(f"{_key_path(path, key)}: required key missing")
    return clean


def _split_unknown(lines: Sequence[str]) -> list[str]:
    """cattrs reports ``"path: unknown key(s): a, b"``; report each key at its own path."""
    out = []
    for line in lines:
        match = re.match(r"^(.*): unknown key\(s\): (.*)$", line)
        if match is None:
            out.append(line)
            continue
        for key in match.group(2).split(", "):
            out.append(f"{_key_path(match.group(1), key)}: unknown key")
    return out


# -- imports ----------------------------------------------------------------------------


def _where(exc: BaseException, base_dir: Path) -> str:
    """`` (file.py, line N)``: where the import failed, preferring the user's own files
    (those next to the config) over the library frames below them."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" ({Path(exc.filename).name}, line {exc.lineno})"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename]
    local = [f for f in frames if Path(f.filename).is_relative_to(base_dir)]
    chosen = (local or frames)[-1:] if (local or frames) else []
    return "".join(f" ({Path(f.filename).name}, line {f.lineno})" for f in chosen)


def _import(ref: str, base_dir: Path, path: str, errors: list[str], *, attribute: str) -> Any:
    """Import ``module`` or ``module:attr`` with ``base_dir`` on ``sys.path``; ``None``
    (and an error) on failure. ``attribute`` is ``"required"`` or ``"optional"``."""
    module_name, sep, attr = ref.partition(":")
    if (
        not module_name
        or (attribute == "required" and not sep)
        or (sep and not attr)
        or not all(part.isidentifier() for part in module_name.split("."))
        or (attr and not all(part.isidentifier() for part in attr.split(".")))
    ):
        form = "'module:attribute'" if attribute == "required" else "'module' or 'module:attribute'"
        errors.append(f"{path}: expected {form}, got '{ref}'")
        return None
    directory = str(base_dir)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (
            module_name == exc.name or module_name.startswith(exc.name + ".")
        ):
            errors.append(
                f"{path}: no module named '{exc.name}' (looked in {directory} and sys.path)"
            )
        else:
            errors.append(
                f"{path}: importing '{module_name}' failed: {type(exc).__name__}: {exc}{_where(exc, base_dir)}"
            )
        return None
    except Exception as exc:
        message = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        errors.append(
            f"{path}: importing '{module_name}' failed: {type(exc).__name__}: {message}{_where(exc, base_dir)}"
        )
        return None
    for part in attr.split(".") if attr else ():
        if not hasattr(obj, part):
            errors.append(f"{path}: module '{module_name}' has no attribute '{attr}'")
            return None
        obj = getattr(obj, part)
    return obj


# -- plugins ----------------------------------------------------------------------------


def _registration(
    registry: PluginRegistry, kind: Kind, name: str, path: str, errors: list[str]
) -> Registration | None:
    try:
        return registry.get(kind, name)
    except ConfigError as exc:
        errors.append(f"{path}: {exc}")
        return None


def _settings(
    reg: Registration, options: dict[str, Any], path: str, errors: list[str]
) -> tuple[bool, Any]:
    """Validate ``options`` against the registration's class: ``(ok, instance)``."""
    if reg.options is None:
        for key in options:
            errors.append(
                f"{_key_path(path, key)}: unknown key ({reg.kind.replace('_', ' ')} '{reg.name}' takes no options)"
            )
        return not options, None
    try:
        return True, structure_strictly(options, reg.options, root=path)
    except ValidationFailed as exc:
        errors.extend(_split_unknown(exc.errors))
        return False, None


def _choice(
    raw: Any, path: str, kind: Kind, registry: PluginRegistry | None, errors: list[str]
) -> PluginChoice | None:
    table = _table(raw, path, {"plugin": str, "options": dict}, errors, required=("plugin",))
    if table is None or "plugin" not in table:
        return None
    options = table.get("options", {})
    if registry is None:
        return PluginChoice(table["plugin"], options)
    reg = _registration(registry, kind, table["plugin"], f"{path}.plugin", errors)
    if reg is None:
        return None
    ok, settings = _settings(reg, options, f"{path}.options", errors)
    return PluginChoice(reg.name, options, settings, reg.distribution) if ok else None


def _namespace(choice: PluginChoice) -> str:
    """The model-ref namespace a provider will serve: its ``name`` / ``namespace`` /
    ``alias`` option when it has one, else the plugin name (the store checks the real
    ``provider.name`` again when it opens)."""
    for attr in ("name", "namespace", "alias"):
        value = getattr(choice.settings, attr, None)
        if isinstance(value, str) and value:
            return value
    return choice.plugin


# -- loading ----------------------------------------------------------------------------

_TOP: dict[str, type | tuple[type, ...]] = {
    "agent": str,
    "default_model": str,
    "strict_plugins": bool,
    "autoload_plugins": bool,
    "grace_period": (int, float),
    "plugins": list,
    "providers": list,
    "storage": dict,
    "sandbox": dict,
    "logging": dict,
    "error_policy": dict,
    "tools": dict,
}


def _read(path: Path, source: str) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigFileError(
            source, [f"no such file: {path} (pass --config PATH or create it)"]
        ) from None
    except IsADirectoryError:
        raise ConfigFileError(source, ["is a directory, not a TOML file"]) from None
    except OSError as exc:
        raise ConfigFileError(source, [f"cannot be read: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(source, [f"is not UTF-8 text (byte {exc.start})"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(source, [f"TOML syntax error: {exc}"]) from None
    except (RecursionError, ValueError) as exc:
        raise ConfigFileError(source, [f"TOML cannot be read: {type(exc).__name__}"]) from None


def load_config(
    path: str | os.PathLike[str] = DEFAULT_CONFIG, *, environ: Mapping[str, str] | None = None
) -> HarnessConfig:
    """Read, interpolate and validate a config file; ``ConfigFileError`` lists every
    problem. ``environ`` replaces ``os.environ`` for interpolation."""
    file = Path(path).expanduser().absolute()
    source = str(path)
    data = _read(file, source)
    env = dict(os.environ if environ is None else environ)
    env[CONFIG_DIR_VARIABLE] = str(file.parent)
    errors: list[str] = []
    data = _interpolate_tree(data, "", env, errors)
    top = _table(data, "", _TOP, errors, required=("agent",)) or {}
    base = file.parent

    # Extra hook modules come first: they may register the plugins named below.
    modules: list[str] = []
    objects: list[object] = []
    for index, entry in enumerate(top.get("plugins", [])):
        at = f"plugins[{index}]"
        table = _table(entry, at, {"module": str}, errors, required=("module",))
        if table and "module" in table:
            obj = _import(table["module"], base, f"{at}.module", errors, attribute="optional")
            if obj is not None:
                modules.append(table["module"])
                objects.append(obj)

    agent: Agent | None = None
    if "agent" in top:
        obj = _import(top["agent"], base, "agent", errors, attribute="required")
        if obj is not None and not isinstance(obj, Agent):
            errors.append(
                f"agent: '{top['agent']}' is a {type(obj).__name__}, not an agent made by define_agent(...)"
            )
        elif obj is not None:
            agent = obj

    strict = top.get("strict_plugins", False)
    autoload = top.get("autoload_plugins")
    registry: PluginRegistry | None = None
    try:
        registry = PluginRegistry(plugins=objects, strict=strict, autoload=autoload)
    except PluginError as exc:
        errors.append(f"plugins: {exc}")

    providers: list[PluginChoice] = []
    seen: dict[str, str] = {}
    raw_providers = top.get("providers", [{"plugin": "scripted"}])
    for index, entry in enumerate(raw_providers):
        at = f"providers[{index}]"
        choice = _choice(entry, at, "provider", registry, errors)
        if choice is None:
            continue
        namespace = _namespace(choice)
        if namespace in seen:
            errors.append(
                f"{at}: two providers serve the namespace '{namespace}' (also {seen[namespace]})"
            )
        seen.setdefault(namespace, at)
        providers.append(choice)
    if "providers" in top and not raw_providers:
        errors.append("providers: configure at least one provider")

    default_model = top.get("default_model", "scripted/echo")
    _check_model(default_model, "default_model", seen, registry, errors)
    if agent is not None:
        for mode in agent.modes:
            if mode.model:
                _check_model(
                    mode.model, f"agent: mode '{mode.name}' uses model", seen, registry, errors
                )

    storage = _choice(
        top.get("storage", {"plugin": "memory"}), "storage", "storage", registry, errors
    )
    sandbox = _choice(
        top.get("sandbox", {"plugin": "noop"}), "sandbox", "sandbox", registry, errors
    )
    logging = _logging(top.get("logging", {}), registry, errors)
    policy, retry = _error_policy(top.get("error_policy", {}), registry, errors)
    tools = _tools(top.get("tools", {}), agent, registry, errors)

    grace = top.get("grace_period", 5.0)
    if not (math.isfinite(grace) and grace > 0):
        errors.append(f"grace_period: expected a positive number of seconds, got {grace}")

    if errors:
        raise ConfigFileError(source, errors)
    assert agent is not None
    assert storage is not None
    assert sandbox is not None
    assert logging is not None
    assert policy is not None
    return HarnessConfig(
        path=file,
        agent_ref=top["agent"],
        agent=agent,
        default_model=default_model,
        providers=tuple(providers),
        storage=storage,
        sandbox=sandbox,
        logging=logging,
        error_policy=policy,
        plugin_modules=tuple(modules),
        plugin_objects=tuple(objects),
        tools=tools,
        strict_plugins=strict,
        autoload_plugins=autoload,
        grace_period=float(grace),
        retry=retry,
    )


def _check_model(
    ref: str,
    path: str,
    namespaces: Mapping[str, str],
    registry: PluginRegistry | None,
    errors: list[str],
) -> None:
    namespace, sep, name = ref.partition("/")
    if not (sep and namespace and name):
        errors.append(f"{path}: model ref '{ref}' must look like '<provider>/<model>'")
    elif registry is not None and namespaces and namespace not in namespaces:
        known = ", ".join(sorted(namespaces))
        errors.append(
            f"{path}: no configured provider serves '{namespace}/' (configured namespaces: {known})"
        )


def _logging(raw: Any, registry: PluginRegistry | None, errors: list[str]) -> LoggingChoice | None:
    table = _table(
        raw, "logging", {"level": str, "sinks": list, "redact": list, "redact_keys": list}, errors
    )
    if table is None:
        return None
    ok = True
    level = table.get("level", "info")
    try:
        parse_level(level)
    except ValueError as exc:
        errors.append(f"logging.level: {exc}")
        ok = False
    words: dict[str, tuple[str, ...]] = {}
    for key in ("redact", "redact_keys"):
        items = table.get(key, [])
        for index, item in enumerate(items):
            ok &= _expect(item, str, "str", f"logging.{key}[{index}]", errors)
        words[key] = tuple(i for i in items if isinstance(i, str))
    sinks: list[SinkChoice] = []
    for index, entry in enumerate(table.get("sinks", [])):
        at = f"logging.sinks[{index}]"
        if isinstance(entry, str):
            entry = {"plugin": entry}
        spec = _table(
            entry, at, {"plugin": str, "level": str, "options": dict}, errors, required=("plugin",)
        )
        if spec is None or "plugin" not in spec:
            ok = False
            continue
        sink_level = spec.get("level", level)
        if "level" in spec:
            try:
                parse_level(sink_level)
            except ValueError as exc:
                errors.append(f"{at}.level: {exc}")
                ok = False
        options = spec.get("options", {})
        if registry is None:
            continue
        reg = _registration(registry, "log_sink", spec["plugin"], f"{at}.plugin", errors)
        if reg is None:
            ok = False
            continue
        valid, settings = _settings(reg, options, f"{at}.options", errors)
        ok &= valid
        sinks.append(SinkChoice(reg.name, sink_level, options, settings, reg.distribution))
    if not ok:
        return None
    return LoggingChoice(level, tuple(sinks), words["redact"], words["redact_keys"])


def _error_policy(
    raw: Any, registry: PluginRegistry | None, errors: list[str]
) -> tuple[ErrorPolicy | None, PluginChoice | None]:
    """The error policy and the retry policy it resolves to."""
    if not isinstance(raw, dict):
        errors.append(f"error_policy: expected a table, got {_type_name(raw)}")
        return None, None
    try:
        policy = structure_strictly(raw, ErrorPolicy, root="error_policy")
    except ValidationFailed as exc:
        errors.extend(_split_unknown(exc.errors))
        return None, None
    if registry is None:
        return policy, None
    name = policy.retry.policy
    if name is None:
        first = registry.first("retry_policy")
        name = first.name if first else "none"
    reg = _registration(registry, "retry_policy", name, "error_policy.retry.policy", errors)
    if reg is None:
        return None, None
    options = dict(policy.retry.model)
    ok, settings = _settings(reg, options, "error_policy.retry.model", errors)
    return (
        (policy, PluginChoice(reg.name, options, settings, reg.distribution))
        if ok
        else (None, None)
    )


def _tools(
    raw: Any, agent: Agent | None, registry: PluginRegistry | None, errors: list[str]
) -> dict[str, PluginChoice]:
    kits = [item for item in agent.tools if isinstance(item, str)] if agent is not None else []
    if registry is not None:
        for kit in kits:
            _registration(registry, "tools", kit, f"agent: tool kit '{kit}'", errors)
    if not isinstance(raw, dict):
        errors.append(f"tools: expected a table, got {_type_name(raw)}")
        return {}
    choices: dict[str, PluginChoice] = {}
    for kit, entry in raw.items():
        at = _key_path("tools", kit)
        table = _table(entry, at, {"options": dict}, errors)
        if table is None:
            continue
        if agent is not None and kit not in kits:
            uses = ", ".join(kits) or "none"
            errors.append(f"{at}: the agent does not use tool kit '{kit}' (it uses: {uses})")
            continue
        options = table.get("options", {})
        if registry is None or agent is None:
            continue
        reg = _registration(registry, "tools", kit, at, errors)
        if reg is None:
            continue
        ok, settings = _settings(reg, options, f"{at}.options", errors)
        if ok:
            choices[kit] = PluginChoice(kit, options, settings, reg.distribution)
    return choices


# -- opening a store --------------------------------------------------------------------


@asynccontextmanager
async def open_store_from_config(
    config: str | os.PathLike[str] | HarnessConfig = DEFAULT_CONFIG,
    *,
    resources: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[Any]:
    """Open a ``SessionStore`` from a config file (or a loaded ``HarnessConfig``).

    ``resources`` and any other ``create_session_store`` keyword in ``overrides`` are
    added to what the file says. A problem found while the store opens (a provider
    whose real namespace collides, a default model no provider serves) is raised as a
    ``ConfigFileError`` too.
    """
    from ._store import create_session_store

    loaded = config if isinstance(config, HarnessConfig) else load_config(config)
    arguments = {**loaded.store_arguments(), "resources": dict(resources or {}), **overrides}
    async with AsyncExitStack() as stack:
        try:
            store = await stack.enter_async_context(create_session_store(**arguments))
        except ConfigFileError:
            raise
        except ConfigError as exc:
            raise ConfigFileError(str(loaded.path), str(exc).splitlines()) from None
        yield store


# -- rendering --------------------------------------------------------------------------


def render_toml(data: Mapping[str, Any]) -> str:
    """Render plain data (str, int, float, bool, lists, tables; ``None`` omitted) as TOML."""
    lines: list[str] = []
    _emit_table(data, [], lines)
    return "\n".join(lines).strip("\n") + "\n"


def _is_table_array(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
    )


def _emit_table(data: Mapping[str, Any], prefix: list[str], lines: list[str]) -> None:
    plain = {k: v for k, v in data.items() if v is not None}
    nested = {
        k: v for k, v in plain.items() if (isinstance(v, Mapping) and v) or _is_table_array(v)
    }
    for key, value in plain.items():
        if key not in nested:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in nested.items():
        header = ".".join(_toml_key(k) for k in [*prefix, key])
        for item in value if _is_table_array(value) else [value]:
            lines.append("")
            lines.append(f"[[{header}]]" if _is_table_array(value) else f"[{header}]")
            _emit_table(item, [*prefix, key], lines)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_string(text: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")  # a lone surrogate cannot be written in TOML
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, Mapping):
        items = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, os.PathLike):
        return _toml_string(os.fspath(value))
    raise HarnessError(f"cannot write a {type(value).__name__} value as TOML")
