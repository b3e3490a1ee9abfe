"""Generated junk never produces a traceback: any file either loads or is reported as
configuration errors (exit code 2), through the library and through the CLI's main."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness_kernel.cli import main
from harness_kernel.config import ConfigFileError, load_config, render_toml
from tests.config.conftest import Deployment

KEYS = [
    "agent", "default_model", "strict_plugins", "autoload_plugins", "grace_period", "plugins",
    "providers", "storage", "sandbox", "logging", "error_policy", "tools", "plugin", "options",
    "module", "level", "sinks", "redact", "redact_keys", "retry", "policy", "model", "path",
    "max_bytes", "expose_internal_errors", "context_failure", "colour",
]
NAMES = ["memory", "sqlite", "jsonl", "console", "scripted", "noop", "nosuch", "MODULE:agent",
         "MODULE", "scripted/echo", "info", "${HOME}", "${NOPE}", "${X:-y}", "${", "fail"]

scalars = st.one_of(
    st.sampled_from(NAMES),
    st.text(alphabet=string.printable, max_size=12),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=4),
    ),
    max_leaves=12,
)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=documents)
def test_junk_documents_load_or_give_config_errors(document: dict[str, Any], deployment: Deployment) -> None:
    """A structurally random document (known and unknown keys, any value types, env
    references) loads, or raises ConfigFileError listing "path: message" lines."""
    path = deployment.directory / "junk.toml"
    path.write_text(render_toml(document).replace("MODULE", deployment.module))
    errors: tuple[str, ...] = ()
    try:
        load_config(path, environ={"HOME": "/home/x", "X": ""})
    except ConfigFileError as exc:
        errors = exc.errors or ("<empty>",)
    assert all(isinstance(line, str) and line and line != "<empty>" for line in errors)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200) | st.binary(max_size=200))
def test_junk_bytes_through_config_check_exit_0_or_2_without_traceback(
    text: str | bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Arbitrary bytes as harness.toml: `config check` exits 0 or 2 and prints no
    traceback."""
    path = tmp_path / "harness.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    code = main(["--config", str(path), "config", "check"])
    captured = capsys.readouterr()
    assert code in (0, 2)
    assert "Traceback" not in captured.err
    if code == 2:
        assert captured.err.startswith(f"{path}: ")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=documents)
def test_junk_documents_through_config_check_exit_0_or_2(
    document: dict[str, Any], deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """Random documents through the CLI's `config check`: exit 0 with a configuration
    on stdout, or 2 with the errors on stderr; never a traceback."""
    path = deployment.directory / "harness.toml"
    path.write_text(render_toml(document).replace("MODULE", deployment.module))
    code = main(["--config", str(path), "config", "check"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert code in (0, 2)
    assert bool(captured.out) == (code == 0)
