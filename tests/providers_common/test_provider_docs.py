"""The provider and retry pages stay true: their programs run, their TOML parses, and
their option tables list exactly the options the plugins accept."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import attrs
import pytest

from harness_kernel_anthropic import AnthropicOptions
from harness_kernel_openai import OpenAIOptions, ResponsesOptions
from harness_kernel_retry import ExponentialOptions

DOCS = Path(__file__).resolve().parents[2] / "docs" / "providers"
PAGES = ["openai.md", "openai-responses.md", "anthropic.md", "retry.md", "writing-a-provider-plugin.md"]
FENCE = re.compile(r"(<!-- not-run -->\s*)?```(python|toml)\n(.*?)```", re.DOTALL)


def _blocks(kind: str) -> list[object]:
    found = []
    for page in PAGES:
        text = (DOCS / page).read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            skipped, lang, code = match.groups()
            if lang == kind and not (kind == "python" and skipped):
                line = text[: match.start()].count("\n") + 1
                found.append(pytest.param(code, id=f"{page}:{line}"))
    return found


@pytest.mark.parametrize("code", _blocks("python"))
def test_python_examples_run(code: str, tmp_path: Path) -> None:
    """Every runnable example exits cleanly in a fresh interpreter, warnings as errors."""
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("code", _blocks("toml"))
def test_toml_examples_parse(code: str) -> None:
    """Every configuration example is valid TOML."""
    tomllib.loads(code)


@pytest.mark.parametrize(
    ("page", "options"),
    [
        ("openai.md", OpenAIOptions),
        ("openai-responses.md", ResponsesOptions),
        ("anthropic.md", AnthropicOptions),
        ("retry.md", ExponentialOptions),
    ],
)
def test_option_tables_match_the_options_classes(page: str, options: type) -> None:
    """The options table of each page names every option, and only real ones."""
    text = (DOCS / page).read_text(encoding="utf-8")
    table = text.split("| option |", 1)[1].split("\n\n", 1)[0]
    documented = {name for row in re.findall(r"^\| (`[^|]+`) \|", table, re.MULTILINE) for name in re.findall(r"`(\w+)`", row)}
    assert documented == {field.name for field in attrs.fields(options)}
