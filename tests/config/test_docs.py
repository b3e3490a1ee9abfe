"""The reference pages agree with the code: docs/config.md documents every file key and
carries the options of every in-repo plugin as generated from their options classes;
docs/cli.md documents every command; docs/logging.md every sink option.

Run this file as a script to rewrite the generated section of docs/config.md:
    python tests/config/test_docs.py
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import attrs

from harness_kernel import ErrorPolicy, PluginRegistry
from harness_kernel.cli import build_parser
from harness_kernel.cli._reference import options_reference
from harness_kernel.config import _TOP

REPO = Path(__file__).resolve().parents[2]
CONFIG_DOC = REPO / "docs" / "config.md"
BEGIN = "<!-- BEGIN GENERATED: harness-kernel config reference -->\n"
END = "<!-- END GENERATED -->\n"


def repo_distributions() -> set[str]:
    names = set()
    for root in ("kernel", "providers", "storage_backends", "sandboxes", "plugins"):
        for pyproject in (REPO / root).rglob("pyproject.toml"):
            if not any(part.startswith(".") for part in pyproject.relative_to(REPO).parts):
                names.add(tomllib.loads(pyproject.read_text())["project"]["name"])
    return names


def generated() -> str:
    return options_reference(PluginRegistry(), distributions=repo_distributions())


def current_section(text: str) -> str:
    start = text.index(BEGIN) + len(BEGIN)
    return text[start : text.index(END, start)]


def test_the_plugin_options_reference_matches_the_options_classes() -> None:
    """The generated section of docs/config.md is what the options classes of the
    installed in-repo plugins produce today."""
    assert current_section(CONFIG_DOC.read_text()) == generated(), (
        "docs/config.md is out of date with the plugins' options: run `python tests/config/test_docs.py`"
    )


def test_every_file_key_and_error_policy_field_is_documented() -> None:
    """Each top-level key the loader accepts, and each ErrorPolicy field, has a row."""
    text = CONFIG_DOC.read_text()
    for key in _TOP:
        assert f"| `{key}` |" in text, key
    for field in attrs.fields(ErrorPolicy):
        assert f"| `{field.name}" in text, field.name
    for key in ("level", "sinks", "redact", "redact_keys"):
        assert f"| `{key}` |" in text, key


def _commands(parser: object, prefix: str = "") -> list[str]:
    found = []
    for action in getattr(parser, "_actions", []):
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            for name, sub in choices.items():
                path = f"{prefix} {name}".strip()
                nested = _commands(sub, path)
                found += nested or [path]
    return found


def _options(parser: object) -> set[str]:
    found = set()
    for action in getattr(parser, "_actions", []):
        found.update(o for o in action.option_strings if o.startswith("--") and o != "--help")
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            for sub in choices.values():
                found |= _options(sub)
    return found


def test_every_command_has_a_section_in_the_cli_reference() -> None:
    """docs/cli.md has a heading for each command of the parser, and documents each
    of its options."""
    text = (REPO / "docs" / "cli.md").read_text()
    headings = set(re.findall(r"^### `harness-kernel ([^`]+)`", text, flags=re.M))
    parser = build_parser()
    commands = _commands(parser)
    assert len(commands) == 15
    for command in commands:
        assert any(h == command or h.startswith(command + " ") for h in headings), command
    for option in _options(parser):
        assert f"`{option}" in text, option


def test_every_sink_option_is_in_the_logging_page() -> None:
    """docs/logging.md has a row for every option of the console and jsonl sinks."""
    from harness_kernel_logging import ConsoleOptions, JsonlOptions

    text = (REPO / "docs" / "logging.md").read_text()
    for cls in (ConsoleOptions, JsonlOptions):
        for field in attrs.fields(cls):
            assert f"| `{field.name}` |" in text, f"{cls.__name__}.{field.name}"


if __name__ == "__main__":
    text = CONFIG_DOC.read_text()
    CONFIG_DOC.write_text(text.replace(current_section(text), generated(), 1) if current_section(text)
                          else text.replace(BEGIN + END, BEGIN + generated() + END, 1))
    sys.stdout.write(f"rewrote the generated section of {CONFIG_DOC}\n")
