"""Config edges: non-finite and non-positive numbers, validator errors at their field,
and a module that exits while being imported."""

from __future__ import annotations

import math
import typing
from collections.abc import Callable
from pathlib import Path
from types import UnionType
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness_kernel import PluginRegistry
from harness_kernel._validation import ValidationFailed, structure_strictly
from harness_kernel.config import ConfigFileError, load_config

KINDS = ("provider", "storage", "sandbox", "log_sink", "retry_policy", "tools")
_non_finite = st.sampled_from([math.nan, math.inf, -math.inf])


def _float_fields() -> list[tuple[str, type, str]]:
    """``(plugin, options class, field)`` for every float field of every installed
    plugin's options (``float`` or ``float | None``)."""
    registry = PluginRegistry()
    found = []
    for kind in KINDS:
        for name in registry.names(kind):
            cls = registry.get(kind, name).options
            if cls is None:
                continue
            attrs.resolve_types(cls)
            for field in attrs.fields(cls):
                union = typing.get_origin(field.type) in (typing.Union, UnionType)
                if field.type is float or (union and float in typing.get_args(field.type)):
                    found.append((f"{kind}:{name}", cls, field.name))
    return found


FLOAT_FIELDS = _float_fields()


def test_the_installed_plugins_have_float_options_to_check() -> None:
    """The property below covers real options: timeouts of the HTTP providers, the
    retry policy's delays, the S3 timeouts."""
    names = {field for _, _, field in FLOAT_FIELDS}
    assert {"timeout", "connect_timeout", "max_delay"} <= names


@given(case=st.sampled_from(FLOAT_FIELDS), value=_non_finite)
def test_no_float_option_of_any_plugin_takes_nan_or_infinity(case: tuple[str, type, str], value: float) -> None:
    """``nan``, ``inf`` and ``-inf`` are refused for every float option of every
    installed plugin, with the field's full path."""
    plugin, cls, field = case
    with pytest.raises(ValidationFailed) as info:
        structure_strictly({field: value}, cls, root="x.options")
    assert [e for e in info.value.errors if e.startswith(f"x.options.{field}: ")], (plugin, info.value.errors)


@attrs.frozen
class Limits:
    """Nested options, to check the path goes through them."""

    burst: int = attrs.field(default=1, validator=attrs.validators.ge(1))


def _positive(_instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a positive number, got {value!r}")


@attrs.frozen
class Options:
    timeout: float = attrs.field(default=1.0, validator=_positive)
    ratio: float = 0.5
    mode: str = attrs.field(default="a", validator=attrs.validators.in_(["a", "b"]))
    limits: Limits = attrs.field(factory=Limits)


@given(timeout=st.floats(max_value=0) | _non_finite)
def test_a_validator_error_names_the_field_not_the_table(timeout: float) -> None:
    """A validator refusing a value is reported at ``root.field``, its message without
    the field name; nan and inf get the validator's own word (``positive number``)."""
    with pytest.raises(ValidationFailed) as info:
        structure_strictly({"timeout": timeout}, Options, root="providers[0].options")
    assert list(info.value.errors) == [f"providers[0].options.timeout: must be a positive number, got {timeout!r}"]


def test_every_problem_of_one_table_is_reported_at_its_own_path() -> None:
    """A mistyped field, a non-finite float, a refused choice and a nested validator:
    all four in one pass, each at its field."""
    with pytest.raises(ValidationFailed) as info:
        structure_strictly(
            {"timeout": "soon", "ratio": math.nan, "mode": "c", "limits": {"burst": 0}}, Options, root="t"
        )
    assert sorted(info.value.errors) == [
        "t.limits.burst: must be >= 1: 0",
        "t.mode: must be in ['a', 'b'] (got 'c')",
        "t.ratio: must be a finite number, got nan",
        "t.timeout: expected float, got str",
    ]


def test_finite_numbers_and_ints_for_floats_still_pass() -> None:
    """The strictness adds no false alarm: an int for a float is widened, a finite
    float passes, defaults apply."""
    assert structure_strictly({"timeout": 3, "ratio": 1e300}, Options) == Options(timeout=3.0, ratio=1e300)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_non_finite | st.floats(max_value=0, allow_nan=False), field=st.sampled_from(["timeout", "connect_timeout", "read_timeout"]))
def test_a_provider_timeout_in_a_file_must_be_a_positive_number(
    write: Callable[..., Path], value: float, field: str
) -> None:
    """``timeout = nan`` (or inf, -inf, 0, -1) in a provider's options is refused by
    ``load_config`` as ``providers[0].options.<field>: must be a positive number``."""
    literal = {math.inf: "inf", -math.inf: "-inf"}.get(value, "nan" if math.isnan(value) else repr(value))
    path = write(
        f"""
        agent = "MODULE:agent"
        default_model = "openai/m"
        [[providers]]
        plugin = "openai"
        options = {{ {field} = {literal}, models = ["m"] }}
        """
    )
    with pytest.raises(ConfigFileError) as info:
        load_config(path)
    assert list(info.value.errors) == [f"providers[0].options.{field}: must be a positive number, got {value!r}"]


@pytest.mark.parametrize(
    ("source", "shown"),
    [("import sys\nsys.exit(3)\n", "sys.exit(3)"), ("raise SystemExit\n", "sys.exit(None)"),
     ("import sys\nsys.exit('run me as a script')\n", "sys.exit('run me as a script')")],
)
def test_an_agent_module_that_exits_at_import_is_a_config_file_error(
    write: Callable[..., Path], deployment: Any, source: str, shown: str
) -> None:
    """``sys.exit`` (or ``raise SystemExit``) in the agent module does not end the
    caller: ``load_config`` raises ``ConfigFileError`` saying so, with the line."""
    module = f"{deployment.module}_exits"
    (deployment.directory / f"{module}.py").write_text(source)
    path = write(f'agent = "{module}:agent"\n')
    with pytest.raises(ConfigFileError) as info:
        load_config(path)
    line = source.count("\n")
    assert list(info.value.errors) == [
        f"agent: importing '{module}' called {shown} ({module}.py, line {line}): "
        "a module named in the config must not exit when imported"
    ]
