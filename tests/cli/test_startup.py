"""The console script imports only light modules before it has parsed the arguments:
trio, the store and the commands wait until a command needs them (issue K14: `--help`
and `plugins` must start fast). Timing is a bench figure (bench/w8_cli_startup.py);
this pins the import structure that makes it possible."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import harness_kernel

from .support import child_env, run_cli, write_deployment

PACKAGE = Path(harness_kernel.__file__).parent
LIGHT = {"__future__", "argparse", "collections.abc", "logging", "math", "os", "re", "sys", "typing"}
"""Standard-library modules cheap to import."""
EAGER = {
    "cli/__init__.py": {"harness_kernel._toml", "harness_kernel.errors", "harness_kernel.cli._exit"},
    "cli/_exit.py": set(),
    "_toml.py": {"harness_kernel._tables", "harness_kernel.errors"},
    "_tables.py": {"difflib"},
    "errors.py": set(),
}
"""Each module the console script loads before parsing, and what else it may import."""


def _top_level_imports(path: Path) -> set[str]:
    package = "harness_kernel" + "".join(f".{p}" for p in path.relative_to(PACKAGE).parent.parts)
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
    return found


def test_the_console_script_imports_nothing_heavy_before_parsing() -> None:
    """`harness_kernel.cli` and what it imports at the top are standard-library modules
    and the few light kernel modules listed, not trio, attrs, the store or the commands."""
    for name, allowed in EAGER.items():
        extra = _top_level_imports(PACKAGE / name) - LIGHT - allowed
        assert not extra, f"{name} imports {sorted(extra)} at the top"


HEAVY = (
    "boto3",
    "botocore",
    "cattrs",
    "httpx",
    "httpx2",
    "jsonschema",
    "mcp",
    "mcp_types",
    "opentelemetry",
    "psycopg",
    "psycopg_pool",
    "regex",
    "structlog",
    "trio",
)
"""What no installed plugin may import just to be listed: each is loaded when the
component needing it is built (an HTTP provider, a PostgreSQL or S3 storage, an MCP
kit, the tracer's first span, ...). Every plugin of the workspace is installed here."""

LISTING = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from harness_kernel.cli import main
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = main(["plugins", "--json"])
    heavy = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1].split(",")))
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    print(json.dumps({"code": code, "heavy": heavy, "rows": rows}))
    """
)


def test_listing_every_plugin_imports_no_heavy_dependency(tmp_path: Path) -> None:
    """`harness-kernel plugins` in a directory without a configuration, every entry point
    autoloaded: the listing is complete and none of the heavy modules was imported."""
    env = child_env(plugins=None)
    done = subprocess.run(
        [sys.executable, "-c", LISTING, ",".join(HEAVY)], capture_output=True, text=True,
        env=env, cwd=tmp_path, timeout=120, check=True,
    )
    report = json.loads(done.stdout)
    assert report["code"] == 0
    listed = {(r["kind"], r["name"]) for r in report["rows"] if r["status"] == "loaded"}
    for component in [("tools", "mcp"), ("log_sink", "otel"), ("storage", "postgres"), ("storage", "s3"),
                      ("provider", "openai"), ("provider", "anthropic"), ("tools", "files"),
                      ("sandbox", "local")]:
        assert component in listed, f"{component} is missing from the listing"
    assert report["heavy"] == [], f"listing the plugins imported {report['heavy']}"


COUNTING = textwrap.dedent(
    '''
    """Counts how often its registration hook runs: one line in REGISTRATIONS per call."""

    import os

    from harness_kernel import hookimpl


    @hookimpl
    def harness_kernel_log_sinks(register):
        with open(os.environ["REGISTRATIONS"], "a") as out:
            out.write("registered\\n")
    '''
)


@pytest.mark.parametrize("argv", [["plugins"], ["send", "s1", "hello"], ["config", "check"]])
def test_each_command_runs_a_plugins_registration_once(tmp_path: Path, argv: list[str]) -> None:
    """The configuration is resolved against the plugins and the store opened from it:
    one load of the plugins, so each registration hook runs once per command (it ran
    twice when the store loaded its own registry again)."""
    config = write_deployment(tmp_path, extra='\n[[plugins]]\nmodule = "counting"\n')
    (tmp_path / "counting.py").write_text(COUNTING)
    registrations = tmp_path / "registrations.txt"
    result = run_cli(*argv, config=config, env=child_env(REGISTRATIONS=str(registrations)))
    assert result.returncode == 0, result.stderr
    assert registrations.read_text().splitlines() == ["registered"]
