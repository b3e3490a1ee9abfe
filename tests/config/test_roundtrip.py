"""Every option of every in-repo plugin round-trips through harness.toml.

Plugins are discovered from the installed registry and kept when their distribution
lives in this repository, so a plugin that lands later is covered without editing this
file. For each option a value different from the default is found (one the options
class accepts, validators included); the option is written to a config file, loaded,
compared with what the options class makes of it, printed by `config check`'s renderer
and loaded again.
"""

from __future__ import annotations

import enum
import pathlib
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import attrs
import pytest

from harness_kernel import PluginRegistry
from harness_kernel._plugins import KINDS, Registration
from harness_kernel._validation import ValidationFailed, structure_strictly
from harness_kernel.config import HarnessConfig, PluginChoice, load_config, render_toml

REPO = Path(__file__).resolve().parents[2]
DIST_ROOTS = ("kernel", "providers", "storage_backends", "sandboxes", "plugins")


def repo_distributions() -> set[str]:
    """Names of the distributions whose pyproject.toml lives in this repository."""
    names = set()
    for root in DIST_ROOTS:
        for pyproject in (REPO / root).rglob("pyproject.toml"):
            if any(part.startswith(".") for part in pyproject.relative_to(REPO).parts):
                continue
            names.add(tomllib.loads(pyproject.read_text())["project"]["name"])
    return names


REGISTRY = PluginRegistry()
REGISTRATIONS = [
    REGISTRY.get(kind, name)
    for kind in KINDS
    for name in REGISTRY.names(kind)
    if REGISTRY.get(kind, name).distribution in repo_distributions()
]


def test_the_repository_plugins_are_all_discovered() -> None:
    """Every distribution of the repository that registers components is installed and
    contributes at least one registration here (so none is silently skipped)."""
    contributing = {r.distribution for r in REGISTRATIONS}
    assert "harness-kernel" in contributing
    assert "harness-kernel-logging" in contributing
    failed = [row for row in REGISTRY.listing() if row.status == "failed" and row.distribution in repo_distributions()]
    assert failed == []


# -- finding values ---------------------------------------------------------------------


def candidates(tp: Any, name: str, scratch: Path) -> list[Any]:
    """TOML-writable values of type ``tp`` for a field called ``name``, likely ones first."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return ["sample", 7, True]
    if tp is bool:
        return [True, False]
    if tp is int:
        return [7, 3, 1, 100, 4096, 0, 65536, 1_000_000]
    if tp is float:
        return [2.5, 0.5, 30.0, 1.0, 0.0, 120.0, 3600.0, 86400.0]
    if tp is str or tp is pathlib.Path:
        lowered = name.lower()
        likely = []
        if "url" in lowered or "endpoint" in lowered:
            likely.append("http://127.0.0.1:8080/v1")
        if any(word in lowered for word in ("path", "root", "dir", "file")):
            likely.append(str(scratch / f"{name}-value"))
        if "env" in lowered:
            likely.append("SAMPLE_ENV")
        generic = [f"{name}-sample", "sample", "x", str(scratch / "any"), "http://127.0.0.1:8080/v1", "SAMPLE"]
        return [*likely, *generic, "debug", "info", "warning", "error", "critical"]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return [member.value for member in tp]
    if origin is Literal:
        return list(args)
    if origin in (Union, types.UnionType):
        return [c for arg in args if arg is not type(None) for c in candidates(arg, name, scratch)]
    if origin is typing.Annotated:
        return candidates(args[0], name, scratch)
    if origin in (list, tuple, set, frozenset, Sequence, typing.Sequence) or tp in (list, tuple):
        item = args[0] if args else Any
        return [[c] for c in candidates(item, name, scratch)[:4]] + [[]]
    if origin in (dict, Mapping, typing.Mapping) or tp is dict:
        value = args[1] if len(args) == 2 else Any
        return [{"sample": c} for c in candidates(value, name, scratch)[:4]] + [{}]
    if isinstance(tp, type) and attrs.has(tp):
        return [choose(tp, scratch)[0]]
    raise AssertionError(f"no sample values for type {tp!r} of field '{name}': teach candidates() about it")


def default_of(field: attrs.Attribute[Any]) -> Any:
    default = field.default
    factory = getattr(default, "factory", None)
    return factory() if factory is not None else default


def choose(cls: type, scratch: Path) -> tuple[dict[str, Any], set[str]]:
    """Values for every field of ``cls`` (as TOML data) and the names of the fields that
    got a value different from their default."""
    hints = typing.get_type_hints(cls)
    fields = attrs.fields(cls)
    base: dict[str, Any] = {}
    for field in fields:  # required fields first: every other check needs them
        if field.default is attrs.NOTHING:
            base[field.name] = next(
                (c for c in candidates(hints[field.name], field.name, scratch)
                 if _accepts(cls, {**base, field.name: c}, missing_ok=True)),
                None,
            )
            assert base[field.name] is not None, f"{cls.__name__}.{field.name}: no accepted value"
    values, changed = dict(base), {f.name for f in fields if f.default is attrs.NOTHING}
    for field in fields:
        if field.default is attrs.NOTHING:
            continue
        default = default_of(field)
        # Checked together with the values chosen so far: options may constrain each other.
        accepted = [
            c for c in candidates(hints[field.name], field.name, scratch) if _accepts(cls, {**values, field.name: c})
        ]
        different = [c for c in accepted if _structured(cls, {**values, field.name: c}, field.name) != default]
        if different:
            values[field.name] = different[0]
            changed.add(field.name)
        elif accepted:
            values[field.name] = accepted[0]
    return values, changed


def _accepts(cls: type, data: dict[str, Any], *, missing_ok: bool = False) -> bool:
    """Whether ``cls`` takes ``data``; with ``missing_ok``, also when the only problem is
    a required field not chosen yet (a required field is checked before the next one)."""
    try:
        structure_strictly(data, cls)
    except ValidationFailed as failed:
        return missing_ok and all(
            line.endswith(": required field missing") and line.partition(":")[0] not in data for line in failed.errors
        )
    except Exception:
        return False
    return True


def _structured(cls: type, data: dict[str, Any], name: str) -> Any:
    return getattr(structure_strictly(data, cls), name)


# -- writing configs --------------------------------------------------------------------


def config_for(reg: Registration, values: dict[str, Any], directory: Path) -> dict[str, Any]:
    """A config file naming ``reg`` with ``values`` as its options."""
    module = f"rt_agent_{directory.name.replace('-', '_')}"
    kits = [reg.name] if reg.kind == "tools" else []
    (directory / f"{module}.py").write_text(
        f"from harness_kernel import define_agent\nagent = define_agent(name='rt', tools={kits!r})\n"
    )
    data: dict[str, Any] = {"agent": f"{module}:agent"}
    spec = {"plugin": reg.name, "options": values}
    if reg.kind == "provider":
        data["providers"] = [spec] if reg.name == "scripted" else [{"plugin": "scripted"}, spec]
    elif reg.kind in ("storage", "sandbox"):
        data[reg.kind] = spec
    elif reg.kind == "log_sink":
        data["logging"] = {"sinks": [{**spec, "level": "debug"}]}
    elif reg.kind == "retry_policy":
        data["error_policy"] = {"retry": {"policy": reg.name, "model": values}}
    elif reg.kind == "tools":
        data["tools"] = {reg.name: {"options": values}}
    elif reg.kind == "tracing":
        data["tracing"] = spec
    return data


def chosen(config: HarnessConfig, reg: Registration) -> PluginChoice | Any:
    if reg.kind == "provider":
        return next(p for p in config.providers if p.plugin == reg.name)
    if reg.kind in ("storage", "sandbox"):
        return getattr(config, reg.kind)
    if reg.kind == "log_sink":
        return config.logging.sinks[0]
    if reg.kind == "retry_policy":
        return config.retry
    if reg.kind == "tracing":
        return config.tracing
    return config.tools[reg.name]


@pytest.mark.parametrize("reg", REGISTRATIONS, ids=lambda r: f"{r.kind}:{r.name}")
def test_every_option_round_trips(reg: Registration, tmp_path: Path) -> None:
    """Each option (set to a non-default value wherever the options class accepts one)
    loads into the plugin's options class unchanged, and the resolved configuration
    printed by `config check` (unmasked) loads back to the same configuration."""
    scratch = tmp_path / "scratch"
    values, changed = choose(reg.options, scratch) if reg.options is not None else ({}, set())
    if reg.options is not None:
        unchanged = {f.name for f in attrs.fields(reg.options)} - changed
        assert len(unchanged) <= len(attrs.fields(reg.options)) // 2, (
            f"{reg.name}: too few options could be given a non-default value: {sorted(unchanged)}"
        )
    path = tmp_path / "harness.toml"
    path.write_text(render_toml(config_for(reg, values, tmp_path)))
    config = load_config(path, environ={})
    choice = chosen(config, reg)
    assert choice is not None
    assert choice.plugin == reg.name
    if reg.options is not None:
        assert choice.settings == structure_strictly(values, reg.options)
        for name in changed:
            assert getattr(choice.settings, name) != default_of(attrs.fields_dict(reg.options)[name]) or name in {
                f.name for f in attrs.fields(reg.options) if f.default is attrs.NOTHING
            }

    again_path = tmp_path / "resolved.toml"
    again_path.write_text(config.to_toml(mask_secrets=False))
    again = load_config(again_path, environ={})
    assert again.to_data(mask_secrets=False) == config.to_data(mask_secrets=False)
    assert chosen(again, reg).settings == choice.settings

    masked = config.to_data()
    secret = [f.name for f in attrs.fields(reg.options)] if reg.options is not None else []
    for name in secret:
        field = attrs.fields_dict(reg.options)[name]
        value = getattr(choice.settings, name)
        if field.metadata.get("secret") and isinstance(value, str) and value:
            assert value not in render_toml(masked), f"secret option {name} printed"
