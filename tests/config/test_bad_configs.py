"""A table of broken configurations: `harness-kernel config check` exits 2 and prints
exactly one precise message per problem, with the path of the bad key, never a
traceback. All cases run as concurrent subprocesses once per module."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.cli.support import AGENT_MODULE, FAST_PLUGINS, Result, child_env, command

MODULE = "bad_cfg_agent"
GOOD = f'agent = "{MODULE}:agent"\n'

CASES: dict[str, tuple[str, str]] = {
    "unknown plugin": (
        GOOD + 'storage = { plugin = "nosuch" }\n',
        "storage.plugin: unknown storage plugin 'nosuch' (installed: memory, sqlite)",
    ),
    "unknown key": (
        GOOD + 'storage = { plugin = "sqlite", options = { path = "x.db", colour = "red" } }\n',
        "storage.options.colour: unknown key",
    ),
    "unknown top-level key": (
        GOOD + 'defualt_model = "scripted/echo"\n',
        "defualt_model: unknown key (did you mean 'default_model'?)",
    ),
    "wrong type": (
        GOOD + 'storage = { plugin = "sqlite", options = { path = 5 } }\n',
        "storage.options.path: expected str, got int",
    ),
    "missing variable": (
        GOOD + 'storage = { plugin = "sqlite", options = { path = "${HK_TEST_UNSET}/x.db" } }\n',
        "storage.options.path: environment variable HK_TEST_UNSET is not set "
        "(write ${HK_TEST_UNSET:-default} to give a default)",
    ),
    "agent module missing": (
        'agent = "no_such_module_xyz:agent"\n',
        "agent: no module named 'no_such_module_xyz' (looked in {dir} and sys.path)",
    ),
    "agent attribute missing": (
        f'agent = "{MODULE}:agnt"\n',
        f"agent: module '{MODULE}' has no attribute 'agnt'",
    ),
    "agent not module:attribute": (
        'agent = "just_a_name"\n',
        "agent: expected 'module:attribute', got 'just_a_name'",
    ),
    "two providers, one namespace": (
        GOOD + '[[providers]]\nplugin = "scripted"\n[[providers]]\nplugin = "scripted"\n',
        "providers[1]: two providers serve the namespace 'scripted' (also providers[0])",
    ),
    "bad sink option": (
        GOOD + '[[logging.sinks]]\nplugin = "jsonl"\noptions = { path = "log.jsonl", max_bytes = -1 }\n',
        "logging.sinks[0].options.max_bytes: must be 0 or more, got -1",
    ),
    "nan timeout": (
        GOOD + '[[providers]]\nplugin = "openai"\noptions = { timeout = nan }\n'
        + '[[providers]]\nplugin = "scripted"\n',
        "providers[0].options.timeout: must be a positive number, got nan",
    ),
    "infinite timeout": (
        GOOD + '[[providers]]\nplugin = "scripted"\n[[providers]]\nplugin = "openai"\n'
        + "options = { read_timeout = inf }\n",
        "providers[1].options.read_timeout: must be a positive number, got inf",
    ),
    "zero timeout": (
        GOOD + '[[providers]]\nplugin = "openai"\noptions = { connect_timeout = 0 }\n'
        + '[[providers]]\nplugin = "scripted"\n',
        "providers[0].options.connect_timeout: must be a positive number, got 0.0",
    ),
    "agent module exits": (
        f'agent = "{MODULE}_exits:agent"\n',
        f"agent: importing '{MODULE}_exits' called sys.exit(3) ({MODULE}_exits.py, line 3): "
        "a module named in the config must not exit when imported",
    ),
    "plugin module raises SystemExit": (
        GOOD + f'[[plugins]]\nmodule = "{MODULE}_exits_too"\n',
        f"plugins[0].module: importing '{MODULE}_exits_too' called sys.exit('usage: run me as a script') "
        f"({MODULE}_exits_too.py, line 1): a module named in the config must not exit when imported",
    ),
    "default model nobody serves": (
        GOOD + 'default_model = "openai/gpt-4.1"\n',
        "default_model: no configured provider serves 'openai/gpt-4.1' (configured namespaces: scripted)",
    ),
    # A typo is reported alone: the default its key was left at (here a model the
    # configured providers do not serve) is no second problem of the file.
    "misspelt default_model": (
        GOOD + 'defualt_model = "openai/m"\n[[providers]]\nplugin = "openai"\noptions = { api_key = "k", models = ["m"] }\n',
        "defualt_model: unknown key (did you mean 'default_model'?)",
    ),
    "misspelt agent": (
        f'agnet = "{MODULE}:agent"\n',
        "agnet: unknown key (did you mean 'agent'?)",
    ),
    "misspelt plugin key": (
        GOOD + 'sandbox = { plugn = "noop" }\n',
        "sandbox.plugn: unknown key (did you mean 'plugin'?)",
    ),
    "misspelt option": (
        GOOD + 'storage = { plugin = "sqlite", options = { paht = "x.db" } }\n',
        "storage.options.paht: unknown key (did you mean 'path'?)",
    ),
    "toml syntax": (
        'agent = "unterminated\n',
        "TOML syntax error: Illegal character '\\n' (at line 1, column 22)",
    ),
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Result]]:
    root = tmp_path_factory.mktemp("bad")
    processes = {}
    for index, (name, (text, _)) in enumerate(CASES.items()):
        directory = root / f"case{index}"
        directory.mkdir()
        (directory / f"{MODULE}.py").write_text(AGENT_MODULE)
        (directory / f"{MODULE}_exits.py").write_text('"""A script that runs at import."""\nimport sys\nsys.exit(3)\n')
        (directory / f"{MODULE}_exits_too.py").write_text('raise SystemExit("usage: run me as a script")\n')
        path = directory / "harness.toml"
        path.write_text(text)
        processes[name] = (path, subprocess.Popen(
            [*command(), "--config", str(path), "config", "check"], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=child_env(plugins=f"{FAST_PLUGINS},openai"),
        ))
    results = {}
    for name, (path, process) in processes.items():
        stdout, stderr = process.communicate(timeout=120)
        results[name] = (path, Result(process.returncode, stdout, stderr))
    return results


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_config_gives_its_precise_message_and_exit_code_2(
    case: str, outcomes: dict[str, tuple[Path, Result]]
) -> None:
    """Each broken configuration is reported as `<file>: 1 error` and one line with the
    key path and what is wrong; exit code 2; nothing on stdout."""
    path, result = outcomes[case]
    message = CASES[case][1].replace("{dir}", str(path.parent))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"{path}: 1 error\n  {message}\n"


def test_every_command_refuses_a_bad_config_the_same_way(tmp_path: Path) -> None:
    """Commands that open the store validate first: the same report and exit code 2,
    and nothing is created."""
    (tmp_path / f"{MODULE}.py").write_text(AGENT_MODULE)
    path = tmp_path / "harness.toml"
    path.write_text(textwrap.dedent(
        f"""
        agent = "{MODULE}:agent"
        storage = {{ plugin = "sqlite", options = {{ path = "${{CONFIG_DIR}}/s.db", colour = 1 }} }}
        [[providers]]
        plugin = "scripted"
        [[providers]]
        plugin = "scripted"
        """
    ))
    completed = subprocess.run([*command(), "--config", str(path), "send", "s1", "hi"], capture_output=True,
                               text=True, env=child_env(), timeout=120, check=False)
    assert completed.returncode == 2
    assert completed.stderr == (
        f"{path}: 2 errors\n"
        "  providers[1]: two providers serve the namespace 'scripted' (also providers[0])\n"
        "  storage.options.colour: unknown key\n"
    )
    assert not (tmp_path / "s.db").exists()
