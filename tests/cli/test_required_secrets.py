"""`config check` reports the required secrets nobody set (a provider's API key) as a
warning, and as an error with `--strict`, instead of calling the file valid and failing
at the first send."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness_kernel.config import load_config
from tests.cli.support import child_env, run_cli, write_deployment

PROVIDER = textwrap.dedent(
    """
    [[providers]]
    plugin = "{plugin}"
    options = {{ models = ["m"]{extra} }}
    """
)
PLUGINS = "sqlite,logging,openai,anthropic"
KEY_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HK_TEST_KEY")


def deployment(tmp_path: Path, plugin: str = "openai", extra: str = "") -> Path:
    return write_deployment(
        tmp_path / "deploy",
        module=f"secrets_agent_{tmp_path.name}",
        extra=PROVIDER.format(plugin=plugin, extra=extra),
    )


def env(**variables: str) -> dict[str, str]:
    base = {k: v for k, v in child_env(plugins=PLUGINS).items() if k not in KEY_VARIABLES}
    return {**base, **variables}


def test_a_missing_api_key_is_a_warning_and_the_file_still_checks(tmp_path: Path) -> None:
    """Without the key and without $OPENAI_API_KEY, `config check` exits 0 and warns,
    naming the option and the variable that would supply it."""
    result = run_cli("config", "check", config=deployment(tmp_path), env=env())
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "warning: providers[1].options.api_key: required secret not set "
        "(set it, or the environment variable OPENAI_API_KEY)",
        f"{tmp_path / 'deploy' / 'harness.toml'}: configuration is valid (1 warning; --strict fails on them)",
    ]
    assert 'plugin = "openai"' in result.stdout


def test_strict_makes_a_missing_api_key_an_error(tmp_path: Path) -> None:
    """`config check --strict` reports the missing key as a configuration error: exit
    2, the usual `<file>: 1 error` report, nothing on stdout."""
    config = deployment(tmp_path)
    result = run_cli("config", "check", "--strict", config=config, env=env())
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"{config}: 1 error\n"
        "  providers[1].options.api_key: required secret not set "
        "(set it, or the environment variable OPENAI_API_KEY)\n"
    )


def test_a_key_from_the_environment_satisfies_strict(tmp_path: Path) -> None:
    """The variable the provider reads counts as set: no warning, `--strict` passes."""
    result = run_cli("config", "check", "--strict", config=deployment(tmp_path), env=env(OPENAI_API_KEY="sk-x"))
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr


@pytest.mark.parametrize("plugin", ["openai", "openai-responses", "anthropic"])
@pytest.mark.parametrize(
    ("extra", "environ", "missing"),
    [
        ("", {}, True),
        (', api_key = "k"', {}, False),
        (', base_url = "http://127.0.0.1:9/v1"', {}, False),  # a compatible server: no key needed
        (', base_url = "http://127.0.0.1:9/v1", api_key_env = "HK_TEST_KEY"', {}, True),
        (', base_url = "http://127.0.0.1:9/v1", api_key_env = "HK_TEST_KEY"', {"HK_TEST_KEY": "k"}, False),
    ],
)
def test_each_vendor_provider_declares_its_api_key_a_required_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin: str, extra: str, environ: dict[str, str], missing: bool
) -> None:
    """openai, openai-responses and anthropic need a key for the vendor's own API (from
    the option or its variable) and for a server whose `api_key_env` names one; a
    compatible server at another base_url without `api_key_env` needs none."""
    monkeypatch.setenv("HARNESS_KERNEL_PLUGINS", PLUGINS)
    loaded = load_config(deployment(tmp_path, plugin, extra))
    lines = loaded.missing_secrets(environ)
    assert bool(lines) == missing
    if missing:
        variable = "HK_TEST_KEY" if "api_key_env" in extra else {"anthropic": "ANTHROPIC_API_KEY"}.get(plugin, "OPENAI_API_KEY")
        assert lines == [f"providers[1].options.api_key: required secret not set (set it, or the environment variable {variable})"]
