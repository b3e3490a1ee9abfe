"""Deploy from a file: ``harness.toml`` read, interpolated, validated and resolved.

``load_config(path)`` reads the file (stdlib ``tomllib``), replaces ``${VAR}`` and
``${VAR:-default}`` in every string, imports the agent and the extra plugin modules,
then hands the file's choices to the same resolver ``create_session_store`` uses: every
``plugin = "name"`` is looked up in a ``PluginRegistry`` and each ``options`` table is
validated against the plugin's attrs options class. It reports every problem at once,
each as ``"key.path: message"``, in a ``ConfigFileError``; it never builds a component
(no file is created, no connection opened). ``open_store_from_config(path)`` then opens
a ``SessionStore`` from the resolved choices, which the store does not validate again.

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
    [[mcp_servers]]    name = "files"  command = "..."  (or url = "...")   # the mcp kit's
    [prices."<model ref>"]  input = 2.5  output = 10.0  cached = 1.25   # $ per 1M tokens
    [budget]           max_run_tokens = ...  max_run_cost = ...  max_session_tokens = ...
    [tracing]          plugin = "otel"  options = { exporter = "otlp", endpoint = "..." }

``${CONFIG_DIR}`` is always the absolute directory of the file being loaded.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import sys
import tomllib
import traceback
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Final, cast

import attrs

from ._agent import Agent
from ._choices import Choices, LoggingChoice, PluginChoice, SinkChoice, resolve_choices
from ._cost import Costs, resolve_costs
from ._mcp_servers import KIT, renamed, with_mcp_servers
from ._plugins import PluginRegistry
from ._policy import ErrorPolicy
from ._secrets import MASK, mask_tree
from ._tables import Shape, check_table, key_path, split_unknown, typo_targets
from ._toml import DEFAULT_CONFIG, interpolate, interpolate_tree, render_toml
from ._tracing import resolve_tracing
from .codec import converter
from .errors import ConfigError, ConfigFileError, PluginError

__all__ = [
    "ConfigFileError",
    "DEFAULT_CONFIG",
    "HarnessConfig",
    "LoggingChoice",
    "PluginChoice",
    "SinkChoice",
    "interpolate",
    "load_config",
    "open_store_from_config",
    "render_toml",
]

_CONFIG_DIR: Final = "CONFIG_DIR"


# -- the resolved configuration ---------------------------------------------------------


@attrs.frozen
class HarnessConfig:
    """A loaded, validated configuration: what ``load_config`` returns.

    ``choices`` are the resolved choices a store is opened from; the properties below
    read them (every plugin a file names is a ``PluginChoice``, each with its validated
    options instance in ``.settings``).
    """

    path: Path
    agent_ref: str
    choices: Choices
    plugin_modules: tuple[str, ...] = ()
    grace_period: float = 5.0
    costs: Costs = Costs()
    """The ``[prices]`` and ``[budget]`` tables, validated."""
    tracing: PluginChoice | None = None
    """The ``[tracing]`` plugin and its validated options, if the file has one."""
    mcp_kit_added: bool = False
    """``[[mcp_servers]]`` added the ``mcp`` tool kit to the agent (which does not name it)."""
    registry: PluginRegistry | None = attrs.field(default=None, eq=False, repr=False)
    """The plugins the file was resolved against. ``open_store_from_config`` opens the
    store with them and ``harness-kernel plugins`` lists them, so one command loads the
    plugins (and runs their registration hooks) once."""

    @property
    def agent(self) -> Agent:
        return self.choices.agent

    @property
    def default_model(self) -> str:
        return self.choices.default_model

    @property
    def providers(self) -> tuple[PluginChoice, ...]:
        return tuple(_named(p) for p in self.choices.providers)

    @property
    def storage(self) -> PluginChoice:
        return _named(self.choices.storage)

    @property
    def sandbox(self) -> PluginChoice:
        return _named(self.choices.sandbox)

    @property
    def logging(self) -> LoggingChoice:
        return self.choices.logging

    @property
    def error_policy(self) -> ErrorPolicy:
        return self.choices.error_policy.policy

    @property
    def retry(self) -> PluginChoice:
        """The retry policy in effect: ``error_policy.retry.policy`` or the default one."""
        return self.choices.error_policy.retry

    @property
    def tools(self) -> Mapping[str, PluginChoice]:
        """A choice for every tool kit the agent names, with its ``[tools.<kit>]`` options."""
        return self.choices.tools

    @property
    def plugin_objects(self) -> tuple[object, ...]:
        return self.choices.plugins

    @property
    def strict_plugins(self) -> bool:
        return self.choices.strict_plugins

    @property
    def autoload_plugins(self) -> bool | None:
        return self.choices.autoload_plugins

    def store_arguments(self) -> dict[str, Any]:
        """Keyword arguments for ``create_session_store`` as plain names and option
        tables (add ``resources`` yourself). ``open_store_from_config`` does not use
        them: it hands the resolved choices over as they are."""
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
                    for s in _sinks(self.logging)
                ],
                "redact": list(self.logging.redact),
                "redact_keys": list(self.logging.redact_keys),
            },
            "error_policy": self.error_policy,
            "plugins": list(self.plugin_objects),
            "strict_plugins": self.strict_plugins,
            "autoload_plugins": self.autoload_plugins,
            "tool_options": {kit: dict(choice.options) for kit, choice in self.tools.items()},
            "prices": dict(self.costs.prices),
            "budget": self.costs.budget,
            "tracing": _table(self.tracing),
            "grace_period": self.grace_period,
        }

    def missing_secrets(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """The required secrets (API keys) neither the file nor the environment
        (``environ``, else ``os.environ``) supplies, one ``"path: ..."`` line each.
        ``load_config`` does not refuse them: a host may set the variable before it
        opens the store; ``harness-kernel config check`` warns (``--strict``: fails)."""
        return self.choices.missing_secrets(environ)

    def to_data(self, *, mask_secrets: bool = True) -> dict[str, Any]:
        """The resolved configuration as plain TOML-ready data, every default filled in.

        With ``mask_secrets``, the secret option values (fields marked
        ``metadata={"secret": True}`` or named like secrets, ``api_key``, ``token``, ...,
        and entries of dicts under such names), the ``logging.redact`` values, and any
        occurrence of them inside other strings are replaced by ``[redacted]``.
        """
        data: dict[str, Any] = {
            "agent": self.agent_ref,
            "default_model": self.default_model,
            "strict_plugins": self.strict_plugins,
            "autoload_plugins": True if self.autoload_plugins is None else self.autoload_plugins,
            "grace_period": self.grace_period,
            "plugins": [{"module": m} for m in self.plugin_modules],
            "providers": [{"plugin": p.plugin, "options": _options(p)} for p in self.providers],
            "storage": {"plugin": self.storage.plugin, "options": _options(self.storage)},
            "sandbox": {"plugin": self.sandbox.plugin, "options": _options(self.sandbox)},
            "logging": {
                "level": self.logging.level,
                "redact": list(self.logging.redact),
                "redact_keys": list(self.logging.redact_keys),
                "sinks": [
                    {"plugin": s.plugin, "level": s.level, "options": _options(s)}
                    for s in _sinks(self.logging)
                ],
            },
            "error_policy": converter.unstructure(self.error_policy),
            "tools": {kit: {"options": _options(choice)} for kit, choice in self.tools.items()},
            "prices": {ref: _set(p) for ref, p in self.costs.prices.items()},
            "budget": _set(self.costs.budget),
        }
        if self.tracing is not None:
            data["tracing"] = {"plugin": self.tracing.plugin, "options": _options(self.tracing)}
        kit = data["tools"].get(KIT, {}).get("options", {})
        if kit.get("servers"):  # written back as they were declared: [[mcp_servers]]
            data["mcp_servers"] = [_set_tree(entry) for entry in kit.pop("servers")]
            if self.mcp_kit_added and not any(kit.values()):
                del data["tools"][KIT]
        data["error_policy"]["retry"] = {"policy": self.retry.plugin, "model": _options(self.retry)}
        if not mask_secrets:
            return data
        masked = cast("dict[str, Any]", mask_tree(data, self.choices.secret_values()))
        masked["logging"]["redact"] = [MASK for _ in self.logging.redact]
        return masked

    def to_toml(self, *, mask_secrets: bool = True) -> str:
        """``to_data`` rendered as TOML that ``load_config`` reads back (unmasked)."""
        return render_toml(self.to_data(mask_secrets=mask_secrets))


def _named(choice: object) -> PluginChoice:
    # A file names every plugin: its choices are never instances.
    assert isinstance(choice, PluginChoice)
    return choice


def _sinks(logging: LoggingChoice) -> list[SinkChoice]:
    return [sink for sink in logging.sinks if isinstance(sink, SinkChoice)]


def _table(choice: PluginChoice | None) -> dict[str, Any] | None:
    return None if choice is None else {"plugin": choice.plugin, "options": dict(choice.options)}


def _set_tree(data: Any) -> Any:
    """Plain data without its ``None`` values, at every depth (TOML has no null)."""
    if isinstance(data, Mapping):
        return {k: _set_tree(v) for k, v in data.items() if v is not None}
    if isinstance(data, list | tuple):
        return [_set_tree(v) for v in data]
    return data


def _set(record: object) -> dict[str, Any]:
    """An attrs record's fields that are set (TOML has no null)."""
    data: dict[str, Any] = converter.unstructure(record)
    return {key: value for key, value in data.items() if value is not None}


def _options(choice: PluginChoice | SinkChoice) -> dict[str, Any]:
    """A choice's options with every default filled in (as written if it has none)."""
    if choice.settings is None:
        return dict(choice.options)
    return dict(converter.unstructure(choice.settings))


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
    except SystemExit as exc:
        # sys.exit() in a module (a script's "main" run at import) must not end the
        # host or the CLI silently with the module's exit code.
        errors.append(
            f"{path}: importing '{module_name}' called sys.exit({exc.code!r}){_where(exc, base_dir)}: "
            "a module named in the config must not exit when imported"
        )
        return None
    for part in attr.split(".") if attr else ():
        if not hasattr(obj, part):
            errors.append(f"{path}: module '{module_name}' has no attribute '{attr}'")
            return None
        obj = getattr(obj, part)
    return obj


# -- loading ----------------------------------------------------------------------------

_TOP: dict[str, Shape] = {
    "agent": str,
    "default_model": str,
    "strict_plugins": bool,
    "autoload_plugins": bool,
    "grace_period": (int, float),
    "plugins": (list, tuple),
    "providers": (list, tuple),
    "storage": Mapping,
    "sandbox": Mapping,
    "logging": Mapping,
    "error_policy": Mapping,
    "tools": Mapping,
    "mcp_servers": (list, tuple),
    "prices": Mapping,
    "budget": Mapping,
    "tracing": Mapping,
    "server": Mapping,  # read and validated by harness_kernel.server (`harness-kernel serve`)
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
    env[_CONFIG_DIR] = str(file.parent)
    errors: list[str] = []
    data = interpolate_tree(data, "", env, errors)
    top = check_table(data, "", _TOP, errors, required=("agent",)) or {}
    meant = typo_targets(data, _TOP) if isinstance(data, Mapping) else {}
    base = file.parent

    # Extra hook modules come first: they may register the plugins named below.
    modules: list[str] = []
    objects: list[object] = []
    for index, entry in enumerate(top.get("plugins", [])):
        at = f"plugins[{index}]"
        table = check_table(entry, at, {"module": str}, errors, required=("module",))
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
    choices: Choices | None = None
    tracing: PluginChoice | None = None
    try:
        registry = PluginRegistry(plugins=objects, strict=strict, autoload=autoload)
    except PluginError as exc:
        errors.append(f"plugins: {exc}")
    else:
        found: list[str] = []
        servers = top.get("mcp_servers")
        tool_options = _tool_options(top.get("tools", {}), errors)
        declared, tool_options = with_mcp_servers(agent, tool_options, servers, errors)
        added = declared is not agent
        choices = resolve_choices(
            registry,
            agent=declared,
            providers=top.get("providers", [{"plugin": "scripted"}]),
            default_model=top.get("default_model", "scripted/echo"),
            storage=top.get("storage", {"plugin": "memory"}),
            sandbox=top.get("sandbox", {"plugin": "noop"}),
            logging=top.get("logging", {}),
            error_policy=top.get("error_policy", {}),
            tool_options=tool_options,
            plugins=objects,
            strict_plugins=strict,
            autoload_plugins=autoload,
            errors=found,
        )
        found = renamed(found) if servers else found
        errors.extend(_without_consequences(split_unknown(found), meant))
        tracing = resolve_tracing(registry, top.get("tracing"), errors)

    models = [("default_model", top.get("default_model", "scripted/echo"))]
    if agent is not None:
        models += [
            (f"agent.modes[{i}].model", m.model) for i, m in enumerate(agent.modes) if m.model
        ]
    costs = resolve_costs(top.get("prices"), top.get("budget"), models=models, errors=errors)

    grace = top.get("grace_period", 5.0)
    if not (math.isfinite(grace) and grace > 0):
        errors.append(f"grace_period: expected a positive number of seconds, got {grace}")

    if errors or choices is None or costs is None:
        raise ConfigFileError(source, errors or ["the configuration could not be resolved"])
    return HarnessConfig(
        path=file,
        agent_ref=top["agent"],
        choices=choices,
        plugin_modules=tuple(modules),
        grace_period=float(grace),
        costs=costs,
        tracing=tracing,
        mcp_kit_added=added,
        registry=registry,
    )


_ROOT: Final = re.compile(r"[^.\[:]*")


def _without_consequences(lines: list[str], meant: Mapping[str, str]) -> list[str]:
    """The resolver's problems, less those that follow only from a misspelt top-level
    key (``default_modle = ...`` leaves ``default_model`` at its default, which may be a
    model no provider serves): the typo, reported with its "did you mean", says it all."""
    if not meant:
        return lines
    if "plugins" in meant:  # a misspelt module list may register any plugin named below
        return []
    kept = []
    for line in lines:
        root = _ROOT.match(line)
        if root is not None and root.group() in meant:
            continue
        if "providers" in meant and "no configured provider serves" in line:
            continue
        kept.append(line)
    return kept


def _tool_options(raw: Mapping[str, Any], errors: list[str]) -> dict[str, Any]:
    """``[tools.<kit>] options = {...}`` as the store's ``tool_options`` (kit -> options)."""
    options: dict[str, Any] = {}
    for kit, entry in raw.items():
        table = check_table(entry, key_path("tools", kit), {"options": Mapping}, errors)
        if table is not None:
            options[kit] = table.get("options", {})
    return options


# -- opening a store --------------------------------------------------------------------


@asynccontextmanager
async def open_store_from_config(
    config: str | os.PathLike[str] | HarnessConfig = DEFAULT_CONFIG,
    *,
    resources: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[Any]:
    """Open a ``SessionStore`` from a config file (or a loaded ``HarnessConfig``).

    The resolved choices are handed to ``create_session_store`` as they are (not as raw
    tables to validate again). ``resources`` and any other ``create_session_store``
    keyword in ``overrides`` are added to what the file says. A problem found only while
    the store opens (a provider whose real namespace collides, a model ref its provider
    does not serve) is raised as a ``ConfigFileError`` too.
    """
    from ._resolve import preloaded
    from ._store import create_session_store

    loaded = config if isinstance(config, HarnessConfig) else load_config(config)
    choices = loaded.choices
    arguments: dict[str, Any] = {
        "agent": choices.agent,
        "providers": list(choices.providers),
        "default_model": choices.default_model,
        "storage": choices.storage,
        "sandbox": choices.sandbox,
        "logging": choices.logging,
        "error_policy": choices.error_policy,
        "tool_options": dict(choices.tools),
        "plugins": list(choices.plugins),
        "strict_plugins": choices.strict_plugins,
        "autoload_plugins": choices.autoload_plugins,
        "grace_period": loaded.grace_period,
        "prices": dict(loaded.costs.prices),
        "budget": loaded.costs.budget,
        "tracing": loaded.tracing,
        "resources": dict(resources or {}),
        **overrides,
    }
    async with AsyncExitStack() as stack:
        try:
            with preloaded(loaded.registry):
                store = await stack.enter_async_context(create_session_store(**arguments))
        except ConfigFileError:
            raise
        except ConfigError as exc:
            raise ConfigFileError(str(loaded.path), split_unknown(str(exc).splitlines())) from None
        yield store
